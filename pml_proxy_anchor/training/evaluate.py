"""Evaluate a trained run (or one checkpoint file) on its evaluation splits with Recall@K.

``evaluate(path)`` rebuilds the model from the run's ``config.yaml`` (or the config stored in the
checkpoint), loads the weights of ``checkpoints/best.pt`` (or ``last.pt``), embeds the test split
(or In-Shop's query and gallery) with PML's ``GlobalEmbeddingSpaceTester`` and the Recall@K
calculator (in float32 without autocast, TF32 as the run's ``train.precision`` says: the numbers
the run itself recorded), and for a run directory records the numbers under ``evaluation`` in
``results.json`` / ``results.md`` (beside the paper's) through the run's
:class:`~.record.RunRecord` -- unless a live run holds the directory (its own record would
overwrite them), in which case the numbers are only returned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from pml_proxy_anchor.models import RANDOM_WEIGHTS
from pml_proxy_anchor.training import builders, checkpoint
from pml_proxy_anchor.training.config import load_config
from pml_proxy_anchor.training.device import resolve_device
from pml_proxy_anchor.training.precision import tf32_enabled
from pml_proxy_anchor.training.record import RunRecord
from pml_proxy_anchor.training.run_dir import CONFIG_FILE, RunDirectory

LOGGER = logging.getLogger("pml_proxy_anchor")


def run_config(path: str | Path, state: Mapping[str, Any] | None = None) -> DictConfig:
    """The config of a run directory (``config.yaml``) or of a checkpoint (stored inside)."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent.parent
    if (run_dir / CONFIG_FILE).is_file():
        return load_config(run_dir / CONFIG_FILE)
    if state is not None and state.get("config"):
        return load_config(dict(state["config"]))
    raise FileNotFoundError(
        f"no {CONFIG_FILE} in {run_dir} and no config inside the checkpoint; expected a run "
        "directory written by `pml-proxy-anchor train`."
    )


def load_trained_models(
    path: str | Path, which: str = "best", device: str | torch.device = "cpu"
) -> tuple[DictConfig, dict[str, torch.nn.Module], dict[str, Any]]:
    """``(config, {"trunk", "embedder"} in eval mode, checkpoint state)`` of a run."""
    ckpt_path = checkpoint.find_checkpoint(path, which)
    state = checkpoint.load(ckpt_path)
    cfg = run_config(path if Path(path).is_dir() else ckpt_path, state)
    device = torch.device(device) if not isinstance(device, torch.device) else device
    # The checkpoint holds every weight: build without reading (or requiring) the ImageNet file.
    cfg_no_weights = OmegaConf.merge(cfg, {"model": {"pretrained": RANDOM_WEIGHTS}})
    models = builders.build_models(cfg_no_weights, device)
    checkpoint.load_state_dicts(models, state["models"], "models")
    for model in models.values():
        model.eval()
    state = {**state, "path": str(ckpt_path)}
    return cfg, models, state


def evaluate(
    path: str | Path,
    which: str = "best",
    device: str | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Recall@K of a run's checkpoint; writes ``evaluation`` into the run's results files."""
    cfg = None
    torch_device = resolve_device(device if device is not None else "auto", what="device")
    cfg, models, state = load_trained_models(path, which, torch_device)
    if batch_size is not None:
        cfg = OmegaConf.merge(cfg, {"eval": {"batch_size": int(batch_size)}})
    _, splits = builders.build_datasets(cfg)
    tester = builders.build_tester(cfg, torch_device)
    with tf32_enabled(cfg.train.precision == "tf32"):  # as the run evaluated (training.precision)
        accuracies = tester.test(
            splits.datasets,
            int(state["epoch"]),
            models["trunk"],
            models["embedder"],
            splits.splits_to_eval,
        )
    metrics = builders.split_metrics(accuracies[splits.query_split])
    evaluation = {
        "checkpoint": Path(state["path"]).name,
        "epoch": int(state["epoch"]),
        "metrics": metrics,
    }
    if Path(path).is_dir():
        record_evaluation(Path(path), cfg, evaluation)
    return evaluation


def record_evaluation(run_dir: Path, cfg: DictConfig, evaluation: dict[str, Any]) -> None:
    """Write ``evaluation`` into the run's results files (not while a live run holds them)."""
    if RunDirectory(run_dir).in_use():
        LOGGER.warning(
            "%s is in use by a live run; the evaluation is not recorded in its results.json.",
            run_dir,
        )
        return
    record = RunRecord.read(run_dir, strict=False)
    if record is None:
        record = RunRecord.for_config(cfg, run_dir)
        record.status = "unknown"
        record.recorded_epochs_completed = int(evaluation["epoch"])
    record.evaluation = evaluation
    record.write()
