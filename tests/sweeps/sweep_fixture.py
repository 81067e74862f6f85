"""A tiny sweep experiment on the CUB fixture tree (tests/training/fixture_run.py) for real
multiruns: 8 classes of 32x32 images, an 8-channel ``small_cnn``, 1 epoch (about a second a job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.training.fixture_run import fixture_overrides, make_data


def make_experiment(
    tmp_path: Path, params: dict[str, str], budget: dict[str, Any] | None = None, **extra: Any
) -> Path:
    """Write the fixture data, a training config and an experiment sweeping ``params``;
    returns the experiment file. ``extra``: more top-level keys of the experiment."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = make_data(tmp_path / "data")
    base = fixture_overrides(data, tmp_path / "unused", **{"train.epochs": 1})
    base.pop("run_dir")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"defaults": ["base"], **base}))
    experiment = {
        "base_config": "tiny.yaml",
        "budget": budget or {},
        **extra,
        "hydra": {"sweeper": {"params": params}},
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path
