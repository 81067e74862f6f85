"""The README's figures, generated from committed results files.

Each generated README block sits between ``<!-- figures:NAME:start -->`` and
``<!-- figures:NAME:end -->``; ``render`` rewrites every block from its file and ``render --check``
exits 1 when any block differs (tests/docs/test_readme_figures.py runs the same comparison).

The benchmarks (reproduce/benchmarks/): ``bench NAME [the script's flags]`` runs one and writes
``reproduce/results/benchmarks/NAME.json``: the script's JSON under ``result``, the command, and a
``machine`` record (CPU, cores, threads, torch, date, load average at the start)::

    python reproduce/readme_figures.py bench loss_speed --shapes cub,sop,large,huge
    python reproduce/readme_figures.py bench trainer_overhead --max-iters 20
    python reproduce/readme_figures.py bench distributed_scaling --procs 1 2 --steps 1
    python reproduce/readme_figures.py bench eval_speed --only inshop --threads 1
    python reproduce/readme_figures.py bench sweep_overhead --iters 73 --repeats 3
    python reproduce/readme_figures.py render

The paper's experiments on Omniglot (reproduce/paper_figures.py): one block per experiment, from
the sweep reports under ``reproduce/results/omniglot/<experiment>/`` (a report not written yet
renders a "not run yet" line; ``render`` fills the block once it is there).

The Omniglot default figures, in three steps, each a subcommand::

    # 1. train the default command once per seed and thread count (skips finished runs);
    #    each run directory gets figures_run.json: threads, wall seconds, CPU, versions
    python reproduce/readme_figures.py run --seeds 1 2 3 --threads 2 --out runs/figures
    python reproduce/readme_figures.py run --seeds 1 --threads 1 --out runs/figures
    # (a run made otherwise: record how it was made)
    python reproduce/readme_figures.py describe RUN_DIR --threads 2 --wall-seconds 569
    # 2. gather the runs into the committed summary
    python reproduce/readme_figures.py collect runs/figures/seed*_t* \\
        --out reproduce/results/omniglot/default/summary.json
    # 3. rewrite the README block between the markers (or --check: exit 1 if it differs)
    python reproduce/readme_figures.py render [--check]

A run is deterministic for one machine and thread count, not across them: the float summation
order changes with the CPU and the number of threads, so the summary keeps the machine of each run
and quotes mean +- std over seeds and the range across thread counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SUMMARY = REPO / "reproduce/results/omniglot/default/summary.json"
README = REPO / "README.md"
CONFIG = "configs/omniglot.yaml"
RUN_INFO = "figures_run.json"
KS = (1, 2, 4, 8)
BLOCK = "omniglot-default"
START = f"<!-- figures:{BLOCK}:start -->"
END = f"<!-- figures:{BLOCK}:end -->"
MAIN_THREADS = 2  # the thread count whose seeds give the mean +- std


class FiguresError(ValueError):
    """A run directory, summary or README that the script cannot use; the message says why."""


# ---------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else the platform's processor string): the
    benchmarks' own, from reproduce/benchmarks/_common.py."""
    common = load_module("_benchmark_common", REPO / "reproduce/benchmarks/_common.py")
    return common.cpu_model()


def versions() -> dict[str, str]:
    import pytorch_metric_learning
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
    }


def describe(run_dir: Path, threads: int, wall_seconds: float) -> dict[str, Any]:
    """Write ``figures_run.json`` in ``run_dir``: how the run was made, on this machine."""
    if threads < 1 or wall_seconds <= 0:
        raise FiguresError(
            f"threads must be >= 1 and wall seconds > 0; got {threads}, {wall_seconds}"
        )
    info = {
        "threads": int(threads),
        "wall_seconds": round(float(wall_seconds), 1),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        **versions(),
    }
    (run_dir / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return info


# ---------------------------------------------------------------- run
def run(seeds: Sequence[int], threads: Sequence[int], out: Path) -> list[Path]:
    """Train the default command for every (seed, threads); returns the run directories."""
    dirs = []
    for n in threads:
        for seed in seeds:
            run_dir = out / f"seed{seed}_t{n}"
            dirs.append(run_dir)
            if (run_dir / RUN_INFO).is_file() and _status(run_dir) == "finished":
                print(f"{run_dir}: finished, kept")
                continue
            env = {**os.environ, "OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
            command = [sys.executable, "-m", "pml_proxy_anchor", "train", str(REPO / CONFIG)]
            command += [f"train.seed={seed}", "--run-dir", str(run_dir), "--overwrite"]
            print(f"{run_dir}: {' '.join(command[1:])} (OMP_NUM_THREADS={n})", flush=True)
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True)
            describe(run_dir, n, time.perf_counter() - start)
    return dirs


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "results.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- collect
def read_run(run_dir: Path) -> dict[str, Any]:
    """One finished run: seed, threads, machine, final Recall@K, R@1 per epoch, wall seconds."""
    files = {name: run_dir / name for name in ("results.json", "config.yaml", RUN_INFO)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        hint = (
            f" Record how the run was made with `readme_figures.py describe {run_dir} --threads N "
            "--wall-seconds S`."
            if not files[RUN_INFO].is_file()
            else ""
        )
        raise FiguresError(f"{run_dir}: missing {', '.join(missing)}.{hint}")
    results = json.loads(files["results.json"].read_text())
    if results.get("dataset") != "omniglot":
        raise FiguresError(f"{run_dir}: data set {results.get('dataset')!r}, expected 'omniglot'")
    if results.get("status") != "finished":
        raise FiguresError(f"{run_dir}: status {results.get('status')!r}, expected 'finished'")
    config = yaml.safe_load(files["config.yaml"].read_text())
    info = json.loads(files[RUN_INFO].read_text())
    history = results["history"]
    if len(history) != config["train"]["epochs"]:
        raise FiguresError(
            f"{run_dir}: {len(history)} epochs recorded of {config['train']['epochs']}"
        )
    return {
        "seed": int(config["train"]["seed"]),
        "threads": int(info["threads"]),
        "cpu": info["cpu"],
        "cpu_count": info.get("cpu_count"),
        "torch": info["torch"],
        "pytorch_metric_learning": info.get("pytorch_metric_learning"),
        "epochs": len(history),
        "final": {f"recall_at_{k}": results["final"]["metrics"][f"recall_at_{k}"] for k in KS},
        "recall_at_1_per_epoch": [h["recall_at_1"] for h in history],
        "wall_seconds": info["wall_seconds"],
    }


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 6), "std": round(std, 6)}


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Runs -> the summary: mean +- sample std over the seeds at ``MAIN_THREADS`` threads, and
    the range of each figure over the runs of one seed at different thread counts."""
    runs = sorted(runs, key=lambda r: (r["threads"] != MAIN_THREADS, r["threads"], r["seed"]))
    keys = [(r["seed"], r["threads"]) for r in runs]
    if len(set(keys)) != len(keys):
        raise FiguresError(f"two runs with the same (seed, threads): {keys}")
    main = [r for r in runs if r["threads"] == MAIN_THREADS]
    if not main:
        raise FiguresError(f"no run at {MAIN_THREADS} threads")
    metrics = [f"recall_at_{k}" for k in KS]
    seeds = {
        "threads": MAIN_THREADS,
        "seeds": [r["seed"] for r in main],
        **{m: _mean_std([r["final"][m] for r in main]) for m in metrics},
        "epoch1_recall_at_1": _mean_std([r["recall_at_1_per_epoch"][0] for r in main]),
    }
    by_seed: dict[int, list[Mapping[str, Any]]] = {}
    for r in runs:
        by_seed.setdefault(r["seed"], []).append(r)
    threads: dict[str, Any] = {}
    for seed, group in sorted(by_seed.items()):
        if len({r["threads"] for r in group}) < 2:
            continue
        figures = {m: [r["final"][m] for r in group] for m in metrics}
        figures["epoch1_recall_at_1"] = [r["recall_at_1_per_epoch"][0] for r in group]
        threads = {
            "seed": seed,
            "threads": [r["threads"] for r in group],
            **{m: {"min": min(v), "max": max(v)} for m, v in figures.items()},
        }
        break
    return {
        "what": "final zero-shot Recall@K of the default Omniglot command",
        "command": f"pml-proxy-anchor train {CONFIG} train.seed=SEED  (OMP_NUM_THREADS=THREADS)",
        "generated_by": "reproduce/readme_figures.py collect",
        "runs": list(runs),
        "seeds_at_main_threads": seeds,
        "across_threads": threads or None,
    }


def collect(run_dirs: Sequence[Path], out: Path) -> dict[str, Any]:
    if not run_dirs:
        raise FiguresError("no run directories given")
    summary = summarize([read_run(Path(d)) for d in run_dirs])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------- benchmarks
BENCH_DIR = REPO / "reproduce/results/benchmarks"
BENCHMARKS = (
    "loss_speed",
    "eval_speed",
    "distributed_scaling",
    "trainer_overhead",
    "sweep_overhead",
    "loader_speed",
    "precision_speed",
)


def _bench_threads(name: str, result: Mapping[str, Any]) -> str:
    """How many threads the benchmark used, in words (each script records it differently)."""
    if name == "loss_speed":
        return f"{result['threads']} torch threads"
    if name == "eval_speed":
        n = result["meta"]["threads"]
        return f"{n} torch + faiss thread(s) per contender" if n else "library default threads"
    if name == "distributed_scaling":
        return f"{result['meta']['threads_per_process']} torch thread(s) per process"
    if name == "loader_speed":
        return (
            f"{result['threads']} torch thread per worker contender, "
            f"{result['loader_threads']} in the DataLoader's main process"
        )
    if name == "sweep_overhead":
        return (
            f"{result['threads']} torch threads per run in (a), "
            f"{result['threads_per_job']} per job in (b)"
        )
    return f"{result['threads']} torch threads"


def bench(name: str, script_args: Sequence[str], out_dir: Path = BENCH_DIR) -> dict[str, Any]:
    """Run ``reproduce/benchmarks/NAME.py SCRIPT_ARGS`` and write ``OUT_DIR/NAME.json``: the
    script's own JSON under ``result``, with the command and a ``machine`` record (CPU, cores,
    threads, torch, date, load average when it started: the machine may be shared)."""
    if name not in BENCHMARKS:
        raise FiguresError(f"unknown benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")
    if any(a == "--out" or a.startswith("--out=") for a in script_args):
        raise FiguresError("do not pass --out: the result goes to " + str(out_dir / f"{name}.json"))
    out = out_dir / f"{name}.json"
    raw = out_dir / f".{name}.raw.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    script = f"reproduce/benchmarks/{name}.py"
    load = [round(v, 2) for v in os.getloadavg()]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    start = time.perf_counter()
    command = [sys.executable, script, *script_args, "--out", str(raw)]
    raw.unlink(missing_ok=True)  # never read a file left by an earlier, interrupted run
    completed = subprocess.run(command, cwd=REPO)
    wall = time.perf_counter() - start
    if not raw.is_file():
        raise FiguresError(f"{script} exited with {completed.returncode} and wrote no JSON")
    try:
        result = json.loads(raw.read_text())
    except ValueError as err:
        raise FiguresError(f"{script} wrote a damaged JSON file {raw} ({err})") from None
    raw.unlink()
    record = {
        "benchmark": name,
        "command": " ".join(["python", script, *script_args]),
        "generated_by": "reproduce/readme_figures.py bench",
        "exit_code": completed.returncode,
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "threads": _bench_threads(name, result),
            "torch": versions()["torch"],
            "date": started,
            "load_average_at_start": load,
            "wall_seconds": round(wall, 1),
        },
        "result": result,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


# ---------------------------------------------------------------- render
def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _pm(stat: Mapping[str, float]) -> str:
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def render_block(summary: Mapping[str, Any]) -> str:
    """The README block (markers included) for ``summary``."""
    runs = summary["runs"]
    seeds = summary["seeds_at_main_threads"]
    machines = sorted({f"{r['cpu']} ({r['cpu_count']} cores)" for r in runs})
    torch_versions = sorted({r["torch"] for r in runs})
    lines = [
        START,
        "<!-- generated by `python reproduce/readme_figures.py render` from "
        "reproduce/results/omniglot/default/summary.json: regenerate, do not edit -->",
        "",
        f"`OMP_NUM_THREADS=T pml-proxy-anchor train {CONFIG} train.seed=S` (the default seed "
        f"is 1) on {', '.join(machines)}, torch {', '.join(torch_versions)}. Final zero-shot "
        f"Recall@K after {runs[0]['epochs']} epochs, mean ± sample std over seeds "
        f"{', '.join(map(str, seeds['seeds']))} at {seeds['threads']} threads:",
        "",
        "| R@1 | R@2 | R@4 | R@8 | R@1 after epoch 1 |",
        "|---|---|---|---|---|",
        "| "
        + " | ".join(_pm(seeds[f"recall_at_{k}"]) for k in KS)
        + f" | {_pm(seeds['epoch1_recall_at_1'])} |",
        "",
    ]
    across = summary.get("across_threads")
    if across:
        span = " and ".join(map(str, sorted(across["threads"])))
        lines += [
            f"The same seed ({across['seed']}) at {span} threads: final R@1 "
            f"{across['recall_at_1']['min']:.4f}-{across['recall_at_1']['max']:.4f}, R@8 "
            f"{across['recall_at_8']['min']:.4f}-{across['recall_at_8']['max']:.4f}, R@1 after "
            f"epoch 1 {across['epoch1_recall_at_1']['min']:.4f}-"
            f"{across['epoch1_recall_at_1']['max']:.4f}.",
            "",
        ]
    lines += [
        "| seed | threads | R@1 | R@2 | R@4 | R@8 | R@1 per epoch | wall clock |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        per_epoch = ", ".join(f"{v:.3f}" for v in r["recall_at_1_per_epoch"])
        finals = " | ".join(f"{r['final'][f'recall_at_{k}']:.4f}" for k in KS)
        lines.append(
            f"| {r['seed']} | {r['threads']} | {finals} | {per_epoch} | "
            f"{_minutes(r['wall_seconds'])} |"
        )
    lines.append(END)
    return "\n".join(lines)


def markers(block: str) -> tuple[str, str]:
    """The start and end markers of the README block ``block``."""
    return f"<!-- figures:{block}:start -->", f"<!-- figures:{block}:end -->"


def replace_block(readme_text: str, block: str, rendered: str) -> str:
    """``readme_text`` with the block ``block`` (markers included) replaced by ``rendered``."""
    start_marker, end_marker = markers(block)
    start, end = readme_text.find(start_marker), readme_text.find(end_marker)
    if start < 0 or end < 0 or end < start or readme_text.count(start_marker) != 1:
        raise FiguresError(
            f"README: expected one {start_marker} ... {end_marker} pair; add the two markers "
            "where the figures go"
        )
    return readme_text[:start] + rendered + readme_text[end + len(end_marker) :]


def render_readme(readme_text: str, summary: Mapping[str, Any]) -> str:
    """``readme_text`` with the Omniglot block between its markers replaced."""
    return replace_block(readme_text, BLOCK, render_block(summary))


# ---------------------------------------------------------------- benchmark blocks
BENCH_BLOCKS = {  # README block -> the benchmark whose results file it is rendered from
    "loss-speed": "loss_speed",
    "trainer-overhead": "trainer_overhead",
    "distributed-scaling": "distributed_scaling",
    "eval-speed": "eval_speed",
    "loader-speed": "loader_speed",
    "precision-speed": "precision_speed",
}
MACHINE_KEYS = ("cpu", "cores", "threads", "torch", "date", "load_average_at_start")
NOISY = 2.0  # slowest / fastest timed call above which a shape's times are flagged as noise
LOSS_CONTENDERS = {"ours": "ours", "pml": "PML's built-in", "naive": "the dense exp form"}


def load_bench(name: str, bench_dir: Path = BENCH_DIR) -> dict[str, Any]:
    """The committed record of benchmark ``name`` (written by ``bench``)."""
    path = bench_dir / f"{name}.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise FiguresError(
            f"{path} not found; make it with `readme_figures.py bench {name} [its flags]`"
        ) from None
    except ValueError as err:
        raise FiguresError(f"{path}: not valid JSON ({err})") from None
    missing = sorted({"benchmark", "command", "machine", "result"} - set(record))
    if not missing and isinstance(record["machine"], dict):
        missing = [f"machine.{k}" for k in MACHINE_KEYS if k not in record["machine"]]
    if missing or record["benchmark"] != name:
        raise FiguresError(
            f"{path}: not a record of {name} (missing {missing or 'nothing'}, benchmark "
            f"{record.get('benchmark')!r}); make it with `readme_figures.py bench {name}`"
        )
    return record


def load_module(key: str, path: Path) -> Any:
    """The Python file ``path`` as a module, registered as ``key`` (these scripts are files, not a
    package)."""
    import importlib.util

    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def bench_script(name: str) -> Any:
    """``reproduce/benchmarks/NAME.py`` as a module: its ``format_table`` renders the tables, so
    the README's table is the one the script prints."""
    return load_module(f"_benchmark_{name}", REPO / "reproduce/benchmarks" / f"{name}.py")


def paper_figures() -> Any:
    """reproduce/paper_figures.py: the blocks of the paper's experiments on Omniglot."""
    return load_module("_reproduce_paper_figures", REPO / "reproduce/paper_figures.py")


def _bench_head(block: str, record: Mapping[str, Any]) -> list[str]:
    m = record["machine"]
    return [
        markers(block)[0],
        "<!-- generated by `python reproduce/readme_figures.py render` from "
        f"reproduce/results/benchmarks/{record['benchmark']}.json: regenerate, do not edit -->",
        "",
        f"`{record['command']}`, run {m['date']} on {m['cpu']} ({m['cores']} cores), "
        f"{m['threads']}, torch {m['torch']}, load average {m['load_average_at_start'][0]:.2f} "
        "at its start: a machine shared with other jobs, so read the ratios within this run, "
        "not the absolute times.",
        "",
    ]


def _mb(mb: float) -> str:
    if mb < 10:
        return f"{mb:.1f} MB"
    return f"{mb:,.0f} MB" if mb < 1024 else f"{mb / 1024:.2f} GB"


def _seconds(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def _faster(ratio: float, than: str) -> str:
    """``ratio`` = their time / ours, in words."""
    if ratio >= 1:
        return f"{ratio:.2f}x faster than {than}"
    return f"{1 / ratio:.2f}x slower than {than}"


def _loss_bullets(result: Mapping[str, Any]) -> list[str]:
    by = {(r["shape_name"], r["contender"]): r for r in result["results"]}
    lines = []
    for shape in dict.fromkeys(r["shape_name"] for r in result["results"]):
        ours, pml, gemm = (by.get((shape, c), {}) for c in ("ours", "pml", "gemm"))
        if "median_s" not in ours:
            continue
        b, c, d = ours["shape"]
        parts = []
        if "median_s" in gemm:
            parts.append(f"{ours['median_s'] / gemm['median_s']:.2f}x the GEMM bound's time")
        if "median_s" in pml:
            parts.append(_faster(pml["median_s"] / ours["median_s"], "PML's built-in"))
        if ours.get("peak_extra_mb") is not None:
            mem = ours["peak_extra_mb"]
            gradient = _mb(c * d * 4 / 2**20)
            text = f"{_mb(mem)} of extra memory (the C x D proxy gradient alone: {gradient})"
            if pml.get("peak_extra_mb"):
                text += f", {mem / pml['peak_extra_mb']:.2f} of PML's {_mb(pml['peak_extra_mb'])}"
            parts.append(text)
        line = f"- **{shape}** (B = {b:,}, C = {c:,}, D = {d}): ours " + "; ".join(parts) + "."
        fast, slow = min(ours["times_s"]), max(ours["times_s"])
        if slow > NOISY * fast:
            line += (
                f" The {len(ours['times_s'])} timed calls of ours ranged from {_seconds(fast)} to "
                f"{_seconds(slow)}: at this shape the machine's load, not the loss, sets the "
                "times, so these ratios say little."
            )
        estimates = [
            f"{LOSS_CONTENDERS[n]} (~{by[(shape, n)]['estimated_peak_extra_mb'] / 1024:.1f} GB)"
            for n in ("pml", "naive")
            if by.get((shape, n), {}).get("skipped")
            and by[(shape, n)].get("estimated_peak_extra_mb")
        ]
        if estimates:
            line += (
                " Not run, by their memory extrapolated linearly in C from the previous shape: "
                + " and ".join(estimates)
                + "."
            )
        lines.append(line)
    return lines


def _render_loss_speed(record: Mapping[str, Any]) -> list[str]:
    result = record["result"]
    return [bench_script("loss_speed").format_table(result), "", *_loss_bullets(result)]


def _render_eval_speed(record: Mapping[str, Any]) -> list[str]:
    result = record["result"]
    lines = [bench_script("eval_speed").format_table(result["settings"], result["meta"]["device"])]
    lines.append("")
    for setting in result["settings"]:
        rows = {r["contender"]: r for r in setting["rows"]}
        check = setting["ours_vs_dense"]
        ks = setting["k_values"]
        recalls = " / ".join(f"{100 * rows['ours']['metrics'][f'recall_at_{k}']:.2f}" for k in ks)
        if check["identical"]:
            agree = "equal to the dense reference for every query and every K"
        else:
            agree = (
                f"{check['differing_queries']} queries differ from the dense reference; "
                f"float64 agrees with ours on {check.get('ours_agrees_with_float64')} and "
                f"with dense on {check.get('dense_agrees_with_float64')} of them"
            )
        timing = ", ".join(
            _faster(rows[n]["seconds"] / rows["ours"]["seconds"], n)
            for n in ("faiss", "dense", "pml")
            if "seconds" in rows.get(n, {}) and "seconds" in rows["ours"]
        )
        lines.append(
            f"- **{setting['setting']}**: ours R@{'/'.join(map(str, ks))} = {recalls}, "
            f"{agree}; {timing}."
        )
    return lines


def _render_distributed_scaling(record: Mapping[str, Any]) -> list[str]:
    rows = record["result"]["rows"]
    lines = [bench_script("distributed_scaling").format_table(rows), ""]
    done = {(r["classes"], r["mode"], r["procs"]): r for r in rows if "step_s" in r}
    for row in rows:
        one = done.get((row["classes"], row["mode"], 1))
        if row["procs"] == 1 or "time_vs_1proc" not in row or one is None:
            continue
        above = (row["peak_mib_per_rank"] - row["base_mib_per_rank"]) / (
            one["peak_mib_per_rank"] - one["base_mib_per_rank"]
        )
        lines.append(
            f"- C = {row['classes']:,}, {row['mode']} proxies, N = {row['procs']}: "
            f"{row['mem_vs_1proc']:.2f}x the per-rank peak memory of N = 1 "
            f"({row['peak_mib_per_rank']:,.0f} MiB, of which {row['base_mib_per_rank']:,.0f} "
            f"MiB runtime; above the runtime {above:.2f}x) and {row['time_vs_1proc']:.2f}x its "
            "step time."
        )
    return lines


def _render_trainer_overhead(record: Mapping[str, Any]) -> list[str]:
    r = record["result"]
    med, times = r["median_s"], r["times_s"]

    def each(name: str) -> str:
        return ", ".join(f"{t:.2f}" for t in times[name])

    return [
        f"A training epoch of {r['iterations_per_epoch']} iterations of batch {r['batch_size']} "
        f"took {med['stack']:.2f} s through our stack against {med['bare']:.2f} s in a bare "
        "PyTorch loop with the same model, data, loss and optimizers: "
        f"{100 * r['overhead']:+.1f}% (median of {r['repeats']} alternated repeats: "
        f"{each('stack')} s and {each('bare')} s; end-of-epoch evaluation and checkpoints not "
        "included)."
    ]


def _render_sweep_overhead(record: Mapping[str, Any]) -> list[str]:
    r = record["result"]
    med, times, ratios = r["median_s"], r["times_s"], r["ratios"]

    def each(name: str) -> str:
        return ", ".join(f"{t:.1f}" for t in times[name])

    budget = f"{r['epochs']} epoch(s) of {r['iterations_per_epoch']} iterations"
    return [
        f"Each run: `pml-proxy-anchor train omniglot` for {budget}, evaluation included; "
        f"median of {r['repeats']} alternated repeats, process start-up included.",
        "",
        f"- **(a) sweep against separate runs**: {r['jobs']} jobs of one sweep (basic launcher) "
        f"took {med['sweep']:.1f} s against {med['separate']:.1f} s for the same {r['jobs']} "
        f"runs as separate `train` commands: ratio **{ratios['sweep_vs_separate']:.2f}** "
        f"(sweep {each('sweep')} s; separate {each('separate')} s).",
        f"- **(b) joblib, 2 jobs at once**: 2 jobs with `hydra/launcher=joblib` "
        f"(`hydra.launcher.n_jobs=2`, {r['threads_per_job']} thread each) took "
        f"{med['two_jobs']:.1f} s against {med['one_job']:.1f} s for one job with "
        f"{r['threads_per_job']} thread: ratio **{ratios['two_jobs_vs_one']:.2f}** on "
        f"{r['cores']} cores (2 jobs {each('two_jobs')} s; 1 job {each('one_job')} s).",
    ]


def _render_loader_speed(record: Mapping[str, Any]) -> list[str]:
    r = record["result"]
    return [
        bench_script("loader_speed").format_table(r),
        "",
        f"One worker feeds about {r['per_worker_images_per_s']:.0f} images/s; "
        f"`default_num_workers()` gives {r['default_num_workers']} on this machine.",
    ]


def _render_precision_speed(record: Mapping[str, Any]) -> list[str]:
    return [bench_script("precision_speed").format_table(record["result"])]


BENCH_RENDERERS = {
    "loss_speed": _render_loss_speed,
    "eval_speed": _render_eval_speed,
    "distributed_scaling": _render_distributed_scaling,
    "trainer_overhead": _render_trainer_overhead,
    "sweep_overhead": _render_sweep_overhead,
    "loader_speed": _render_loader_speed,
    "precision_speed": _render_precision_speed,
}


# ---------------------------------------------------------------- precision runs
PRECISION_RUNS = REPO / "reproduce/results/omniglot/precision"
PRECISION_BLOCK = "omniglot-precision"


def render_precision_block(runs_dir: Path = PRECISION_RUNS) -> str:
    """One epoch of the Omniglot default per precision / layout (the run folders' results.json
    and config.yaml under ``runs_dir``), as a table."""
    start, end = markers(PRECISION_BLOCK)
    rows = []
    for folder in sorted(p for p in runs_dir.iterdir() if (p / "results.json").is_file()):
        results = json.loads((folder / "results.json").read_text())
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        (epoch,) = results["history"]
        rows.append(
            f"| {folder.name} | {cfg['train']['precision']} | "
            f"{str(cfg['train']['channels_last']).lower()} | "
            f"{results['final']['metrics']['recall_at_1']:.4f} | {epoch['seconds']:.0f} |"
        )
    rel = runs_dir.relative_to(REPO) if runs_dir.is_relative_to(REPO) else runs_dir
    return "\n".join(
        [
            start,
            f"<!-- generated by `python reproduce/readme_figures.py render` from {rel}/*/: "
            "regenerate, do not edit -->",
            "",
            "| run | train.precision | train.channels_last | R@1 after 1 epoch | epoch seconds |",
            "|---|---|---|---:|---:|",
            *rows,
            end,
        ]
    )


#: README blocks whose benchmark may not have been measured yet: a line says so until it is.
OPTIONAL_BENCH_BLOCKS = {"sweep-overhead": "sweep_overhead"}


def render_bench_block(block: str, record: Mapping[str, Any]) -> str:
    """The README block ``block`` (markers included) for a benchmark record."""
    body = BENCH_RENDERERS[record["benchmark"]](record)
    return "\n".join([*_bench_head(block, record), *body, markers(block)[1]])


def render_optional_bench_block(block: str, bench_dir: Path = BENCH_DIR) -> str:
    """The block of an optional benchmark: its record when measured, else one line saying how."""
    name = OPTIONAL_BENCH_BLOCKS[block]
    if (bench_dir / f"{name}.json").is_file():
        return render_bench_block(block, load_bench(name, bench_dir))
    start, end = markers(block)
    return "\n".join(
        [start, f"Not measured yet: `python reproduce/readme_figures.py bench {name}`.", end]
    )


def render_all(
    readme_text: str,
    summary: Mapping[str, Any],
    bench_dir: Path = BENCH_DIR,
    results_dir: Path | None = None,
) -> str:
    """``readme_text`` with every generated block rewritten from its committed file;
    ``results_dir``: the folder of the Omniglot sweep reports (default
    reproduce/results/omniglot)."""
    text = render_readme(readme_text, summary)
    for block, name in BENCH_BLOCKS.items():
        text = replace_block(text, block, render_bench_block(block, load_bench(name, bench_dir)))
    for block in OPTIONAL_BENCH_BLOCKS:
        text = replace_block(text, block, render_optional_bench_block(block, bench_dir))
    if markers(PRECISION_BLOCK)[0] in text:
        text = replace_block(text, PRECISION_BLOCK, render_precision_block())
    paper = paper_figures()
    try:
        blocks = paper.render_blocks(results_dir or paper.RESULTS)
    except paper.PaperFiguresError as err:
        raise FiguresError(str(err)) from None
    for block, rendered in blocks.items():
        text = replace_block(text, block, rendered)
    return text


def load_summary(path: Path = SUMMARY) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FiguresError(f"{path} not found; make it with `readme_figures.py collect`") from None


# ---------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train the default command per seed and thread count")
    p_run.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p_run.add_argument("--threads", type=int, nargs="+", default=[MAIN_THREADS])
    p_run.add_argument("--out", type=Path, default=Path("runs/figures"))
    p_desc = sub.add_parser("describe", help="record threads and wall time of a run made by hand")
    p_desc.add_argument("run_dir", type=Path)
    p_desc.add_argument("--threads", type=int, required=True)
    p_desc.add_argument("--wall-seconds", type=float, required=True)
    p_col = sub.add_parser("collect", help="gather run directories into the summary file")
    p_col.add_argument("run_dirs", type=Path, nargs="+")
    p_col.add_argument("--out", type=Path, default=SUMMARY)
    p_bench = sub.add_parser(
        "bench", help="run a benchmark; write reproduce/results/benchmarks/NAME.json"
    )
    p_bench.add_argument("name", choices=BENCHMARKS)
    p_bench.add_argument("script_args", nargs=argparse.REMAINDER, help="the script's flags")
    p_ren = sub.add_parser("render", help="rewrite the README block from the summary file")
    p_ren.add_argument("--summary", type=Path, default=SUMMARY)
    p_ren.add_argument("--readme", type=Path, default=README)
    p_ren.add_argument("--bench-dir", type=Path, default=BENCH_DIR)
    p_ren.add_argument(
        "--results-dir",
        type=Path,
        default=REPO / "reproduce/results/omniglot",
        help="the folder of the Omniglot sweep reports, one sub-folder per experiment",
    )
    p_ren.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            run(args.seeds, args.threads, args.out)
        elif args.command == "describe":
            print(json.dumps(describe(args.run_dir, args.threads, args.wall_seconds)))
        elif args.command == "bench":
            script_args = [a for a in args.script_args if a != "--"]
            record = bench(args.name, script_args)
            print(f"wrote {BENCH_DIR / (args.name + '.json')} (exit code {record['exit_code']})")
        elif args.command == "collect":
            summary = collect(args.run_dirs, args.out)
            print(f"wrote {args.out} ({len(summary['runs'])} runs)")
        else:
            text = args.readme.read_text()
            summary = load_summary(args.summary)
            new = render_all(text, summary, args.bench_dir, args.results_dir)
            if args.check:
                if new != text:
                    print(
                        f"{args.readme}: a figures block differs from its results file "
                        f"({args.summary}, {args.bench_dir}/*.json or "
                        f"{args.results_dir}/*/summary.json); run "
                        "`python reproduce/readme_figures.py render`",
                        file=sys.stderr,
                    )
                    return 1
                print(f"{args.readme}: figures match {args.summary} and {args.bench_dir}")
            elif new != text:
                args.readme.write_text(new)
                print(f"rewrote the figures blocks of {args.readme}")
    except FiguresError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
