"""The README's generated blocks are what their committed files hold (reproduce/readme_figures.py):
the default Omniglot figures (reproduce/results/omniglot/default/summary.json, whose aggregates are
those of its runs), the benchmarks (reproduce/results/benchmarks/), and the paper's experiments on
Omniglot (reproduce/paper_figures.py: the sweep reports under reproduce/results/omniglot/ next to
the paper's numbers, which docs/paper.md section 7 quotes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _load_script() -> Any:
    name = "readme_figures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "reproduce/readme_figures.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


figures = _load_script()


def _run(seed: int, threads: int, r1: list[float], finals: tuple[float, ...]) -> dict[str, Any]:
    return {
        "seed": seed, "threads": threads, "cpu": "CPU X", "cpu_count": 2, "torch": "2.0",
        "pytorch_metric_learning": "2.9.0", "epochs": len(r1),
        "final": {f"recall_at_{k}": v for k, v in zip((1, 2, 4, 8), finals)},
        "recall_at_1_per_epoch": r1, "wall_seconds": 100.0 + seed,
    }  # fmt: skip


def test_readme_block_is_rendered_from_the_committed_summary() -> None:
    readme = (REPO / "README.md").read_text()
    expected = figures.render_readme(readme, figures.load_summary())
    assert readme == expected, (
        "README.md's figures block differs from reproduce/results/omniglot/default/summary.json; "
        "run `python reproduce/readme_figures.py render`"
    )


def test_committed_summary_aggregates_are_those_of_its_runs() -> None:
    summary = figures.load_summary()
    assert figures.summarize(summary["runs"]) == summary
    assert all(r["epochs"] == 12 for r in summary["runs"])  # the default command's 12 epochs


def test_mean_std_and_thread_range_on_constructed_runs() -> None:
    runs = [
        _run(1, 2, [0.5, 0.9], (0.90, 0.95, 0.97, 0.99)),
        _run(2, 2, [0.6, 0.8], (0.80, 0.85, 0.87, 0.89)),
        _run(1, 1, [0.4, 0.7], (0.70, 0.75, 0.77, 0.79)),
    ]
    summary = figures.summarize(runs)
    seeds = summary["seeds_at_main_threads"]
    assert seeds["seeds"] == [1, 2]
    assert seeds["recall_at_1"] == {"mean": 0.85, "std": pytest.approx(0.070711, abs=1e-6)}
    assert seeds["epoch1_recall_at_1"]["mean"] == pytest.approx(0.55)
    across = summary["across_threads"]
    assert (across["seed"], sorted(across["threads"])) == (1, [1, 2])
    assert across["recall_at_1"] == {"min": 0.70, "max": 0.90}
    assert across["epoch1_recall_at_1"] == {"min": 0.4, "max": 0.5}
    block = figures.render_block(summary)
    assert "| 0.8500 ± 0.0707 |" in block
    assert "final R@1 0.7000-0.9000" in block
    assert "| 2 | 2 | 0.8000 | 0.8500 | 0.8700 | 0.8900 | 0.600, 0.800 | 1 min 42 s |" in block


def test_summary_refuses_duplicate_runs_and_a_missing_main_thread_count() -> None:
    run = _run(1, 2, [0.5], (0.9, 0.9, 0.9, 0.9))
    with pytest.raises(figures.FiguresError, match="same \\(seed, threads\\)"):
        figures.summarize([run, run])
    with pytest.raises(figures.FiguresError, match="no run at 2 threads"):
        figures.summarize([_run(1, 1, [0.5], (0.9, 0.9, 0.9, 0.9))])


def _write_run(run_dir: Path, status: str = "finished", info: bool = True) -> None:
    run_dir.mkdir(parents=True)
    history = [{"epoch": e, "recall_at_1": 0.5 + 0.1 * e} for e in (1, 2)]
    metrics = {f"recall_at_{k}": 0.9 for k in (1, 2, 4, 8)}
    results = {"status": status, "dataset": "omniglot", "history": history,
               "final": {"epoch": 2, "metrics": metrics}}  # fmt: skip
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"train": {"seed": 3, "epochs": 2}}))
    if info:
        figures.describe(run_dir, threads=2, wall_seconds=61.04)


def test_collect_reads_a_run_and_names_what_is_missing(tmp_path: Path) -> None:
    _write_run(tmp_path / "ok")
    summary = figures.collect([tmp_path / "ok"], tmp_path / "out/summary.json")
    run = summary["runs"][0]
    assert (run["seed"], run["threads"], run["wall_seconds"]) == (3, 2, 61.0)
    assert run["recall_at_1_per_epoch"] == [0.6, 0.7]
    assert json.loads((tmp_path / "out/summary.json").read_text()) == summary
    _write_run(tmp_path / "no_info", info=False)
    with pytest.raises(figures.FiguresError, match="figures_run.json.*describe"):
        figures.read_run(tmp_path / "no_info")
    _write_run(tmp_path / "running", status="running")
    with pytest.raises(figures.FiguresError, match="status 'running'"):
        figures.read_run(tmp_path / "running")


# ---------------------------------------------------------------- benchmark blocks
def _machine() -> dict[str, Any]:
    return {"cpu": "CPU X", "cores": 2, "threads": "2 torch threads", "torch": "2.0",
            "date": "2026-01-01 10:00 UTC", "load_average_at_start": [3.5, 2.0, 1.0],
            "wall_seconds": 60.0}  # fmt: skip


def _record(name: str, result: dict[str, Any], command: str = "") -> dict[str, Any]:
    return {"benchmark": name, "command": command or f"python reproduce/benchmarks/{name}.py",
            "generated_by": "reproduce/readme_figures.py bench", "exit_code": 0,
            "machine": _machine(), "result": result}  # fmt: skip


def _readme_block(readme: str, block: str) -> str:
    start, end = figures.markers(block)
    assert readme.count(start) == 1 and readme.count(end) == 1, f"README lacks the {block} markers"
    return readme[readme.index(start) : readme.index(end) + len(end)]


@pytest.mark.parametrize("block", sorted(figures.BENCH_BLOCKS))
def test_readme_benchmark_block_is_rendered_from_its_committed_file(block: str) -> None:
    name = figures.BENCH_BLOCKS[block]
    record = figures.load_bench(name)
    readme = (REPO / "README.md").read_text()
    assert _readme_block(readme, block) == figures.render_bench_block(block, record), (
        f"README.md's {block} block differs from reproduce/results/benchmarks/{name}.json; "
        "run `python reproduce/readme_figures.py render`"
    )


@pytest.mark.parametrize("name", sorted(figures.BENCH_BLOCKS.values()))
def test_committed_benchmark_records_say_how_they_were_measured(name: str) -> None:
    record = figures.load_bench(name)
    assert record["command"].startswith(f"python reproduce/benchmarks/{name}.py")
    assert record["exit_code"] == 0
    machine = record["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and "thread" in machine["threads"]
    assert machine["torch"] and machine["date"][:2] == "20"
    assert len(machine["load_average_at_start"]) == 3


def _loss_result() -> dict[str, Any]:
    def entry(shape: str, dims: list[int], contender: str, t: float, mb: float) -> dict:
        return {"shape_name": shape, "shape": dims, "contender": contender, "median_s": t,
                "times_s": [t], "peak_extra_mb": mb}  # fmt: skip

    dims, big = [100, 1000, 64], [100, 10_000, 64]
    return {
        "device": "cpu", "threads": 2, "torch": "2.0", "cpu": "CPU X x2", "timing": "median",
        "results": [
            entry("s", dims, "ours", 0.02, 1.0), entry("s", dims, "pml", 0.08, 4.0),
            entry("s", dims, "naive", 0.05, 3.0), entry("s", dims, "gemm", 0.01, 0.5),
            entry("b", big, "ours", 0.5, 2048.0),
            {"shape_name": "b", "shape": big, "contender": "pml", "skipped": True,
             "estimated_peak_extra_mb": 40.0 * 1024},
            {"shape_name": "b", "shape": big, "contender": "naive", "skipped": True,
             "estimated_peak_extra_mb": 30.0 * 1024},
            entry("b", big, "gemm", 1.0, 4096.0),
        ],
    }  # fmt: skip


def test_loss_speed_block_on_a_constructed_record() -> None:
    result = _loss_result()
    block = figures.render_bench_block("loss-speed", _record("loss_speed", result, "python x"))
    start, end = figures.markers("loss-speed")
    assert block.startswith(start) and block.endswith(end)
    assert "`python x`, run 2026-01-01 10:00 UTC on CPU X (2 cores), 2 torch threads" in block
    assert "load average 3.50 at its start" in block
    assert "| s (100, 1000, 64) | ours | 20.0 ms | 2.00x | 4.00x | 1 MB | 0.25 |" in block
    assert (
        "- **s** (B = 100, C = 1,000, D = 64): ours 2.00x the GEMM bound's time; 4.00x faster "
        "than PML's built-in; 1.0 MB of extra memory (the C x D proxy gradient alone: 0.2 MB), "
        "0.25 of PML's 4.0 MB." in block
    )
    assert (
        "- **b** (B = 100, C = 10,000, D = 64): ours 0.50x the GEMM bound's time; 2.00 GB of "
        "extra memory (the C x D proxy gradient alone: 2.4 MB). Not run, by their memory "
        "extrapolated linearly in C from the previous shape: PML's built-in (~40.0 GB) and "
        "the dense exp form (~30.0 GB)." in block
    )
    assert "ranged from" not in block
    result["results"][0]["times_s"] = [0.01, 0.02, 0.05]  # a shape whose times the load set
    block = figures.render_bench_block("loss-speed", _record("loss_speed", result, "python x"))
    assert block.count("ranged from") == 1
    assert "The 3 timed calls of ours ranged from 10.0 ms to 50.0 ms: at this shape" in block


def _eval_result() -> dict[str, Any]:
    def row(contender: str, seconds: float, mb: float, metrics: dict) -> dict:
        return {"contender": contender, "seconds": seconds, "cpu_peak_delta_mb": mb,
                "metrics": metrics, "ratio_vs_faiss": seconds / 10.0}  # fmt: skip

    recall = {"recall_at_1": 0.8, "recall_at_10": 0.95}
    setting = {
        "setting": "Q/G", "k_values": [1, 10],
        "rows": [row("faiss", 10.0, 50, {}), row("ours", 2.0, 100, recall),
                 row("pml", 20.0, 500, {"precision_at_1": 0.8}), row("dense", 4.0, 400, recall)],
        "ours_vs_dense": {"identical": False, "differing_queries": 3,
                          "ours_agrees_with_float64": 3, "dense_agrees_with_float64": 1},
    }  # fmt: skip
    return {"meta": {"device": "cpu", "threads": 1}, "settings": [setting], "table": ""}


def test_eval_speed_block_on_a_constructed_record() -> None:
    result = _eval_result()
    setting = result["settings"][0]
    block = figures.render_bench_block("eval-speed", _record("eval_speed", result))
    assert "| Q/G | ours | 2.00 | 0.20 | 100 | 80.00 |" in block
    assert (
        "- **Q/G**: ours R@1/10 = 80.00 / 95.00, 3 queries differ from the dense reference; "
        "float64 agrees with ours on 3 and with dense on 1 of them; 5.00x faster than faiss, "
        "2.00x faster than dense, 10.00x faster than pml." in block
    )
    setting["ours_vs_dense"] = {"identical": True, "differing_queries": 0}
    block = figures.render_bench_block("eval-speed", _record("eval_speed", result))
    assert "equal to the dense reference for every query and every K" in block


def _distributed_result() -> dict[str, Any]:
    def row(mode: str, procs: int, step: float, peak: float) -> dict:
        return {"classes": 1000, "mode": mode, "procs": procs, "step_s": step,
                "peak_mib_per_rank": peak, "base_mib_per_rank": 500.0,
                "total_peak_mib": peak * procs}  # fmt: skip

    rows = [row("replicated", 1, 2.0, 1000.0), row("sharded", 1, 2.0, 1000.0),
            row("sharded", 2, 1.0, 750.0),
            {"classes": 1000, "mode": "replicated", "procs": 2, "skipped": "too big"}]  # fmt: skip
    figures.bench_script("distributed_scaling").add_ratios(rows)
    return {"meta": {}, "rows": rows}


def _trainer_result() -> dict[str, Any]:
    medians = {"stack": 10.5, "bare": 10.0, "stack_end": 3.0, "bare_eval": 2.0}
    times = {"stack": [10.5, 11.0, 10.25], "bare": [10.0, 9.5, 10.75]}
    return {"iterations_per_epoch": 73, "batch_size": 128, "repeats": 3, "overhead": 0.05,
            "median_s": medians, "times_s": times}  # fmt: skip


def _loader_result() -> dict[str, Any]:
    results = [{"contender": "pil/bn_inception", "per_worker": True, "images_per_s": 200.0}]
    workers = [{"num_workers": 1, "startup_s": 0.25, "images_per_s": 125.0}]
    return {"threads": 1, "loader_threads": 2, "batch": 16, "results": results, "workers": workers,
            "per_worker_images_per_s": 200.0, "default_num_workers": 1}  # fmt: skip


def _precision_result() -> dict[str, Any]:
    row = {"model": "m", "batch": 8, "contender": "bf16", "median_step_s": 0.5,
           "images_per_s": 16.0, "ratio_to_fp32": 1.25, "min_step_s": 0.25,
           "ratio_to_fp32_best": 1.5, "first_step_s": 2.0}  # fmt: skip
    return {"device": "cpu", "device_name": "X", "threads": 2, "torch": "t", "steps": 10,
            "rounds": 5, "results": [row]}  # fmt: skip


def test_precision_speed_block_on_a_constructed_record() -> None:
    record = _record("precision_speed", _precision_result())
    block = figures.render_bench_block("precision-speed", record)
    assert "| m | 8 | bf16 | 500.0 | 16.0 | 1.25 | 250.0 | 1.50 | 2.00 |" in block


def test_precision_block_lists_each_run_from_its_files(tmp_path: Path) -> None:
    import yaml

    for name, precision, r1, seconds in (("a", "fp32", 0.5, 70.4), ("b", "bf16", 0.25, 80.6)):
        folder = tmp_path / name
        folder.mkdir()
        results = {"history": [{"epoch": 1, "seconds": seconds}],
                   "final": {"metrics": {"recall_at_1": r1}}}  # fmt: skip
        (folder / "results.json").write_text(json.dumps(results))
        train = {"precision": precision, "channels_last": name == "b"}
        (folder / "config.yaml").write_text(yaml.safe_dump({"train": train}))
    block = figures.render_precision_block(tmp_path)
    assert "| a | fp32 | false | 0.5000 | 70 |\n| b | bf16 | true | 0.2500 | 81 |" in block


def test_loader_speed_block_on_a_constructed_record() -> None:
    block = figures.render_bench_block("loader-speed", _record("loader_speed", _loader_result()))
    assert "| pil/bn_inception (one worker) | 200 | 5.0 |" in block
    assert "| DataLoader, num_workers=1 (start-up 0.25 s) | 125 | 8.0 |" in block
    assert "One worker feeds about 200 images/s; `default_num_workers()` gives 1" in block


def test_distributed_scaling_and_trainer_overhead_blocks_on_constructed_records() -> None:
    record = _record("distributed_scaling", _distributed_result())
    block = figures.render_bench_block("distributed-scaling", record)
    assert "| 1,000 | sharded | 2 | 1.000 | 0.50 | 750 | 500 | 0.75 | - | 1,500 |" in block
    assert "| 1,000 | replicated | 2 | skipped: too big |" in block
    assert (
        "- C = 1,000, sharded proxies, N = 2: 0.75x the per-rank peak memory of N = 1 (750 MiB, "
        "of which 500 MiB runtime; above the runtime 0.50x) and 0.50x its step time." in block
    )
    record = _record("trainer_overhead", _trainer_result())
    block = figures.render_bench_block("trainer-overhead", record)
    assert (
        "A training epoch of 73 iterations of batch 128 took 10.50 s through our stack against "
        "10.00 s in a bare PyTorch loop with the same model, data, loss and optimizers: +5.0% "
        "(median of 3 alternated repeats: 10.50, 11.00, 10.25 s and 10.00, 9.50, 10.75 s; "
        "end-of-epoch evaluation and checkpoints not included)." in block
    )


def test_load_bench_names_a_missing_damaged_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(figures.FiguresError, match="loss_speed.json not found.*bench loss_speed"):
        figures.load_bench("loss_speed", tmp_path)
    (tmp_path / "loss_speed.json").write_text("{not json")
    with pytest.raises(figures.FiguresError, match="loss_speed.json: not valid JSON"):
        figures.load_bench("loss_speed", tmp_path)
    (tmp_path / "loss_speed.json").write_text(json.dumps(_record("eval_speed", {})))
    with pytest.raises(figures.FiguresError, match="not a record of loss_speed.*'eval_speed'"):
        figures.load_bench("loss_speed", tmp_path)
    record = _record("loss_speed", {})
    del record["machine"]["load_average_at_start"]
    (tmp_path / "loss_speed.json").write_text(json.dumps(record))
    with pytest.raises(figures.FiguresError, match="missing \\['machine.load_average_at_start'\\]"):
        figures.load_bench("loss_speed", tmp_path)


def test_bench_refuses_an_out_flag_and_an_unknown_benchmark(tmp_path: Path) -> None:
    with pytest.raises(figures.FiguresError, match="do not pass --out"):
        figures.bench("loss_speed", ["--out", "x.json"], tmp_path)
    with pytest.raises(figures.FiguresError, match="unknown benchmark 'speed'.*loss_speed"):
        figures.bench("speed", [], tmp_path)
    assert not any(tmp_path.iterdir())


def _write_bench_dir(bench_dir: Path) -> None:
    bench_dir.mkdir()
    results = {"loss_speed": _loss_result(), "eval_speed": _eval_result(),
               "distributed_scaling": _distributed_result(),
               "trainer_overhead": _trainer_result(), "loader_speed": _loader_result(),
               "precision_speed": _precision_result()}  # fmt: skip
    for name, result in results.items():
        (bench_dir / f"{name}.json").write_text(json.dumps(_record(name, result)))


def test_render_check_fails_when_the_readme_or_a_results_file_differs(
    tmp_path: Path, capsys
) -> None:
    summary = tmp_path / "summary.json"
    runs = [_run(1, 2, [0.5], (0.9, 0.9, 0.9, 0.9))]
    summary.write_text(json.dumps(figures.summarize(runs)))
    bench_dir = tmp_path / "benchmarks"
    _write_bench_dir(bench_dir)
    blocks = [figures.BLOCK, *figures.BENCH_BLOCKS, *figures.OPTIONAL_BENCH_BLOCKS, *paper.BLOCKS]
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n"
        + "".join(f"{s}\nold figures\n{e}\ntext\n" for s, e in map(figures.markers, blocks))
    )
    args = [
        "render",
        "--summary",
        str(summary),
        "--readme",
        str(readme),
        "--bench-dir",
        str(bench_dir),
        "--results-dir",
        str(tmp_path / "omniglot"),  # no sweep report: every paper block says "not run yet"
    ]
    assert figures.main([*args, "--check"]) == 1
    assert "differs" in capsys.readouterr().err
    assert figures.main(args) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\ntext\n") and "old figures" not in text
    assert text.count("\ntext\n") == len(blocks)
    assert figures.main([*args, "--check"]) == 0
    # a number changed in one results file: the check fails
    record = json.loads((bench_dir / "loss_speed.json").read_text())
    record["result"]["results"][0]["median_s"] = 0.03
    (bench_dir / "loss_speed.json").write_text(json.dumps(record))
    assert figures.main([*args, "--check"]) == 1
    # a README without one block's markers
    readme.write_text(text.replace(figures.markers("loss-speed")[0], ""))
    assert figures.main(args) == 2
    assert "expected one <!-- figures:loss-speed:start -->" in capsys.readouterr().err


# ---------------------------------------------------------------- the paper's experiments
paper = figures.paper_figures()
BUDGET = {"data.name": "omniglot", "data.class_rotations": 4, "data.max_classes": None,
          "train.epochs": 6, "scheduler.step": 2}  # fmt: skip


def _sweep_summary(
    experiment: str,
    param_names: list[str],
    rows: list[tuple[dict[str, Any], list[int], list[float], list[int], list[float]]],
    pending: int = 0,
    plots: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A summary.json in the real schema (``Summary.to_dict`` of the sweep report), from rows of
    (params, seeds, final R@1 per seed, epochs to 95 % per seed, seconds per seed); R@8 is
    R@1 + 0.05."""
    from pml_proxy_anchor.sweeps.summary import Row, Summary

    built = [
        Row(params=params, key=(), sort_key=(), jobs=[], seeds=seeds,
            recalls={1: r1, 8: [v + 0.05 for v in r1]}, epochs_to_95=e95, seconds=secs,
            curves=[])
        for params, seeds, r1, e95, secs in rows
    ]  # fmt: skip
    failed = [
        {"job": f"job{i}", "status": "pending", "error": "not started"} for i in range(pending)
    ]
    total = sum(len(r[1]) for r in rows) + pending
    summary = Summary(experiment=f"omniglot/{experiment}", budget=dict(BUDGET),
                      param_names=param_names, k_values=[1, 8], rows=built, failed=failed,
                      jobs=total, plots=list(plots))  # fmt: skip
    return summary.to_dict()


def _write_summary(results_dir: Path, experiment: str, summary: dict[str, Any]) -> None:
    (results_dir / experiment).mkdir(parents=True, exist_ok=True)
    (results_dir / experiment / "summary.json").write_text(json.dumps(summary))


def _batch_summary(pending: int = 0) -> dict[str, Any]:
    rows = [
        ({"train.batch_size": 32}, [1, 2], [0.80, 0.90], [3, 4], [100.0, 120.0]),
        ({"train.batch_size": 64}, [1, 2], [0.85, 0.85], [4, 4], [90.0, 90.0]),
    ]
    return _sweep_summary("batch_size", ["train.batch_size"], rows, pending,
                          ("r1_vs_train.batch_size.png", "r1_vs_epoch.png"))  # fmt: skip


def test_paper_blocks_render_a_fixture_summary_into_the_expected_rows(tmp_path: Path) -> None:
    _write_summary(tmp_path, "batch_size", _batch_summary(pending=2))
    readme = tmp_path / "README.md"
    start, end = figures.markers("omniglot-batch-size")
    readme.write_text(f"# x\n{start}\nold\n{end}\nafter\n")
    block = paper.render_blocks(tmp_path)["omniglot-batch-size"]
    text = figures.replace_block(readme.read_text(), "omniglot-batch-size", block)
    assert text.startswith(f"# x\n{start}\n") and text.endswith(f"{end}\nafter\n")
    assert "**4 of 6 jobs finished** (2 pending)" in block
    assert "Budget of every run: data.class_rotations=4, train.epochs=6, scheduler.step=2." in block
    assert "| batch | n | R@1 % | R@8 % | epochs to 95 % (per seed) | s / run |" in block
    assert "| 32 | 2 | 85.0 ± 7.1 | 90.0 ± 7.1 | 3, 4 | 110 |" in block
    assert "| 64 | 2 | 85.0 ± 0.0 | 90.0 ± 0.0 | 4, 4 | 90 |" in block
    # the paper's table below ours, with SOP and In-Shop at 300 and 600
    assert "| SOP | 76.0 | 78.0 | 78.5 | 78.9 | 79.1 | - | 79.3 | 79.3 |" in block
    assert "| CUB | 65.9 | 67.0 | 68.4 | 68.5 | 68.6 | 69.0 | - | - |" in block
    folder = "reproduce/results/omniglot/batch_size"
    assert (
        f"![batch_size: r1_vs_train.batch_size.png]({folder}/r1_vs_train.batch_size.png)" in block
    )
    assert (
        f"More: [r1_vs_epoch.png]({folder}/r1_vs_epoch.png), [summary.md]({folder}/summary.md)."
        in block
    )
    _write_summary(tmp_path, "batch_size", _batch_summary())
    assert "\n4 of 4 jobs finished.\n" in paper.render_blocks(tmp_path)["omniglot-batch-size"]


def test_a_missing_summary_renders_one_not_run_yet_line(tmp_path: Path) -> None:
    blocks = paper.render_blocks(tmp_path)  # no summary at all
    assert set(blocks) == set(paper.BLOCKS)
    assert (
        "\nNot run yet: `pml-proxy-anchor sweep omniglot/batch_size`.\n"
        in blocks["omniglot-batch-size"]
    )
    assert (
        "Not run yet: `pml-proxy-anchor sweep omniglot/alpha_delta`."
        in blocks["omniglot-alpha-delta"]
    )
    compare = blocks["omniglot-compare"]
    assert "Not run yet: `pml-proxy-anchor sweep omniglot/compare_lr`." in compare
    assert "Not run yet: `pml-proxy-anchor sweep omniglot/compare`." in compare
    assert "| Proxy-Anchor | 68.4 / 86.1 / 79.1 / 91.5 |" in compare  # the paper's Table 1
    for block, text in blocks.items():
        start, end = figures.markers(block)
        assert text.startswith(start + "\n") and text.endswith("\n" + end)
        assert "jobs finished" not in text and "Budget of every run" not in text  # none of ours


def test_alpha_delta_cells_put_ours_next_to_the_papers(tmp_path: Path) -> None:
    alpha, delta = "loss.ProxyAnchorLoss.alpha", "loss.ProxyAnchorLoss.margin"
    rows = [({alpha: a, delta: d}, [1], [r1], [3], [60.0])
            for a, d, r1 in ((4, 0.0, 0.8628), (32, 0.1, 0.8744), (64, 0.4, 0.9))]  # fmt: skip
    _write_summary(tmp_path, "alpha_delta", _sweep_summary("alpha_delta", [alpha, delta], rows))
    block = paper.render_blocks(tmp_path)["omniglot-alpha-delta"]
    assert "| alpha \\ delta | 0 | 0.1 | 0.2 | 0.3 | 0.4 |" in block
    assert "| 4 | 86.3 / 64.5 | - / 65.6 | - / 66.7 | - / 68.2 | - / 69.1 |" in block
    assert "| 32 | - / 86.3 | 87.4 / 86.1 | - / 85.7 | - / 85.7 | - / 85.1 |" in block
    assert "| 64 | - / 83.7 | - / 86.7 | - / 86.3 | - / 85.5 | 90.0 / 86.4 |" in block
    assert (
        "Range over the cells: ours 86.3 (alpha 4, delta 0) to 90.0 (alpha 64, delta 0.4); the "
        "paper 64.5 (alpha 4, delta 0) to 86.7 (alpha 64, delta 0.1)." in block
    )
    assert "ours (Omniglot, seed 1) / the paper (Cars-196)" in block


def test_embedding_size_pivots_methods_into_columns(tmp_path: Path) -> None:
    method, size = "method", "model.embedding_size"
    rows = [({method: m, size: d}, [1], [r1], [3], [60.0])
            for m, d, r1 in (("proxy_anchor", 64, 0.88), ("multi_similarity", 64, 0.85),
                             ("proxy_anchor", 512, 0.9))]  # fmt: skip
    _write_summary(
        tmp_path, "embedding_size", _sweep_summary("embedding_size", [method, size], rows)
    )
    block = paper.render_blocks(tmp_path)["omniglot-embedding-size"]
    assert "| embedding size | Proxy-Anchor (ours) | MultiSimilarity + miner |" in block
    assert "| 64 | 88.0 | 85.0 |" in block
    assert "| 512 | 90.0 | - |" in block
    assert (
        "At 64 dimensions Proxy-Anchor reaches R@1 61.7 / 78.8 / 76.5 % on CUB / Cars / SOP."
        in block
    )


def test_compare_blocks_bold_the_chosen_lr_and_quote_table1_and_fig1(tmp_path: Path) -> None:
    method, lr = "method", "optimizer.lr"
    lr_rows = [({method: m, lr: v}, [1], [r1], [3], [60.0])
               for m, v, r1 in (("proxy_anchor", 0.001, 0.9), ("proxy_anchor", 0.003, 0.9),
                                ("npairs", 0.001, 0.7), ("npairs", 0.003, 0.8))]  # fmt: skip
    _write_summary(tmp_path, "compare_lr", _sweep_summary("compare_lr", [method, lr], lr_rows))
    seeds = [1, 2, 3]
    rows = [
        ({method: "npairs"}, seeds, [0.8, 0.8, 0.8], [5, 5, 6], [120.0] * 3),
        ({method: "proxy_anchor"}, seeds, [0.9, 0.91, 0.92], [3, 4, 3], [60.0, 66.0, 72.0]),
    ]
    summary = _sweep_summary("compare", [method], rows, plots=("r1_bars.png",))
    curve = {"epoch": [1, 2, 3], "mean": [0.5, 0.7, 0.8], "std": [0.0] * 3}
    (summary["rows"][1]["recall_at_1_per_epoch"],) = [curve]  # N-pair's: no epoch evaluated
    _write_summary(tmp_path, "compare", summary)
    blocks = paper.render_blocks(tmp_path)
    compare = blocks["omniglot-compare"]
    assert "| method | lr 0.001 | lr 0.003 |" in compare
    assert "| Proxy-Anchor (ours) | **90.0** | 90.0 |" in compare  # a tie: the smaller lr
    assert "| N-pair | 70.0 | **80.0** |" in compare
    assert (
        "| Proxy-Anchor (ours) | 3 | 91.0 ± 1.0 | 96.0 ± 1.0 | 68.4 / 86.1 / 79.1 / 91.5 |"
        in compare
    )
    assert "| N-pair | 3 | 80.0 ± 0.0 | 85.0 ± 0.0 | - |" in compare
    convergence = blocks["omniglot-convergence"]
    assert "| method | R@1 % after epoch 1, 3 | final R@1 % |" in convergence  # 6-epoch budget
    assert (
        "| Proxy-Anchor (ours) | 50.0 / 80.0 | 91.0 ± 1.0 | 3, 4, 3 | 66 | 11.0 | ~86 within "
        "~10 min (27.1 s/epoch) |" in convergence
    )
    assert "| N-pair | - / - | 80.0 ± 0.0 | 5, 5, 6 | 120 | 20.0 | ~78 |" in convergence
    # the best R@1 first, whatever the summary's order
    assert compare.index("| Proxy-Anchor (ours) | 3 |") < compare.index("| N-pair | 3 |")
    assert convergence.index("| Proxy-Anchor (ours) | 5") < convergence.index("| N-pair | -")


def test_a_summary_of_another_shape_falls_back_to_one_row_per_setting(tmp_path: Path) -> None:
    rows = [({"train.batch_size": 32, "optimizer.lr": 0.001}, [1], [0.8], [3], [60.0])]
    summary = _sweep_summary("batch_size", ["train.batch_size", "optimizer.lr"], rows)
    _write_summary(tmp_path, "batch_size", summary)
    block = paper.render_blocks(tmp_path)["omniglot-batch-size"]
    assert "| batch_size=32, lr=0.001 | 1 | 80.0 | 3 | 60 |" in block


def test_a_damaged_summary_is_named(tmp_path: Path) -> None:
    (tmp_path / "compare").mkdir()
    (tmp_path / "compare" / "summary.json").write_text("{not json")
    with pytest.raises(paper.PaperFiguresError, match="compare/summary.json: not valid JSON"):
        paper.render_blocks(tmp_path)
    (tmp_path / "compare" / "summary.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(paper.PaperFiguresError, match="not a sweep summary.*sweep-report"):
        paper.render_blocks(tmp_path)


@pytest.mark.parametrize("block", sorted(paper.BLOCKS))
def test_readme_paper_block_is_rendered_from_the_committed_summaries(block: str) -> None:
    readme = (REPO / "README.md").read_text()
    assert _readme_block(readme, block) == paper.render_blocks()[block], (
        f"README.md's {block} block differs from reproduce/results/omniglot/*/summary.json; "
        "run `python reproduce/readme_figures.py render`"
    )


def test_render_check_passes_on_the_real_readme() -> None:
    assert figures.main(["render", "--check"]) == 0


def test_a_changed_or_new_summary_makes_the_check_fail_until_render(tmp_path: Path) -> None:
    results = tmp_path / "omniglot"
    _write_summary(results, "batch_size", _batch_summary(pending=2))
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text())
    args = ["render", "--readme", str(readme), "--results-dir", str(results)]
    assert figures.main(args) == 0 and figures.main([*args, "--check"]) == 0
    summary = json.loads((results / "batch_size/summary.json").read_text())
    summary["rows"][0]["recall_at_1"]["mean"] = 0.5  # a number changed
    (results / "batch_size/summary.json").write_text(json.dumps(summary))
    assert figures.main([*args, "--check"]) == 1
    assert figures.main(args) == 0 and figures.main([*args, "--check"]) == 0
    assert "| 32 | 2 | 50.0 ± 7.1 |" in readme.read_text()
    # a report that appears later: the check fails until render fills its block
    _write_summary(results, "compare", _sweep_summary("compare", ["method"], []))
    assert figures.main([*args, "--check"]) == 1
    assert (
        figures.main(args) == 0
        and "Not run yet: `pml-proxy-anchor sweep omniglot/compare " not in readme.read_text()
    )


def test_docs_paper_quotes_the_papers_numbers_of_the_blocks() -> None:
    assert paper.paper_tables() in (REPO / "docs/paper.md").read_text(), (
        "docs/paper.md section 7 differs from PAPER in reproduce/paper_figures.py; paste "
        "paper_tables() there"
    )
    assert paper.PAPER["alpha_delta"][32][1] == 86.1 == paper.PAPER["table1"]["proxy_anchor"][1]


# ---------------------------------------------------------------- sweep overhead block
def _sweep_overhead_result() -> dict[str, Any]:
    times = {"separate": [30.0, 32.0, 31.0], "sweep": [28.0, 29.0, 27.5],
             "one_job": [12.0, 12.5, 11.5], "two_jobs": [13.0, 12.0, 14.0]}  # fmt: skip
    medians = {name: sorted(values)[1] for name, values in times.items()}
    return {"epochs": 1, "iterations_per_epoch": 73, "jobs": 3, "repeats": 3, "cores": 2,
            "threads": 2, "threads_per_job": 1, "times_s": times, "median_s": medians,
            "ratios": {"sweep_vs_separate": 28 / 31, "two_jobs_vs_one": 13 / 12}}  # fmt: skip


def test_sweep_overhead_block_on_a_constructed_record_and_before_it_is_measured(
    tmp_path: Path,
) -> None:
    text = figures.render_optional_bench_block("sweep-overhead", tmp_path)
    start, end = figures.markers("sweep-overhead")
    line = "Not measured yet: `python reproduce/readme_figures.py bench sweep_overhead`."
    assert text == f"{start}\n{line}\n{end}"
    record = _record("sweep_overhead", _sweep_overhead_result())
    (tmp_path / "sweep_overhead.json").write_text(json.dumps(record))
    block = figures.render_optional_bench_block("sweep-overhead", tmp_path)
    assert (
        "- **(a) sweep against separate runs**: 3 jobs of one sweep (basic launcher) took 28.0 s "
        "against 31.0 s for the same 3 runs as separate `train` commands: ratio **0.90** (sweep "
        "28.0, 29.0, 27.5 s; separate 30.0, 32.0, 31.0 s)." in block
    )
    assert (
        "- **(b) joblib, 2 jobs at once**: 2 jobs with `hydra/launcher=joblib` "
        "(`hydra.launcher.n_jobs=2`, 1 thread each) took 13.0 s against 12.0 s for one job with "
        "1 thread: ratio **1.08** on 2 cores (2 jobs 13.0, 12.0, 14.0 s; 1 job 12.0, 12.5, "
        "11.5 s)." in block
    )
    assert figures._bench_threads("sweep_overhead", record["result"]) == (
        "2 torch threads per run in (a), 1 per job in (b)"
    )
