"""Real multiruns through Hydra's launchers on a tiny config, resume, failures and refusals.

The sweeps run the real training stack on the CUB fixture tree (tests/sweeps/sweep_fixture.py):
a 2-job multirun takes a few seconds with the basic launcher and well under a minute with
joblib (two worker processes, each importing torch).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from pml_proxy_anchor.sweeps.errors import EmptySweepError, SweepConfigError
from pml_proxy_anchor.sweeps.launch import main, plan_sweep
from pml_proxy_anchor.training import load_config, run
from pml_proxy_anchor.training.run_dir import LOCK_FILE, MARKER, TOOL_ENTRIES
from tests.sweeps.sweep_fixture import make_experiment


def _sweep(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "sweep" / "sweep.json").read_text())


def _history(run_dir: Path) -> list[dict]:
    history = json.loads((run_dir / "results.json").read_text())["history"]
    return [{k: v for k, v in e.items() if "seconds" not in k} for e in history]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    return {f"{m}.{k}": v for m, sd in state["models"].items() for k, v in sd.items()}


def test_basic_multirun_is_identical_to_plain_runs_and_resumes(tmp_path: Path) -> None:
    experiment = make_experiment(tmp_path, {"train.log_freq": "1,2"})  # same training twice
    plain_dir = tmp_path / "plain"
    plain = load_config(tmp_path / "tiny.yaml", ["train.log_freq=1", f"run_dir={plain_dir}"])
    run(plain)
    handlers = list(logging.getLogger().handlers)
    threads = torch.get_num_threads()

    sweep_dir = tmp_path / "sweep"
    assert main([str(experiment), "--sweep-dir", str(sweep_dir)]) == 0

    record = _sweep(tmp_path)
    assert record["parameters"] == ["train.log_freq"]
    assert [job["name"] for job in record["jobs"]] == ["train.log_freq=1", "train.log_freq=2"]
    assert [(j["status"], j["action"]) for j in record["jobs"]] == [("finished", "started")] * 2
    assert record["budget"]["train.epochs"] == 1 and record["launcher"] == "basic"
    assert sorted(p.name for p in sweep_dir.iterdir()) == [
        "multirun.yaml",
        "sweep.json",
        "train.log_freq=1",
        "train.log_freq=2",
    ]
    first, second = sweep_dir / "train.log_freq=1", sweep_dir / "train.log_freq=2"
    # Hydra wrote nothing into the job folders: only the run's own entries.
    assert set(p.name for p in first.iterdir()) <= {MARKER, LOCK_FILE, *TOOL_ENTRIES}
    # Two identical trainings in one process, and a plain run: bit-identical.
    assert _history(first) == _history(second) == _history(plain_dir)
    for a, b, c in zip(*(_weights(d).values() for d in (first, second, plain_dir))):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert logging.getLogger().handlers == handlers and torch.get_num_threads() == threads

    # The same command again: nothing recomputed.
    stamp = (first / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert main([str(experiment), "--sweep-dir", str(sweep_dir)]) == 0
    assert [j["action"] for j in _sweep(tmp_path)["jobs"]] == ["skipped", "skipped"]
    assert (first / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp

    # An unfinished job resumes; a larger train.epochs extends every run.
    results = json.loads((second / "results.json").read_text())
    (second / "results.json").write_text(json.dumps({**results, "status": "interrupted"}))
    assert main([str(experiment), "--sweep-dir", str(sweep_dir)]) == 0
    assert [j["action"] for j in _sweep(tmp_path)["jobs"]] == ["skipped", "resumed"]
    assert main([str(experiment), "--sweep-dir", str(sweep_dir), "train.epochs=2"]) == 0
    assert [j["action"] for j in _sweep(tmp_path)["jobs"]] == ["resumed", "resumed"]
    assert [e["epoch"] for e in _history(first)] == [1, 2]

    # Another config in the same sweep directory: refused before anything runs.
    with pytest.raises(SweepConfigError, match=r"holds runs of another config.*weight_decay"):
        main([str(experiment), "--sweep-dir", str(sweep_dir), "optimizer.weight_decay=0"])


def test_joblib_multirun_runs_each_job_in_its_own_process(tmp_path: Path) -> None:
    experiment = make_experiment(tmp_path, {"train.seed": "1,2"})
    sweep_dir = tmp_path / "sweep"
    code = main([str(experiment), "--sweep-dir", str(sweep_dir), "hydra/launcher=joblib"])
    assert code == 0
    record = _sweep(tmp_path)
    assert record["launcher"] == "joblib"
    assert [(j["name"], j["status"]) for j in record["jobs"]] == [
        ("train.seed=1", "finished"),
        ("train.seed=2", "finished"),
    ]
    # 2 jobs at a time: cpu_count // 2 torch threads each (at least 1).
    expected = max(1, (os.cpu_count() or 1) // 2)
    assert [j["threads"] for j in record["jobs"]] == [expected, expected]
    assert _history(sweep_dir / "train.seed=1") != _history(sweep_dir / "train.seed=2")


def test_a_failed_job_is_recorded_and_the_others_run(tmp_path: Path) -> None:
    # K=100 exceeds the 24 test images: found when the run builds its data, not at load time.
    experiment = make_experiment(tmp_path, {"eval.k_values": "[1,100],[1,2]"})
    sweep_dir = tmp_path / "sweep"
    assert main([str(experiment), "--sweep-dir", str(sweep_dir)]) == 1
    jobs = {j["name"]: j for j in _sweep(tmp_path)["jobs"]}
    assert jobs["eval.k_values=[1,2]"]["status"] == "finished"
    failed = jobs["eval.k_values=[1,100]"]
    assert failed["status"] == "failed" and "100" in failed["error"]


def test_an_unknown_parameter_fails_before_any_job_with_did_you_mean(tmp_path: Path) -> None:
    experiment = make_experiment(tmp_path, {"train.log_freq": "1,2"})
    sweep_dir = tmp_path / "sweep"
    with pytest.raises(SweepConfigError) as caught:
        main([str(experiment), "--sweep-dir", str(sweep_dir), "optimizer.weight_decy=0,1e-4"])
    message = str(caught.value)
    assert "job 1 of 4" in message and "unknown config key 'optimizer.weight_decy'" in message
    assert "Did you mean optimizer.weight_decay" in message
    assert not sweep_dir.exists()  # nothing written
    typo = make_experiment(tmp_path / "typo", {"train.log_fre": "1,2"})  # in the experiment
    with pytest.raises(SweepConfigError, match=r"Did you mean train.log_freq"):
        plan_sweep(str(typo), sweep_dir=sweep_dir)


def test_an_empty_sweep_is_refused(tmp_path: Path) -> None:
    experiment = make_experiment(tmp_path, {})
    with pytest.raises(EmptySweepError, match=r"sweeps nothing.*train.seed=1,2,3"):
        plan_sweep(str(experiment), sweep_dir=tmp_path / "s")
    with pytest.raises(EmptySweepError, match=r"has no job: train.seed=range\(1,1\) has no value"):
        plan_sweep(str(experiment), ["train.seed=range(1,1)"], sweep_dir=tmp_path / "s")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["run_dir=/tmp/x"], r"each job runs in its own folder"),
        (["budget.train.epochs=1,2"], r"setting of the experiment and cannot be swept"),
        (["train.epochs=abc"], r"train.epochs='abc' must be an integer"),
        (["hydra/launcher=jobli"], r"hydra/launcher.*jobli"),
    ],
)
def test_bad_sweeps_are_refused(tmp_path: Path, overrides: list[str], pattern: str) -> None:
    experiment = make_experiment(tmp_path, {"train.seed": "1,2"})
    with pytest.raises(SweepConfigError, match=pattern):
        plan_sweep(str(experiment), overrides, sweep_dir=tmp_path / "s")


def test_a_folder_not_made_by_a_sweep_is_refused(tmp_path: Path) -> None:
    experiment = make_experiment(tmp_path, {"train.seed": "1,2"})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SweepConfigError, match=r"not empty and holds no sweep.json"):
        plan_sweep(str(experiment), sweep_dir=mine)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_an_unknown_experiment_names_the_closest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Did you mean omniglot/alpha_delta"):
        main(["omniglot/alpha_detla"])


def test_dry_run_lists_the_jobs_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = make_experiment(tmp_path, {"train.seed": "range(1,4)"})
    sweep_dir = tmp_path / "sweep"
    assert main([str(experiment), "--dry-run", "--sweep-dir", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "3 jobs over train.seed" in out and "[    pending] train.seed=3" in out
    assert not sweep_dir.exists()


def test_a_finished_run_of_a_sibling_sweep_is_copied_not_run_again(tmp_path: Path) -> None:
    # Stage 1 sweeps the lr at seed 1; stage 2 runs seeds 1-2 at lr 0.001 and reuses stage 1's
    # seed-1 run at that lr (the compare / compare_lr pair of the paper's experiments).
    root = tmp_path / "sweeps"
    first = make_experiment(tmp_path / "a", {"optimizer.lr": "0.001,0.002", "train.seed": "1"})
    assert main([str(first), "--sweep-dir", str(root / "lr")]) == 0
    source = root / "lr" / "optimizer.lr=0.001,train.seed=1"
    source_bytes = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}

    second = make_experiment(
        tmp_path / "a",
        {"train.seed": "1,2"},
        budget={"optimizer": {"lr": 0.001}},
        reuse_from=["lr"],
    )
    assert main([str(second), "--sweep-dir", str(root / "seeds")]) == 0
    jobs = {j["name"]: j for j in json.loads((root / "seeds" / "sweep.json").read_text())["jobs"]}
    assert jobs["train.seed=1"]["action"] == "reused"
    assert jobs["train.seed=1"]["reused_from"] == str(source)
    assert jobs["train.seed=2"]["action"] == "started"
    copy = root / "seeds" / "train.seed=1"
    assert _history(copy) == _history(source)
    assert json.loads((copy / MARKER).read_text())["copied_from"] == str(source)
    assert not (copy / LOCK_FILE).exists()
    # The source is only read.
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == source_bytes
    # Run again: the copy is a finished job of this sweep (skipped), its source still recorded.
    assert main([str(second), "--sweep-dir", str(root / "seeds")]) == 0
    jobs = {j["name"]: j for j in json.loads((root / "seeds" / "sweep.json").read_text())["jobs"]}
    assert jobs["train.seed=1"]["action"] == "skipped"
    assert jobs["train.seed=1"]["reused_from"] == str(source)


def test_a_run_with_another_config_is_not_reused(tmp_path: Path) -> None:
    root = tmp_path / "sweeps"
    first = make_experiment(tmp_path / "a", {"train.seed": "1"}, budget={"train": {"log_freq": 2}})
    assert main([str(first), "--sweep-dir", str(root / "one")]) == 0
    second = make_experiment(tmp_path / "a", {"train.seed": "1"}, reuse_from=["one", "missing"])
    assert main([str(second), "--sweep-dir", str(root / "two")]) == 0
    (job,) = json.loads((root / "two" / "sweep.json").read_text())["jobs"]
    assert job["action"] == "started" and job["reused_from"] is None


@pytest.mark.parametrize("value", [5, [""], [1, 2], {"a": "b"}])
def test_a_bad_reuse_from_is_refused(tmp_path: Path, value: object) -> None:
    experiment = make_experiment(tmp_path, {"train.seed": "1,2"}, reuse_from=value)
    with pytest.raises(SweepConfigError, match="reuse_from must be a list of sweep directories"):
        plan_sweep(str(experiment), sweep_dir=tmp_path / "sweep")


def test_a_refused_sweep_and_a_finished_one_leave_hydra_cleared(tmp_path: Path) -> None:
    from hydra.core.global_hydra import GlobalHydra

    experiment = make_experiment(tmp_path, {"train.log_freq": "1,2"})
    with pytest.raises(EmptySweepError):
        plan_sweep(str(experiment), ["train.log_freq=range(1,1)"], sweep_dir=tmp_path / "s")
    assert not GlobalHydra.instance().is_initialized()
    plan = plan_sweep(str(experiment), ["train.log_freq=1"], sweep_dir=tmp_path / "s")
    assert GlobalHydra.instance().is_initialized()  # kept for launch()
    assert plan.launch() == 0
    assert not GlobalHydra.instance().is_initialized()


def test_runs_saved_before_a_schema_key_existed_are_skipped_not_refused(tmp_path: Path) -> None:
    # A run made by an older version has no train.precision / channels_last / compile in its
    # config.yaml; it ran as their defaults, so continuing the sweep skips it.
    import yaml

    experiment = make_experiment(tmp_path, {"train.seed": "1"})
    sweep_dir = tmp_path / "sweep"
    assert main([str(experiment), "--sweep-dir", str(sweep_dir)]) == 0
    config_file = sweep_dir / "train.seed=1" / "config.yaml"
    saved = yaml.safe_load(config_file.read_text())
    for key in ("precision", "channels_last", "compile"):
        del saved["train"][key]
    config_file.write_text(yaml.safe_dump(saved))
    assert main([str(experiment), "--sweep-dir", str(sweep_dir)]) == 0
    assert [j["action"] for j in _sweep(tmp_path)["jobs"]] == ["skipped"]
    # A key the old run set to something else than today's default is still a change.
    saved["train"]["log_freq"] = 7
    config_file.write_text(yaml.safe_dump(saved))
    with pytest.raises(SweepConfigError, match="holds runs of another config.*log_freq"):
        main([str(experiment), "--sweep-dir", str(sweep_dir)])
