"""A tiny but real training setup for the training, CLI and inference tests.

CUB-200-2011 in its published layout (tests/fixtures/datasets.py) with 4 train and 4 test classes
of 32x32 solid-colour images, the ``small_cnn`` backbone with 8 channels, and the real loss,
trainer, tester and logging. A run of 2 epochs takes a few seconds on one CPU core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fixtures.configs import set_dotted
from tests.fixtures.datasets import make_cub_tree

TRAIN_CLASSES = (1, 2, 3, 4)
TEST_CLASSES = (101, 102, 103, 104)
IMAGES_PER_CLASS = 6


def make_data(root: Path) -> Path:
    """The CUB fixture tree under ``root``; returns the data root for ``data.root``."""
    make_cub_tree(
        root,
        class_ids=TRAIN_CLASSES + TEST_CLASSES,
        images_per_class=IMAGES_PER_CLASS,
        image_size=32,
    )
    return root


def fixture_overrides(data_root: Path, run_dir: Path, **extra: Any) -> dict[str, Any]:
    """A config mapping for :func:`pml_proxy_anchor.training.load_config`."""
    cfg: dict[str, Any] = {
        "run_dir": str(run_dir),
        "data": {"name": "cub200", "root": str(data_root), "image_size": 32},
        "model": {"backbone": "small_cnn", "embedding_size": 16, "channels": 8, "blocks": 2},
        "optimizer": {"lr": 1e-3},
        "scheduler": {"step": 1, "gamma": 0.5},
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "warm_epochs": 1,
            "num_workers": 0,
            "device": "cpu",
            "seed": 3,
            "log_freq": 1,
        },
        "eval": {"batch_size": 16},
    }
    return set_dotted(cfg, extra)
