"""A timm ViT trained through the real trainer: one epoch of timm's ``test_vit`` at 32x32 pixels on
the CUB fixture tree (tests/training/fixture_run.py), with the timm transforms and the CLS-token
head, evaluated with Recall@K."""

from __future__ import annotations

import math
from pathlib import Path

from pml_proxy_anchor.training import checkpoint, load_config, run
from tests.training.fixture_run import fixture_overrides, make_data

TIMM_MODEL = {
    "backbone": "timm/test_vit",
    "pretrained": "none",
    "img_size": 32,
    "embedding_size": 16,
    "drop_path_rate": 0.1,
}


def test_a_tiny_vit_trains_one_epoch_through_the_trainer(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    overrides = {
        "model": TIMM_MODEL,
        "data.crop_size": 32,
        "train.epochs": 1,
        "train.warm_epochs": 0,  # the trunk trains too
        "optimizer.lr": 1e-4,
    }
    cfg = load_config(fixture_overrides(data, tmp_path / "run", **overrides))
    results = run(cfg)

    assert results["status"] == "finished" and results["epochs_completed"] == 1
    (record,) = results["history"]
    assert 0.0 <= record["recall_at_1"] <= 1.0 and math.isfinite(record["loss"])
    state = checkpoint.load(Path(results["run_dir"]) / "checkpoints" / "last.pt")
    trunk = state["models"]["trunk"]
    assert "model.cls_token" in trunk and "model.head.weight" not in trunk
    assert set(state["models"]["embedder"]) == {"embedding.weight", "embedding.bias"}

    trunk_steps = state["optimizers"]["trunk_optimizer"]["state"]
    assert trunk_steps and all(int(v["step"]) >= 1 for v in trunk_steps.values())  # it trained
