"""A checkpoint of a paper backbone is evaluated without its ImageNet weight file.

The paper backbones refuse to build without ``model.pretrained``; a checkpoint holds every
weight, so ``eval`` / ``embed`` must build the model without reading (or requiring) the file the
run started from, even when that file has moved since.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pml_proxy_anchor.training import builders, checkpoint
from pml_proxy_anchor.training.config import load_config, to_dict
from pml_proxy_anchor.training.evaluate import load_trained_models


def test_a_bn_inception_checkpoint_loads_after_its_weight_file_moved(tmp_path: Path) -> None:
    cfg = load_config("cub200_bninception", ["model.pretrained=none", "model.embedding_size=8"])
    torch.manual_seed(0)
    models = builders.build_models(cfg, torch.device("cpu"))
    saved_cfg = to_dict(cfg)
    saved_cfg["model"]["pretrained"] = str(tmp_path / "moved" / "bn_inception-52deb4733.pth")
    state = {
        "format": checkpoint.FORMAT_VERSION,
        "epoch": 3,
        "models": checkpoint.state_dicts(models),
        "loss_funcs": {},
        "config": saved_cfg,
    }
    path = checkpoint.save_atomic(state, tmp_path / "best.pt")

    loaded_cfg, loaded, loaded_state = load_trained_models(path)

    assert loaded_cfg.model.pretrained == saved_cfg["model"]["pretrained"]  # reported as saved
    assert loaded_state["epoch"] == 3
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 255
    for model in models.values():
        model.eval()
    with torch.no_grad():
        expected = models["embedder"](models["trunk"](images))
        got = loaded["embedder"](loaded["trunk"](images))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
