"""Sweep directories for the report tests, written file by file (no training).

:func:`write_job` writes a run directory as ``pml-proxy-anchor train`` does: the run marker,
``config.yaml`` (a resolved Omniglot config with the given dotted overrides) and
``results.json`` / ``results.md`` through the package's own :class:`RunRecord` writer, with a
constructed history: Recall@1 per epoch as given, Recall@2/4/8 derived from it, fixed seconds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pml_proxy_anchor.training.record import RunRecord
from pml_proxy_anchor.training.run_dir import MARKER
from tests.fixtures.configs import set_dotted

BASE_CONFIG: dict[str, Any] = {
    "run_dir": None,
    "data": {
        "name": "omniglot",
        "root": None,
        "setting": "zero_shot",
        "image_size": 28,
        "augment": True,
        "class_rotations": 4,
    },
    "model": {"backbone": "small_cnn", "embedding_size": 512, "pretrained": None},
    "loss": {"ProxyAnchorLoss": {"margin": 0.1, "alpha": 32}},
    "miner": None,
    "sampler": None,
    "optimizer": {"name": "AdamW", "lr": 0.001, "weight_decay": 0.01},
    "scheduler": {"step": 4, "gamma": 0.5},
    "train": {
        "epochs": 3,
        "batch_size": 128,
        "seed": 1,
        "device": "auto",
        "num_workers": 0,
        "iterations_per_epoch": None,
        "log_freq": 50,
    },
    "eval": {"k_values": [1, 2, 4, 8], "batch_size": 500, "interval": 1},
}
K_VALUES = (1, 2, 4, 8)
SECONDS_PER_EPOCH = 10.0


def recall_at(k: int, r1: float) -> float:
    """The constructed Recall@K of an epoch with Recall@1 ``r1``."""
    return min(1.0, r1 + 0.05 * K_VALUES.index(k))


def make_config(**overrides: Any) -> dict[str, Any]:
    """:data:`BASE_CONFIG` with dotted overrides (``**{"train.seed": 2}``); a value for a whole
    section (``loss={...}``) replaces it."""
    return set_dotted(copy.deepcopy(BASE_CONFIG), overrides)


def make_history(
    r1: Sequence[float | None], seconds: float = SECONDS_PER_EPOCH
) -> list[dict[str, Any]]:
    """One record per epoch; ``None`` is an epoch without evaluation."""
    history, elapsed = [], 0.0
    for epoch, value in enumerate(r1, start=1):
        elapsed += seconds
        entry: dict[str, Any] = {
            "epoch": epoch,
            "loss": 10.0 / epoch,
            "lr": 0.001,
            "seconds": seconds,
            "elapsed_seconds": elapsed,
        }
        if value is not None:
            entry.update({f"recall_at_{k}": recall_at(k, value) for k in K_VALUES})
        history.append(entry)
    return history


def write_job(
    path: Path,
    r1: Sequence[float | None],
    *,
    status: str = "finished",
    error: str | None = None,
    seconds: float = SECONDS_PER_EPOCH,
    **overrides: Any,
) -> Path:
    """A run directory at ``path`` with the config overrides and a history of Recall@1 ``r1``."""
    cfg = make_config(**overrides)
    cfg["run_dir"] = str(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text(json.dumps({"version": 1, "run_id": path.name}))
    (path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    history = make_history(r1, seconds)
    tested = [h for h in history if "recall_at_1" in h]
    best = max(tested, key=lambda h: h["recall_at_1"]) if tested else None
    record = RunRecord(
        run_dir=path,
        dataset=cfg["data"]["name"],
        backbone=cfg["model"]["backbone"],
        epochs=int(cfg["train"]["epochs"]),
        status=status,
        history=history,
        best=(
            {"epoch": best["epoch"], "metrics": {k: v for k, v in best.items() if "recall" in k}}
            if best
            else None
        ),
        error=error,
    )
    record.write()
    return path


def write_sweep_file(sweep: Path, **content: Any) -> None:
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "sweep.json").write_text(json.dumps(content))


def rows_by(summary: Mapping[str, Any], *names: str) -> dict[tuple, dict[str, Any]]:
    """``summary.json`` rows keyed by the values of the named parameters."""
    return {tuple(row["params"][n] for n in names): row for row in summary["rows"]}
