"""End to end on fixture images through PML's real trainer, tester and logging.

CUB-200-2011 fixture tree, small_cnn backbone, our ProxyAnchorLoss: 2 epochs train, the loss
decreases, Recall@K is logged (results.json, record-keeper CSV, TensorBoard), checkpoints are
written; a run stopped after epoch 1 and resumed ends exactly where an uninterrupted run ends,
also in a copy of its directory; a NaN loss stops the run and keeps the last good checkpoint; run
directories are protected; gradients at every optimizer step are within ``train.grad_clip``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from pml_proxy_anchor.training import (
    ConfigMismatchError,
    NonFiniteLossError,
    RunDirectoryExistsError,
    checkpoint,
    load_config,
    run,
)
from pml_proxy_anchor.training.builders import model_config
from pml_proxy_anchor.training.run_dir import run_dir_for_config_file
from pml_proxy_anchor.training.seed import seed_everything
from tests.training.fixture_run import fixture_overrides, make_data

RECALLS = ("recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("e2e")
    data = make_data(base / "data")
    full = run(load_config(fixture_overrides(data, base / "full")))
    stopped_dir = base / "stopped"
    stopped = run(
        load_config(fixture_overrides(data, stopped_dir, **{"train.stop_after_epoch": 1}))
    )
    return {"base": base, "data": data, "full": full, "stopped": stopped}


def _state(run_dir: Path, name: str = "last.pt") -> dict[str, Any]:
    return checkpoint.load(Path(run_dir) / "checkpoints" / name)


def test_two_epochs_loss_decreases_and_recall_is_logged(runs: dict[str, Any]) -> None:
    results = runs["full"]
    run_dir = Path(results["run_dir"])
    assert results["status"] == "finished" and results["epochs_completed"] == 2
    history = results["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    for record in history:
        assert all(0.0 <= record[k] <= 1.0 for k in RECALLS)
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["final"]["metrics"]["recall_at_1"] == history[-1]["recall_at_1"]
    assert "R@8" in (run_dir / "results.md").read_text()
    # PML's record-keeper: one accuracy row per epoch, named like PML's HookContainer names it.
    (table,) = (run_dir / "logs" / "csv").glob("accuracies_*TEST_vs_self.csv")
    rows = list(csv.DictReader(table.open()))
    assert [float(r["recall_at_1_level0"]) for r in rows] == [r["recall_at_1"] for r in history]
    assert (run_dir / "logs" / "csv" / "logs.db").is_file()
    assert list((run_dir / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "plots" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_hold_the_full_state(runs: dict[str, Any]) -> None:
    run_dir = Path(runs["full"]["run_dir"])
    last = _state(run_dir)
    assert last["epoch"] == 2
    assert set(last["models"]) == {"trunk", "embedder"}
    assert set(last["optimizers"]) == {
        "trunk_optimizer",
        "embedder_optimizer",
        "metric_loss_optimizer",
    }
    assert set(last["lr_schedulers"]) == {
        "trunk_scheduler_by_epoch",
        "embedder_scheduler_by_epoch",
        "metric_loss_scheduler_by_epoch",
    }
    proxies = last["loss_funcs"]["metric_loss"]["proxies"]
    assert proxies.shape == (4, 16)  # 4 train classes, embedding 16
    # Proxies at 100x the base lr (1e-3), StepLR(step 1, gamma 0.5) stepped twice.
    groups = {k: v["param_groups"][0]["lr"] for k, v in last["optimizers"].items()}
    assert groups["trunk_optimizer"] == pytest.approx(1e-3 * 0.25, rel=1e-9)
    assert groups["metric_loss_optimizer"] == pytest.approx(1e-1 * 0.25, rel=1e-9)
    best = _state(run_dir, "best.pt")
    assert best["epoch"] == runs["full"]["best"]["epoch"]
    assert set(best) >= {"models", "loss_funcs", "metrics", "config"}


def test_warm_up_epoch_trains_only_the_embedder_and_the_proxies(runs: dict[str, Any]) -> None:
    cfg = load_config(fixture_overrides(runs["data"], runs["base"] / "unused"))
    seed_everything(int(cfg.train.seed))
    from pml_proxy_anchor.models import build_model

    trunk0, embedder0 = build_model(model_config(cfg))
    epoch1 = _state(Path(runs["stopped"]["run_dir"]))
    assert epoch1["epoch"] == 1
    for key, value in trunk0.state_dict().items():  # BN frozen too: nothing in the trunk moved
        assert torch.equal(epoch1["models"]["trunk"][key], value), key
    moved = epoch1["models"]["embedder"]["embedding.weight"] - embedder0.embedding.weight
    assert moved.abs().max() > 1e-6
    epoch2 = _state(Path(runs["full"]["run_dir"]))
    assert any(
        not torch.equal(epoch2["models"]["trunk"][k], v) for k, v in trunk0.state_dict().items()
    )


def test_kill_and_resume_equals_uninterrupted(runs: dict[str, Any]) -> None:
    assert runs["stopped"]["status"] == "stopped" and runs["stopped"]["epochs_completed"] == 1
    resumed_dir = runs["base"] / "resumed"
    shutil.copytree(runs["stopped"]["run_dir"], resumed_dir)
    cfg = load_config(fixture_overrides(runs["data"], resumed_dir))
    resumed = run(cfg, resume=True)
    full = runs["full"]
    assert resumed["status"] == "finished"
    for a, b in zip(resumed["history"], full["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)
        for k in RECALLS:
            assert a[k] == pytest.approx(b[k], abs=1e-9)
    got, want = _state(resumed_dir), _state(Path(full["run_dir"]))
    for group in ("models", "loss_funcs"):
        for name, state in want[group].items():
            for key, value in state.items():
                torch.testing.assert_close(got[group][name][key], value, rtol=1e-6, atol=1e-7)


def test_a_copied_run_directory_resumes_in_the_copy(runs: dict[str, Any]) -> None:
    """``cp -a runX runY``; ``train runY/config.yaml --resume`` continues runY, runX untouched."""
    original = Path(runs["stopped"]["run_dir"])
    copy = runs["base"] / "copied"
    shutil.copytree(original, copy, symlinks=True)
    before = {p: p.read_bytes() for p in original.rglob("*") if p.is_file()}
    config_file = copy / "config.yaml"
    cfg = load_config(config_file)
    assert cfg.run_dir == str(original)  # the copied config still names the original
    found = run_dir_for_config_file(config_file)  # what the command line resumes
    assert found == copy
    cfg.run_dir = str(found)
    resumed = run(cfg, resume=True)
    assert resumed["status"] == "finished" and resumed["run_dir"] == str(copy)
    assert _state(copy)["epoch"] == 2
    assert load_config(config_file).run_dir == str(copy)
    assert {p: p.read_bytes() for p in original.rglob("*") if p.is_file()} == before
    assert resumed["history"][0] == runs["stopped"]["history"][0]
    assert resumed["history"][1]["loss"] == pytest.approx(
        runs["full"]["history"][1]["loss"], rel=1e-6, abs=1e-7
    )


def test_gradients_are_clipped_at_every_optimizer_step_of_a_run(runs: dict[str, Any]) -> None:
    """train.grad_clip as wired into the real run: no gradient element above the limit when an
    optimizer steps, and the limit was reached (clipping active) for every optimizer."""
    clip = 0.01
    limit = torch.tensor(clip, dtype=torch.float32).item()
    seen: dict[int, dict[str, float]] = {}

    def record(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return  # the frozen trunk during warm-up
        stats = seen.setdefault(id(optimizer), {"steps": 0, "max": 0.0, "at_limit": 0})
        stats["steps"] += 1
        stats["max"] = max(stats["max"], max(float(g.abs().max()) for g in grads))
        stats["at_limit"] += sum(int((g.abs() == limit).sum()) for g in grads)

    handle = register_optimizer_step_pre_hook(record)
    try:
        cfg = load_config(
            fixture_overrides(runs["data"], runs["base"] / "clipped", **{"train.grad_clip": clip})
        )
        results = run(cfg)
    finally:
        handle.remove()
    assert results["status"] == "finished"
    assert len(seen) == 3  # trunk (epoch 2), embedder, proxies
    assert sorted(s["steps"] for s in seen.values()) == [3, 6, 6]
    for stats in seen.values():
        assert stats["max"] <= limit
        assert stats["at_limit"] > 0


def test_resume_refuses_a_changed_config(runs: dict[str, Any]) -> None:
    cfg = load_config(
        fixture_overrides(runs["data"], runs["stopped"]["run_dir"], **{"optimizer.lr": 0.5})
    )
    with pytest.raises(ConfigMismatchError, match=r"optimizer\.lr: 0\.001 -> 0\.5"):
        run(cfg, resume=True)


def test_a_run_directory_is_never_overwritten_unless_asked(runs: dict[str, Any]) -> None:
    run_dir = Path(runs["full"]["run_dir"])
    cfg = load_config(fixture_overrides(runs["data"], run_dir, **{"train.epochs": 1}))
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(RunDirectoryExistsError, match=r"finished run \(2 of 2.*--overwrite"):
        run(cfg)
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before
    stray = runs["base"] / "not_a_run"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryExistsError, match="does not look like a run directory"):
        run(load_config(fixture_overrides(runs["data"], stray)), overwrite=True)
    assert (stray / "notes.txt").read_text() == "mine"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(runs: dict[str, Any]) -> None:
    nan_dir = runs["base"] / "nan"
    shutil.copytree(runs["stopped"]["run_dir"], nan_dir)
    last = nan_dir / "checkpoints" / "last.pt"
    state = checkpoint.load(last)
    state["loss_funcs"]["metric_loss"]["proxies"].fill_(float("nan"))
    checkpoint.save_atomic(state, last)
    kept = last.read_bytes()
    cfg = load_config(fixture_overrides(runs["data"], nan_dir))
    with pytest.raises(
        NonFiniteLossError,
        match=r"nan at epoch 2, iteration 1/3 \(global step 4\).*last\.pt \(end of epoch 1\)",
    ):
        run(cfg, resume=True)
    assert last.read_bytes() == kept
    results = json.loads((nan_dir / "results.json").read_text())
    assert results["status"] == "failed" and "epoch 2" in results["error"]


def test_a_loss_without_proxies_trains_and_checkpoints(runs: dict[str, Any]) -> None:
    """Losses with no ``proxies`` (pair losses) go through the same trainer and checkpoints."""
    from pml_proxy_anchor.training.config import to_dict

    cfg = to_dict(load_config(fixture_overrides(runs["data"], runs["base"] / "triplet")))
    cfg["loss"] = {"pml.TripletMarginLoss": {"margin": 0.1}}
    cfg["train"]["epochs"] = 1
    results = run(load_config(cfg))
    assert results["status"] == "finished"
    state = _state(runs["base"] / "triplet")
    assert "metric_loss_optimizer" not in state.get("optimizers", {})
