"""The sweep report on constructed sweep directories and on a real (tiny) run directory.

Fixture sweeps are written file by file (tests/sweeps/fixtures_report.py: marker, config.yaml,
results.json through RunRecord) with constructed Recall@1 histories, so every mean, sample std
(ddof=1), epochs-to-95 % and seconds value is known exactly.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.sweeps.plots import axis_scale, heatmap_grid, line_group
from pml_proxy_anchor.sweeps.report import ReportOutputError, main, write_report
from pml_proxy_anchor.sweeps.summary import (
    BudgetMismatchError,
    DuplicateJobError,
    EmptySweepDirectoryError,
    SweepDirectoryError,
    SweepFileError,
    summarize,
)
from tests.sweeps.fixtures_report import (
    K_VALUES,
    make_config,
    recall_at,
    rows_by,
    write_job,
    write_sweep_file,
)

EMB = "model.embedding_size"
ALPHA, MARGIN = "loss.ProxyAnchorLoss.alpha", "loss.ProxyAnchorLoss.margin"
# embedding size -> seed -> Recall@1 per epoch (None: not evaluated), and the expected
# epochs to 95 % of each run's best Recall@1.
ONE_D = {
    64: {1: [0.30, 0.57, 0.60], 2: [0.40, 0.50, 0.50], 3: [0.70, 0.70, 0.70]},
    128: {1: [0.50, 0.80, 0.70], 2: [None, 0.80, 0.80], 3: [0.60, 0.70, 0.90]},
    256: {1: [0.80, 0.80, 0.80], 2: [0.85, 0.85, 0.85], 3: [0.90, 0.90, 0.90]},
}
EPOCHS_TO_95 = {64: [2, 2, 1], 128: [2, 2, 3], 256: [1, 1, 1]}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def one_d(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 1-D sweep (embedding size) x 3 seeds, jobs at depth 2, no sweep.json."""
    sweep = tmp_path_factory.mktemp("sweeps") / "embedding"
    for size, seeds in ONE_D.items():
        for seed, r1 in seeds.items():
            write_job(
                sweep / f"emb{size}" / f"seed{seed}",
                r1,
                seconds=10.0 * seed,
                **{EMB: size, "train.seed": seed},
            )
    summary = write_report(sweep)
    return {"sweep": sweep, "summary": summary, "json": _load(sweep / "summary.json")}


def test_one_d_sweep_means_stds_epochs_to_95_and_seconds(one_d: dict[str, Any]) -> None:
    data = one_d["json"]
    assert data["experiment"] == "embedding"
    assert data["param_names"] == [EMB]
    assert data["k_values"] == list(K_VALUES)
    assert [row["params"] for row in data["rows"]] == [{EMB: 64}, {EMB: 128}, {EMB: 256}]
    for row in data["rows"]:
        size = row["params"][EMB]
        assert row["seeds"] == [1, 2, 3]
        finals = [ONE_D[size][seed][-1] for seed in (1, 2, 3)]
        for k in K_VALUES:
            values = [recall_at(k, r1) for r1 in finals]
            assert row[f"recall_at_{k}"]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
            assert row[f"recall_at_{k}"]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert row["epochs_to_95"] == EPOCHS_TO_95[size]
        assert row["seconds"] == pytest.approx([30.0, 60.0, 90.0])
        # the curve: over the seeds, at the epochs every seed evaluated
        curve = row["recall_at_1_per_epoch"]
        epochs = [e for e in (1, 2, 3) if all(ONE_D[size][s][e - 1] is not None for s in (1, 2, 3))]
        assert curve["epoch"] == epochs
        per_epoch = [[ONE_D[size][s][e - 1] for s in (1, 2, 3)] for e in epochs]
        np.testing.assert_allclose(curve["mean"], [np.mean(v) for v in per_epoch], atol=1e-12)
        np.testing.assert_allclose(curve["std"], [np.std(v, ddof=1) for v in per_epoch], atol=1e-12)
    assert data["rows"][1]["recall_at_1_per_epoch"]["epoch"] == [2, 3]  # seed 2 skipped epoch 1
    # hand-computed: R@1 of the last evaluated epoch (0.7 for emb128/seed1, not its best 0.8)
    r1 = {row["params"][EMB]: row["recall_at_1"] for row in data["rows"]}
    assert r1[64] == pytest.approx({"mean": 0.6, "std": 0.1}, abs=1e-12)
    assert r1[128] == pytest.approx({"mean": 0.8, "std": 0.1}, abs=1e-12)
    assert r1[256] == pytest.approx({"mean": 0.85, "std": 0.05}, abs=1e-12)
    assert data["budget"]["train.epochs"] == 3 and data["budget"]["data.name"] == "omniglot"
    assert data["failed"] == [] and data["jobs"] == {"total": 9, "finished": 9}


def test_one_d_sweep_writes_the_line_plot_curves_and_markdown(one_d: dict[str, Any]) -> None:
    sweep = one_d["sweep"]
    assert one_d["json"]["plots"] == [
        "r1_vs_model.embedding_size.png",
        "r1_vs_epoch.png",
        "r1_vs_seconds.png",
    ]
    for name in one_d["json"]["plots"]:
        assert (sweep / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert axis_scale([64, 128, 256]) == "log2"
    assert axis_scale([1e-5, 1e-4, 1e-3]) == "log10"
    assert axis_scale([3e-4, 1e-3, 3e-3]) == "log10"  # a learning-rate grid: a factor of 10
    assert axis_scale([0.1, 0.2, 0.4, 0.5]) == "linear"  # a factor of 5
    assert axis_scale([0.0, 0.1, 0.2]) == "linear"
    md = (sweep / "summary.md").read_text()
    assert "| model.embedding_size | n | seeds | R@1 | R@2 | R@4 | R@8 |" in md
    assert "| 128 | 3 | 1, 2, 3 | 0.8000 ± 0.1000 |" in md
    assert "2, 2, 3 | 60.0 ± 30.0 |" in md


def test_summary_json_schema(one_d: dict[str, Any]) -> None:
    data = one_d["json"]
    assert set(data) == {
        "experiment",
        "budget",
        "rows",
        "param_names",
        "k_values",
        "std",
        "definitions",
        "jobs",
        "failed",
        "plots",
    }
    assert isinstance(data["experiment"], str) and isinstance(data["budget"], dict)
    assert "ddof=1" in data["std"]
    for row in data["rows"]:
        assert set(row) == {
            "params",
            "seeds",
            *(f"recall_at_{k}" for k in K_VALUES),
            "epochs_to_95",
            "seconds",
            "recall_at_1_per_epoch",
        }
        assert set(row["recall_at_1_per_epoch"]) == {"epoch", "mean", "std"}
        assert isinstance(row["params"], dict)
        assert all(isinstance(s, int) for s in row["seeds"])
        assert all(isinstance(e, int) for e in row["epochs_to_95"])
        assert all(isinstance(s, float) for s in row["seconds"])
        assert len(row["epochs_to_95"]) == len(row["seconds"]) == len(row["seeds"])
        for k in K_VALUES:
            stats = row[f"recall_at_{k}"]
            assert set(stats) == {"mean", "std"}
            assert all(isinstance(v, float) and math.isfinite(v) for v in stats.values())


def test_two_d_sweep_heatmap_cells(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    write_sweep_file(
        sweep,
        experiment="alpha_delta",
        params=[ALPHA, MARGIN],
        base_config="omniglot",
        budget={"note": "3 epochs, the same for every cell"},
        jobs=[],
    )
    cells = {(16, 0.0): 0.60, (16, 0.1): 0.61, (16, 0.2): 0.62, (32, 0.0): 0.70, (32, 0.1): 0.71}
    for i, ((alpha, margin), r1) in enumerate(cells.items()):
        write_job(sweep / str(i), [r1 - 0.1, r1, r1], **{ALPHA: alpha, MARGIN: margin})
    summary = write_report(sweep, tmp_path / "report")
    data = _load(tmp_path / "report" / "summary.json")
    assert data["experiment"] == "alpha_delta" and data["param_names"] == [ALPHA, MARGIN]
    assert data["budget"]["note"] == "3 epochs, the same for every cell"
    rows = rows_by(data, ALPHA, MARGIN)
    assert set(rows) == set(cells)
    for cell, r1 in cells.items():
        assert rows[cell]["recall_at_1"] == pytest.approx({"mean": r1, "std": 0.0}, abs=1e-12)
    ys, xs, grid = heatmap_grid(summary)
    assert ys == [16, 32] and xs == [0.0, 0.1, 0.2]
    np.testing.assert_allclose(grid, [[0.60, 0.61, 0.62], [0.70, 0.71, np.nan]], rtol=0, atol=1e-12)
    assert "r1_heatmap.png" in data["plots"]
    assert (tmp_path / "report" / "r1_heatmap.png").stat().st_size > 0
    assert not (sweep / "summary.json").exists()  # --out, not the sweep directory


def test_failed_jobs_are_listed_and_the_rest_reported(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep / "ok1", [0.5, 0.6], **{"train.seed": 1})
    write_job(sweep / "ok2", [0.5, 0.8], **{"train.seed": 2})
    nan_error = "NonFiniteLossError: the loss is nan at epoch 2"
    write_job(sweep / "nan", [0.5], status="failed", error=nan_error, **{"train.seed": 3})
    write_job(sweep / "ctrl_c", [0.5], status="interrupted", **{"train.seed": 4})
    write_job(sweep / "live", [0.5], status="running", **{"train.seed": 5})
    write_job(sweep / "stopped", [0.5], status="stopped", **{"train.seed": 6})
    assert main([str(sweep)]) == 0
    data = _load(sweep / "summary.json")
    assert [row["seeds"] for row in data["rows"]] == [[1, 2]]
    assert data["rows"][0]["recall_at_1"] == pytest.approx(
        {"mean": 0.7, "std": statistics.stdev([0.6, 0.8])}, abs=1e-12
    )
    failed = {f["job"]: f for f in data["failed"]}
    assert {job: f["status"] for job, f in failed.items()} == {
        "nan": "failed",
        "ctrl_c": "interrupted",
        "live": "running",
        "stopped": "stopped",
    }
    assert failed["nan"]["error"] == nan_error
    assert "epoch 1 of 3" in failed["live"]["error"]
    assert "--resume" in failed["stopped"]["error"]
    md = (sweep / "summary.md").read_text()
    assert "## Jobs not reported" in md and "| nan | failed | NonFiniteLossError" in md


def test_corrupt_and_missing_results_are_listed(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep / "good", [0.4, 0.5])
    (write_job(sweep / "torn", [0.5], **{"train.seed": 2}) / "results.json").write_text('{"sta')
    nan_run = write_job(sweep / "nan_recall", [0.5, 0.6], **{"train.seed": 3})
    record = _load(nan_run / "results.json")
    record["history"][1]["recall_at_1"] = float("nan")
    (nan_run / "results.json").write_text(json.dumps(record))  # NaN, as Python writes it
    percent = write_job(sweep / "percent", [0.5, 0.6], **{"train.seed": 6})
    record = _load(percent / "results.json")
    record["history"][1]["recall_at_1"] = 60.0  # a percentage, not a fraction
    (percent / "results.json").write_text(json.dumps(record))
    wrong_type = write_job(sweep / "wrong_type", [0.5], **{"train.seed": 7})
    record = _load(wrong_type / "results.json")
    record["history"] = "epoch 1"
    (wrong_type / "results.json").write_text(json.dumps(record))
    started = write_job(sweep / "no_results", [0.5], **{"train.seed": 4})
    for name in ("results.json", "results.md"):
        (started / name).unlink()
    no_config = write_job(sweep / "no_config", [0.5], **{"train.seed": 5})
    (no_config / "config.yaml").unlink()
    summary = write_report(sweep)
    assert [row.seeds for row in summary.rows] == [[1]]
    failed = {f["job"]: f for f in summary.failed}
    assert failed["torn"]["status"] == "corrupt" and "results.json" in failed["torn"]["error"]
    assert "not valid JSON" in failed["torn"]["error"]
    assert failed["nan_recall"]["status"] == "corrupt"
    assert "recall_at_1 = nan" in failed["nan_recall"]["error"]
    assert "recall_at_1 = 60.0, outside 0..1" in failed["percent"]["error"]
    assert "wrong_type/results.json is not a run's results" in failed["wrong_type"]["error"]
    assert failed["no_results"]["status"] == "missing"
    assert "no results.json" in failed["no_results"]["error"]
    assert failed["no_config"]["status"] == "missing"
    assert "no config.yaml" in failed["no_config"]["error"]


def test_all_jobs_failed_still_writes_the_report_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep / "a", [0.5], status="failed", error="boom")
    write_job(sweep / "b", [0.5], status="interrupted", **{"train.seed": 2})
    assert main([str(sweep)]) == 1
    data = _load(sweep / "summary.json")
    assert data["rows"] == [] and data["plots"] == []
    assert [f["job"] for f in data["failed"]] == ["a", "b"]
    assert "No job finished: all 2 jobs failed" in (sweep / "summary.md").read_text()
    assert "no job finished" in capsys.readouterr().err


def test_mixed_budgets_are_refused_naming_the_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep / "a", [0.5], **{"train.epochs": 3})
    write_job(sweep / "b", [0.5], **{"train.epochs": 3, "train.seed": 2})
    write_job(sweep / "c", [0.5], **{"train.epochs": 6, "data.class_rotations": 1})
    with pytest.raises(BudgetMismatchError) as info:
        summarize(sweep)
    message = str(info.value)
    assert "different budgets" in message
    assert "train.epochs: 3 in a, b; 6 in c" in message
    assert "data.class_rotations: 4 in a, b; 1 in c" in message
    # the same jobs are a sweep over the epochs when sweep.json says so
    write_sweep_file(sweep, params=["train.epochs", "data.class_rotations"])
    data = summarize(sweep).to_dict()
    assert [row["params"] for row in data["rows"]] == [
        {"train.epochs": 3, "data.class_rotations": 4},
        {"train.epochs": 6, "data.class_rotations": 1},
    ]


def test_empty_missing_and_file_sweep_directories_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "notes" / "todo.txt").write_text("run the sweep")
    (empty / "README.md").write_text("nothing yet")
    with pytest.raises(EmptySweepDirectoryError, match="holds no job"):
        write_report(empty)
    with pytest.raises(SweepDirectoryError, match="does not exist"):
        write_report(tmp_path / "nowhere")
    with pytest.raises(SweepDirectoryError, match="is a file"):
        write_report(empty / "README.md")
    job_sweep = tmp_path / "sweep"
    write_job(job_sweep / "a", [0.5])
    with pytest.raises(ReportOutputError, match="cannot create the report folder"):
        write_report(job_sweep, empty / "README.md")
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sweep directory") and "does not exist" in err
    assert isinstance(EmptySweepDirectoryError("x"), UserError)


def test_categorical_loss_comparison_gives_class_names_and_bars(tmp_path: Path) -> None:
    sweep = tmp_path / "compare"
    ms = {"MultiSimilarityLoss": {"alpha": 2, "beta": 50, "base": 0.5}}
    ms_miner = {"MultiSimilarityMiner": {"epsilon": 0.1}}
    write_job(sweep / "pa_a16", [0.6], loss={"ProxyAnchorLoss": {"margin": 0.1, "alpha": 16}})
    write_job(sweep / "pa_a32", [0.7])
    write_job(sweep / "ms_lr3", [0.5], loss=ms, miner=ms_miner)
    write_job(sweep / "ms_lr4", [0.4], loss=ms, miner=ms_miner, **{"optimizer.lr": 1e-4})
    data = write_report(sweep).to_dict()
    assert data["param_names"] == ["loss", "miner", "optimizer.lr"]
    assert {(r["params"]["loss"], r["params"]["optimizer.lr"]) for r in data["rows"]} == {
        ("ProxyAnchorLoss(alpha=16)", 0.001),
        ("ProxyAnchorLoss(alpha=32)", 0.001),
        ("MultiSimilarityLoss", 0.001),
        ("MultiSimilarityLoss", 0.0001),
    }
    assert "r1_bars.png" in data["plots"]
    # sweep.json names loss and lr: the miner follows the loss, so it is no parameter
    write_sweep_file(sweep, experiment="loss_comparison", params=["loss", "optimizer.lr"])
    data = write_report(sweep).to_dict()
    assert data["experiment"] == "loss_comparison"
    assert data["param_names"] == ["loss", "optimizer.lr"]


def test_sweep_file_errors_and_duplicate_seeds(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_job(sweep / "a", [0.5])
    write_sweep_file(sweep, params=["optimizer.lrr"])
    with pytest.raises(SweepFileError, match=r"'optimizer\.lrr'.*Did you mean 'optimizer\.lr'"):
        summarize(sweep)
    (sweep / "sweep.json").write_text("{oops")
    with pytest.raises(SweepFileError, match="sweep.json is not valid JSON"):
        summarize(sweep)
    write_sweep_file(sweep, params="optimizer.lr")
    with pytest.raises(SweepFileError, match="'params' must be a list"):
        summarize(sweep)
    (sweep / "sweep.json").unlink()
    write_job(sweep / "a_again", [0.6])
    with pytest.raises(DuplicateJobError, match="jobs a and a_again have the same parameters"):
        summarize(sweep)


def test_report_on_a_real_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pml_proxy_anchor.training import load_config, run
    from tests.training.fixture_run import fixture_overrides, make_data

    data_root = make_data(tmp_path / "data")
    sweep = tmp_path / "sweep"
    overrides = {"train.epochs": 1, "train.warm_epochs": 0}
    results = run(load_config(fixture_overrides(data_root, sweep / "job0", **overrides)))
    assert main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| n | seeds | R@1 |" in out and str(tmp_path / "out" / "summary.json") in out
    data = _load(tmp_path / "out" / "summary.json")
    (row,) = data["rows"]
    assert row["seeds"] == [3] and row["epochs_to_95"] == [1]
    for key, value in results["final"]["metrics"].items():
        if key.startswith("recall_at_"):
            assert row[key] == {"mean": value, "std": 0.0}
    assert row["seconds"] == [results["history"][-1]["elapsed_seconds"]]
    assert data["budget"]["data.name"] == "cub200" and data["budget"]["train.epochs"] == 1
    assert data["experiment"] == "sweep"


def test_launcher_sweep_file_with_a_config_group_and_a_pending_job(tmp_path: Path) -> None:
    """sweep.json as the launcher writes it: 'parameters' with train.seed and a config group
    ('method', not a config key: its value comes from the job's 'params')."""
    sweep = tmp_path / "compare"
    ms = {"MultiSimilarityLoss": {"alpha": 2, "beta": 50, "base": 0.5}}
    methods = {
        "proxy_anchor": {},
        "multi_similarity": {
            "loss": ms,
            "miner": {"MultiSimilarityMiner": {"epsilon": 0.1}},
            "optimizer.lr": 1e-4,
        },
    }
    entries = []
    for method, settings in methods.items():
        for seed in (1, 2, 3):
            name = f"method={method},train.seed={seed}"
            entries.append({"name": name, "params": {"method": method, "train.seed": seed}})
            if (method, seed) != ("multi_similarity", 3):
                r1 = 0.7 + 0.01 * seed if method == "proxy_anchor" else 0.6 + 0.02 * seed
                write_job(sweep / name, [r1], **{"train.seed": seed, **settings})
    write_sweep_file(
        sweep,
        experiment="omniglot/compare",
        base_config="omniglot",
        parameters=["method", "train.seed"],
        budget={"train.epochs": 3},
        jobs=entries,
    )
    data = write_report(sweep).to_dict()
    assert data["experiment"] == "omniglot/compare"
    assert data["param_names"] == ["method"]  # loss, miner and lr follow the method
    rows = rows_by(data, "method")
    assert rows[("proxy_anchor",)]["seeds"] == [1, 2, 3]
    assert rows[("proxy_anchor",)]["recall_at_1"] == pytest.approx(
        {"mean": 0.72, "std": 0.01}, abs=1e-12
    )
    assert rows[("multi_similarity",)]["seeds"] == [1, 2]
    assert data["failed"] == [
        {
            "job": "method=multi_similarity,train.seed=3",
            "status": "pending",
            "error": "no run directory: the job has not started",
        }
    ]
    assert data["jobs"] == {"total": 6, "finished": 5}


def test_a_key_added_since_a_job_ran_counts_as_its_default(tmp_path: Path) -> None:
    """A job saved before ``train.precision`` existed groups with fp32 jobs (the default it ran
    as), not as a parameter setting of its own; a real difference still splits the rows."""
    sweep = tmp_path / "multirun"
    write_sweep_file(sweep, experiment="compare", params=["train.seed"], jobs=[])
    assert "precision" not in make_config()["train"]  # a config from before the key
    write_job(sweep / "s1", [0.5, 0.6], **{"train.seed": 1})
    write_job(sweep / "s2", [0.5, 0.7], **{"train.seed": 2, "train.precision": "fp32"})
    write_job(sweep / "s3", [0.5, 0.8], **{"train.seed": 3, "train.precision": "fp32"})
    data = write_report(sweep, tmp_path / "report").to_dict()
    assert data["param_names"] == [] and len(data["rows"]) == 1
    row = data["rows"][0]
    assert row["seeds"] == [1, 2, 3]
    assert row["recall_at_1"]["mean"] == pytest.approx(0.7, abs=1e-12)
    write_job(sweep / "s4", [0.5, 0.9], **{"train.seed": 4, "train.precision": "bf16"})
    data = write_report(sweep, tmp_path / "report2").to_dict()
    assert data["param_names"] == ["train.precision"]
    rows = rows_by(data, "train.precision")
    assert rows[("fp32",)]["seeds"] == [1, 2, 3] and rows[("bf16",)]["seeds"] == [4]


def test_a_numeric_and_a_categorical_parameter_give_one_line_per_category(tmp_path: Path) -> None:
    """Embedding size x loss (the paper's Fig. 5): Recall@1 against the size, a line per loss."""
    sweep = tmp_path / "embedding"
    ms = {"MultiSimilarityLoss": {"alpha": 2, "beta": 50, "base": 0.5}}
    for size, r1 in ((64, 0.7), (128, 0.8)):
        write_job(sweep / f"pa{size}", [r1], **{EMB: size})
        write_job(sweep / f"ms{size}", [r1 - 0.1], loss=ms, **{EMB: size})
    summary = write_report(sweep)
    assert sorted(summary.param_names) == sorted(["loss", EMB]) and line_group(summary) == "loss"
    plots = ["r1_vs_model.embedding_size.png", "r1_vs_epoch.png", "r1_vs_seconds.png"]
    assert summary.plots == plots
    assert (sweep / "r1_vs_model.embedding_size.png").read_bytes()[:4] == b"\x89PNG"
    assert not (sweep / "r1_bars.png").exists()
    # two numeric parameters stay a heatmap, one categorical alone stays bars
    alpha = {"ProxyAnchorLoss": {"margin": 0.1, "alpha": 16}}
    grid = tmp_path / "grid"
    for i, (size, lr) in enumerate(((64, 1e-3), (128, 1e-3), (64, 1e-4))):
        write_job(grid / str(i), [0.5], **{EMB: size, "optimizer.lr": lr})
    assert line_group(write_report(grid)) is None
    bars = tmp_path / "bars"
    write_job(bars / "a", [0.5], loss=alpha)
    write_job(bars / "b", [0.6], loss=ms)
    assert write_report(bars).plots[0] == "r1_bars.png"
