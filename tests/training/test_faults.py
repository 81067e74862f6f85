"""Faults end a run cleanly, with its state consistent and a message that names the fix.

Divergence to NaN, unreadable checkpoints, a full disk or a folder without write permission
(simulated by making the write raise, as running as root ignores file modes), and Ctrl-C, each on
the tiny fixture run of tests/training.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.training import (
    CheckpointNotFoundError,
    ConfigMismatchError,
    NonFiniteLossError,
    checkpoint,
    evaluate,
    load_config,
    run,
)
from pml_proxy_anchor.training import record as record_module
from pml_proxy_anchor.training.checkpoint import CorruptCheckpointError
from pml_proxy_anchor.training.record import (
    ResultsFileError,
    RunFileWriteError,
    RunRecord,
    refresh_report,
    write_text_atomic,
)
from pml_proxy_anchor.training.run import RunInterrupted, TrainingRun
from pml_proxy_anchor.training.run_dir import RunDirectory
from tests.training.fixture_run import fixture_overrides, make_data


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-epoch run stopped after epoch 1 (its last.pt is the end of epoch 1)."""
    base = tmp_path_factory.mktemp("faults")
    data = make_data(base / "data")
    run_dir = base / "stopped"
    run(load_config(fixture_overrides(data, run_dir, **{"train.stop_after_epoch": 1})))
    return {"base": base, "data": data, "run_dir": run_dir}


def _copy(stopped: dict[str, Any], name: str) -> Path:
    target = stopped["base"] / name
    shutil.copytree(stopped["run_dir"], target, symlinks=True)
    return target


def _results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def _temporaries(run_dir: Path) -> list[str]:
    return [str(p) for p in run_dir.rglob("*.tmp-*")]


# ---------------------------------------------------------------------- divergence
def test_divergence_stops_naming_epoch_step_and_the_learning_rate(
    stopped: dict[str, Any],
) -> None:
    """optimizer.lr=1e6: the NaN guard fires on the embeddings, before the loss's own input
    check; the last good checkpoint (epoch 1) is kept and results.json says failed."""
    run_dir = stopped["base"] / "diverged"
    cfg = load_config(fixture_overrides(stopped["data"], run_dir, **{"optimizer.lr": 1e6}))
    with pytest.raises(NonFiniteLossError) as caught:
        run(cfg)
    message = str(caught.value)
    assert "at epoch 2, iteration" in message and "(global step" in message
    assert "last.pt (end of epoch 1), was kept" in message
    assert "learning rate is too high" in message and "optimizer.lr=1000000.0" in message
    assert "lower optimizer.lr" in message and "--overwrite" in message
    last = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert last["epoch"] == 1
    for state in (*last["models"].values(), *last["loss_funcs"].values()):
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    results = _results(run_dir)
    assert results["status"] == "failed" and results["epochs_completed"] == 1
    assert "epoch 2" in results["error"] and "learning rate" in results["error"]


def test_nan_weights_in_a_checkpoint_are_caught_before_the_loss(stopped: dict[str, Any]) -> None:
    run_dir = _copy(stopped, "nan_trunk")
    last = run_dir / "checkpoints" / "last.pt"
    state = checkpoint.load(last)
    state["models"]["embedder"]["embedding.weight"].fill_(float("nan"))
    checkpoint.save_atomic(state, last)
    cfg = load_config(fixture_overrides(stopped["data"], run_dir))
    with pytest.raises(NonFiniteLossError, match=r"embeddings became non-finite \(128 NaN"):
        run(cfg, resume=True)
    assert _results(run_dir)["status"] == "failed"


# ---------------------------------------------------------------------- unreadable checkpoints
def _damaged(kind: str, good: bytes) -> bytes:
    generator = torch.Generator().manual_seed(7)
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "random": bytes(torch.randint(0, 256, (4096,), generator=generator).tolist()),
        "text": b"not a checkpoint\n",
    }[kind]


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "text"])
@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_a_damaged_checkpoint_names_the_file_and_the_fix(
    tmp_path: Path, stopped: dict[str, Any], kind: str, name: str
) -> None:
    good = (stopped["run_dir"] / "checkpoints" / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(_damaged(kind, good))
    with pytest.raises(CorruptCheckpointError) as caught:
        checkpoint.load(path)
    message = str(caught.value)
    assert str(path) in message and "truncated or corrupted" in message
    assert ("--overwrite" in message) if name == "last.pt" else ("--which last" in message)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)


def test_resume_and_eval_with_a_truncated_checkpoint(stopped: dict[str, Any]) -> None:
    run_dir = _copy(stopped, "truncated")
    for name in ("last.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:1000])
    cfg = load_config(fixture_overrides(stopped["data"], run_dir))
    with pytest.raises(CorruptCheckpointError, match=r"last\.pt is not a readable checkpoint"):
        run(cfg, resume=True)
    with pytest.raises(CorruptCheckpointError, match=r"best\.pt is not a readable checkpoint"):
        evaluate(run_dir)
    garbage = stopped["base"] / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CorruptCheckpointError, match="garbage.pt"):
        evaluate(garbage)
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        checkpoint.load(stopped["base"] / "missing.pt")


def test_resume_with_a_damaged_config_yaml_compares_with_the_checkpoints_config(
    stopped: dict[str, Any],
) -> None:
    run_dir = _copy(stopped, "damaged_config")
    (run_dir / "config.yaml").write_text("train: [unclosed\n")
    changed = fixture_overrides(stopped["data"], run_dir, **{"optimizer.lr": 0.5})
    with pytest.raises(ConfigMismatchError, match=r"optimizer\.lr: 0\.001 -> 0\.5"):
        run(load_config(changed), resume=True)
    same = fixture_overrides(stopped["data"], run_dir, **{"train.epochs": 1})
    results = run(load_config(same), resume=True)  # epoch 1 is done: nothing left to train
    assert results["status"] == "finished" and results["epochs_completed"] == 1
    assert load_config(run_dir / "config.yaml").run_dir == str(run_dir)  # written again


# ---------------------------------------------------------------------- full disk, permissions
def _failing_save(err: BaseException, only: str) -> Any:
    real_save = torch.save

    def save(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        if Path(handle.name).name.startswith(f".{only}.tmp-"):
            handle.write(b"half a checkpoint")
            raise err
        real_save(obj, handle, *args, **kwargs)

    return save


@pytest.mark.parametrize(
    ("err", "cause"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
        (
            RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"),
            "the write was cut short, usually because the disk is full",
        ),
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    ],
)
def test_a_failed_checkpoint_write_leaves_the_old_file_and_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: BaseException, cause: str
) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "epoch": 1}, path)
    monkeypatch.setattr(torch, "save", _failing_save(err, "last.pt"))
    with pytest.raises(RunFileWriteError, match=rf"could not write {path}: {cause}"):
        checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "epoch": 2}, path)
    assert checkpoint.load(path)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_disk_full_during_a_run_fails_it_with_results_matching_the_checkpoints(
    stopped: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _copy(stopped, "disk_full")
    kept = (run_dir / "checkpoints" / "last.pt").read_bytes()
    monkeypatch.setattr(torch, "save", _failing_save(OSError(errno.ENOSPC, "full"), "last.pt"))
    cfg = load_config(fixture_overrides(stopped["data"], run_dir))
    with pytest.raises(RunFileWriteError, match=r"last\.pt: no space left on the device"):
        run(cfg, resume=True)
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == kept
    assert _temporaries(run_dir) == []
    results = _results(run_dir)
    assert results["status"] == "failed" and "no space left" in results["error"]
    assert (
        results["epochs_completed"]
        == 1
        == checkpoint.load(run_dir / "checkpoints" / "last.pt")["epoch"]
    )


def test_results_that_cannot_be_written_stay_as_they_were(
    stopped: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _copy(stopped, "read_only_results")
    before = (run_dir / "results.json").read_bytes()
    real_replace = record_module.os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name.startswith("results."):
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(record_module.os, "replace", replace)
    record = RunRecord.read(run_dir)
    assert record is not None
    record.status = "finished"
    with pytest.raises(RunFileWriteError, match=r"results\.json: permission denied"):
        record.write()
    record.end("failed", "because")  # never raises: the error that ended the run goes on
    assert (run_dir / "results.json").read_bytes() == before
    assert _temporaries(run_dir) == []
    with pytest.raises(RunFileWriteError, match="notes.txt: permission denied"):
        monkeypatch.setattr(
            record_module.os,
            "replace",
            lambda src, dst: (_ for _ in ()).throw(PermissionError(errno.EACCES, "denied")),
        )
        write_text_atomic(run_dir / "notes.txt", "x")
    assert not (run_dir / "notes.txt").exists()


# ---------------------------------------------------------------------- Ctrl-C
def _interrupt_in_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    real = TrainingRun.on_iteration_end

    def on_iteration_end(self: TrainingRun, trainer: Any) -> None:
        real(self, trainer)
        if trainer.epoch == epoch and trainer.iteration == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingRun, "on_iteration_end", on_iteration_end)


def test_ctrl_c_after_an_epoch_says_resume_and_resume_works(
    stopped: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _copy(stopped, "interrupted")
    _interrupt_in_epoch(monkeypatch, 2)
    with pytest.raises(RunInterrupted) as caught:
        run(load_config(fixture_overrides(stopped["data"], run_dir)), resume=True)
    assert isinstance(caught.value, KeyboardInterrupt) and isinstance(caught.value, UserError)
    config = run_dir / "config.yaml"
    assert str(caught.value) == (
        f"interrupted during epoch 2; the run's state is in {run_dir / 'checkpoints' / 'last.pt'}"
        f" (end of epoch 1). Continue with `pml-proxy-anchor train {config} --resume`."
    )
    results = _results(run_dir)
    assert results["status"] == "interrupted" and results["epochs_completed"] == 1
    monkeypatch.undo()
    resumed = run(load_config(config), resume=True)  # what the message says
    assert resumed["status"] == "finished" and resumed["epochs_completed"] == 2


def test_ctrl_c_in_the_first_epoch_says_start_over_and_that_works(
    stopped: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = stopped["base"] / "interrupted_early"
    cfg = load_config(fixture_overrides(stopped["data"], run_dir, **{"train.epochs": 1}))
    _interrupt_in_epoch(monkeypatch, 1)
    with pytest.raises(RunInterrupted, match="nothing to resume") as caught:
        run(cfg)
    config = run_dir / "config.yaml"
    assert f"`pml-proxy-anchor train {config} --overwrite`" in str(caught.value)
    assert _results(run_dir)["status"] == "interrupted"
    monkeypatch.undo()
    with pytest.raises(CheckpointNotFoundError, match="never finished an epoch"):
        run(load_config(config), resume=True)
    assert run(load_config(config), overwrite=True)["status"] == "finished"


def test_weights_that_diverge_on_the_last_step_are_never_evaluated_or_saved(
    stopped: dict[str, Any],
) -> None:
    """The last optimizer step of epoch 1 makes the embedder NaN: the end-of-epoch check stops
    the run before the tester or the checkpoints see the weights."""
    run_dir = stopped["base"] / "nan_after_step"
    steps: dict[int, int] = {}

    def poison(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not any(p.grad is not None for p in params):
            return  # the frozen trunk during warm-up
        steps[id(optimizer)] = steps.get(id(optimizer), 0) + 1
        if list(steps).index(id(optimizer)) == 0 and steps[id(optimizer)] == 3:
            with torch.no_grad():  # the embedder, at its last step of epoch 1
                for parameter in params:
                    parameter.fill_(float("nan"))

    handle = register_optimizer_step_post_hook(poison)
    try:
        with pytest.raises(
            NonFiniteLossError,
            match=r"weights became non-finite \(embedder\.embedding\.weight\) after the last "
            r"optimizer step at the end of epoch 1 \(global step 3\).*No checkpoint",
        ):
            run(load_config(fixture_overrides(stopped["data"], run_dir)))
    finally:
        handle.remove()
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    results = _results(run_dir)
    assert results["status"] == "failed" and results["epochs_completed"] == 0


def test_eval_does_not_write_into_a_live_runs_results(stopped: dict[str, Any]) -> None:
    run_dir = _copy(stopped, "live")
    before = (run_dir / "results.json").read_bytes()
    holder = RunDirectory(run_dir)
    holder.claim(resume=True, overwrite=False)
    try:
        evaluation = evaluate(run_dir)
    finally:
        holder.release()
    assert (run_dir / "results.json").read_bytes() == before
    assert evaluate(run_dir) == evaluation
    assert _results(run_dir)["evaluation"] == evaluation
    assert _results(run_dir)["status"] == "stopped"


def test_report_rewrites_from_results_json_and_names_a_bad_file(tmp_path: Path) -> None:
    record = RunRecord(run_dir=tmp_path, dataset="cub200", backbone="bn_inception", epochs=2)
    record.history = [{"epoch": 1, "loss": 2.0, "lr": 1e-4, "seconds": 1.0, "recall_at_1": 0.5}]
    record.write()
    (tmp_path / "results.md").unlink()
    markdown = refresh_report(tmp_path)
    assert markdown == (tmp_path / "results.md").read_text()
    assert "| ours, final (epoch 1) | 50.0 |" in markdown
    assert _results(tmp_path)["epochs_completed"] == 1
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ResultsFileError, match=r"results\.json is not valid JSON"):
        refresh_report(tmp_path)
    with pytest.raises(ResultsFileError, match=r"no results\.json in"):
        refresh_report(tmp_path / "elsewhere")
