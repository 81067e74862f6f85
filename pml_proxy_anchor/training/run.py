"""One training run: the paper's recipe on PML's ``MetricLossOnly``, from a config to a run dir.

``run(cfg)`` builds the pieces (:mod:`.builders`), wires PML's logging presets (record-keeper
CSV/SQLite + TensorBoard under ``logs/``) and ``HookContainer`` (test after each epoch with
``GlobalEmbeddingSpaceTester`` + Recall@K, best epoch by ``recall_at_1``), trains with
:class:`~.trainer.ProxyAnchorTrainer`, and writes the run directory::

    RUN_DIR/config.yaml              the resolved config
    RUN_DIR/checkpoints/last.pt      full state, every epoch (atomic), for --resume
    RUN_DIR/checkpoints/best.pt      model + proxies of the best Recall@1 epoch
    RUN_DIR/logs/csv, logs/tensorboard
    RUN_DIR/results.json, results.md final and best Recall@K, per-epoch history
    RUN_DIR/plots/curves.png         loss and Recall@K per epoch (when plots are available)

A finished or unfinished run directory is never overwritten unless ``overwrite=True``;
``resume=True`` continues from ``last.pt`` and replays exactly what an uninterrupted run would
have done (see :mod:`.seed`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tqdm
from omegaconf import DictConfig, OmegaConf
from pytorch_metric_learning.utils import logging_presets

from pml_proxy_anchor.training import builders, checkpoint
from pml_proxy_anchor.training.config import load_config, save_config, to_dict
from pml_proxy_anchor.training.device import resolve_device
from pml_proxy_anchor.training.errors import (
    CheckpointNotFoundError,
    ConfigMismatchError,
    NonFiniteLossError,
    RunDirectoryExistsError,
)
from pml_proxy_anchor.training.hooks import LossMeter, chain_iteration_hooks, gradient_clippers
from pml_proxy_anchor.training.report import read_results, recall_keys, write_results
from pml_proxy_anchor.training.seed import rng_state, seed_everything, set_rng_state
from pml_proxy_anchor.training.trainer import ProxyAnchorTrainer

LOGGER = logging.getLogger("pml_proxy_anchor")
CONFIG_FILE = "config.yaml"
# Keys that may differ between a run's saved config and the config given with --resume.
RESUMABLE_CHANGES = (
    "run_dir",
    "train.epochs",
    "train.stop_after_epoch",
    "train.num_workers",
    "train.device",
    "eval.batch_size",
)
RUN_MARKERS = (CONFIG_FILE, "checkpoints", "results.json", "logs")
BOOKKEEPING = ("epoch", "loss", "lr", "seconds", "elapsed_seconds")


def default_run_dir(cfg: DictConfig) -> Path:
    return Path("runs") / f"{cfg.data.name}_{cfg.model.backbone}"


def run(
    cfg: DictConfig | Mapping[str, Any] | str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train (or continue) the run described by ``cfg``; returns the results (results.json)."""
    if not isinstance(cfg, DictConfig):
        cfg = load_config(cfg)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    state = prepare_run_dir(run_dir, cfg, resume=resume, overwrite=overwrite)
    return TrainingRun(cfg, run_dir).train(state)


def prepare_run_dir(
    run_dir: Path, cfg: DictConfig, *, resume: bool, overwrite: bool
) -> dict[str, Any] | None:
    """Check the run directory; returns the checkpoint to resume from (or None).

    A directory holding a run that finished at least one epoch (``checkpoints/last.pt``) is
    only replaced with ``overwrite``; one whose run never finished an epoch is replaced.
    """
    holds_run = run_dir.is_dir() and any((run_dir / m).exists() for m in RUN_MARKERS)
    if resume:
        last = run_dir / "checkpoints" / checkpoint.LAST
        if not last.is_file():
            raise CheckpointNotFoundError(
                f"--resume: no checkpoint at {last}; the run in {run_dir} has not finished an "
                "epoch yet (or the directory is wrong). Fix: drop --resume to start the run, "
                "or pass the run's --run-dir."
            )
        check_resume_config(run_dir, cfg)
        return checkpoint.load(last)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryExistsError(f"run directory {run_dir} exists and is not a directory.")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not holds_run:
            raise RunDirectoryExistsError(
                f"run directory {run_dir} is not empty and does not look like a run "
                f"directory (none of {', '.join(RUN_MARKERS)}); refusing to write into it. "
                "Fix: choose another --run-dir."
            )
        started = (run_dir / "checkpoints" / checkpoint.LAST).is_file()
        if started and not overwrite:
            results = read_results(run_dir) or {}
            raise RunDirectoryExistsError(
                f"run directory {run_dir} already holds a {results.get('status', 'unfinished')} "
                f"run ({results.get('epochs_completed', '?')} of {results.get('epochs', '?')} "
                "epochs). Fix: pass --resume to continue it, --overwrite to replace it, or "
                "--run-dir to write elsewhere."
            )
        shutil.rmtree(run_dir)
    return None


def check_resume_config(run_dir: Path, cfg: DictConfig) -> None:
    """Refuse to resume with a config that changes anything but :data:`RESUMABLE_CHANGES`."""
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        return
    saved = _flatten(to_dict(OmegaConf.load(saved_path)))
    current = _flatten(to_dict(cfg))
    changed = sorted(
        key
        for key in set(saved) | set(current)
        if saved.get(key) != current.get(key) and not key.startswith(RESUMABLE_CHANGES)
    )
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:5])
        raise ConfigMismatchError(
            f"--resume: the config differs from the one the run in {run_dir} started with "
            f"({detail}). Only {', '.join(RESUMABLE_CHANGES)} may change on resume. Fix: resume "
            f"with {saved_path} (`pml-proxy-anchor train {saved_path} --resume`), or start a "
            "new run with --run-dir."
        )


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def _metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The evaluation metrics of a history record (everything but the bookkeeping)."""
    return {k: v for k, v in record.items() if k not in BOOKKEEPING}


class TrainingRun:
    """The state of one run across epochs: history, best epoch, checkpoints, results."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.meter = LossMeter()
        self.stopped_early = False
        self.epoch_lr = float("nan")
        self.epoch_started = time.perf_counter()

    # ------------------------------------------------------------------ building
    def build_components(self) -> None:
        """Device, data, models, loss, miner, sampler, optimizers (nothing written to disk)."""
        cfg = self.cfg
        self.device = resolve_device(cfg.train.device)
        seed_everything(int(cfg.train.seed))
        self.train_set, self.eval = builders.build_datasets(cfg)
        self.models = builders.build_models(cfg, self.device)
        size = builders.embedding_size(self.models["embedder"], cfg)
        self.loss = builders.build_loss(cfg, self.train_set.num_classes, size, self.device)
        self.miner = builders.build_miner(cfg)
        self.sampler = builders.build_sampler(cfg, self.train_set.labels)
        self.optimizers, self.schedulers = builders.build_optimizers(cfg, self.models, self.loss)

    def build_trainer(self) -> None:
        """PML's logging presets, the tester with Recall@K, and the trainer."""
        cfg = self.cfg
        miner, sampler = self.miner, self.sampler
        clippers = gradient_clippers({**self.models, "metric_loss": self.loss}, cfg.train.grad_clip)
        logs = self.run_dir / "logs"
        record_keeper, _, self.tensorboard = logging_presets.get_record_keeper(
            str(logs / "csv"), str(logs / "tensorboard")
        )
        self.hooks = logging_presets.get_hook_container(
            record_keeper,
            primary_metric="recall_at_1",
            validation_split_name=self.eval.query_split,
            save_models=False,  # checkpoints are ours: atomic, one file with the full state
            log_freq=int(cfg.train.log_freq),
        )
        self.tester = builders.build_tester(cfg, self.device, self.hooks.end_of_testing_hook)
        self.pml_epoch_hook = self.hooks.end_of_epoch_hook(
            self.tester,
            self.eval.datasets,
            str(self.checkpoint_dir),
            test_interval=int(cfg.eval.interval),
            patience=None,
            splits_to_eval=self.eval.splits_to_eval,
        )
        self.trainer = ProxyAnchorTrainer(
            models=self.models,
            optimizers=self.optimizers,
            batch_size=int(cfg.train.batch_size),
            loss_funcs={"metric_loss": self.loss},
            dataset=self.train_set,
            mining_funcs={"tuple_miner": miner} if miner is not None else {},
            iterations_per_epoch=cfg.train.iterations_per_epoch,
            data_device=self.device,
            sampler=sampler,
            lr_schedulers=self.schedulers,
            gradient_clippers=clippers,
            freeze_trunk_batchnorm=bool(cfg.train.bn_freeze),
            dataloader_num_workers=int(cfg.train.num_workers),
            end_of_iteration_hook=chain_iteration_hooks(
                self.on_iteration_end, self.hooks.end_of_iteration_hook
            ),
            end_of_epoch_hook=self.on_epoch_end,
            seed=int(cfg.train.seed),
            warm_epochs=int(cfg.train.warm_epochs),
            last_good_checkpoint=self.last_good_checkpoint,
        )

    # ------------------------------------------------------------------ state
    def model_state(self, epoch: int) -> dict[str, Any]:
        return {
            "format": checkpoint.FORMAT_VERSION,
            "epoch": epoch,
            "models": checkpoint.state_dicts(self.models),
            "loss_funcs": checkpoint.state_dicts({"metric_loss": self.loss}),
            "config": to_dict(self.cfg),
        }

    def full_state(self, epoch: int) -> dict[str, Any]:
        return {
            **self.model_state(epoch),
            "optimizers": checkpoint.state_dicts(self.optimizers),
            "lr_schedulers": checkpoint.state_dicts(self.schedulers),
            "rng": rng_state(),
            "history": self.history,
            "best": self.best,
        }

    def restore(self, state: Mapping[str, Any]) -> int:
        """Load a ``last.pt`` state; returns the next epoch to train."""
        checkpoint.load_state_dicts(self.models, state["models"], "models")
        checkpoint.load_state_dicts({"metric_loss": self.loss}, state["loss_funcs"], "losses")
        checkpoint.load_state_dicts(self.optimizers, state["optimizers"], "optimizers")
        checkpoint.load_state_dicts(self.schedulers, state["lr_schedulers"], "lr schedulers")
        set_rng_state(state["rng"])
        self.history = [dict(record) for record in state["history"]]
        self.best = dict(state["best"]) if state["best"] else None
        return int(state["epoch"]) + 1

    def last_good_checkpoint(self) -> str | None:
        last = self.checkpoint_dir / checkpoint.LAST
        if not last.is_file() or not self.history:
            return None
        return f"{last} (end of epoch {self.history[-1]['epoch']})"

    # ------------------------------------------------------------------ hooks
    def on_iteration_end(self, trainer: ProxyAnchorTrainer) -> None:
        if trainer.iteration == 0:
            self.meter.reset()
            self.epoch_lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
        loss = trainer.losses["total_loss"]
        self.meter.update(float(loss.detach() if hasattr(loss, "detach") else loss))

    def on_epoch_end(self, trainer: ProxyAnchorTrainer) -> bool:
        """PML's test-and-record hook, then history, best.pt, last.pt and results files."""
        epoch = trainer.epoch
        keep_going = self.pml_epoch_hook(trainer)
        last_epoch = epoch == int(self.cfg.train.epochs)
        tested = epoch % int(self.cfg.eval.interval) == 0
        if last_epoch and not tested:
            self.tester.test(
                self.eval.datasets,
                epoch,
                self.models["trunk"],
                self.models["embedder"],
                self.eval.splits_to_eval,
            )
            tested = True
        metrics = (
            builders.split_metrics(self.tester.all_accuracies[self.eval.query_split])
            if tested
            else {}
        )
        now = time.perf_counter()
        seconds, self.epoch_started = now - self.epoch_started, now
        elapsed = (self.history[-1]["elapsed_seconds"] if self.history else 0.0) + seconds
        record = {
            "epoch": epoch,
            "loss": self.meter.mean,
            "lr": self.epoch_lr,
            "seconds": seconds,
            "elapsed_seconds": elapsed,
            **metrics,
        }
        self.history.append(record)
        best_r1 = self.best["metrics"]["recall_at_1"] if self.best else None
        if metrics and (best_r1 is None or metrics["recall_at_1"] > best_r1):
            self.best = {"epoch": epoch, "metrics": metrics}
            checkpoint.save_atomic(
                {**self.model_state(epoch), "metrics": metrics},
                self.checkpoint_dir / checkpoint.BEST,
            )
        checkpoint.save_atomic(self.full_state(epoch), self.checkpoint_dir / checkpoint.LAST)
        write_results(self.run_dir, self.results("running"))
        tqdm.tqdm.write(self.summary_line(record))
        stop_after = self.cfg.train.stop_after_epoch
        if stop_after is not None and epoch >= int(stop_after) and not last_epoch:
            self.stopped_early = True
            return False
        return keep_going is not False

    def summary_line(self, record: Mapping[str, Any]) -> str:
        recalls = "  ".join(f"R@{k.rsplit('_', 1)[1]} {record[k]:.4f}" for k in recall_keys(record))
        best = (
            f"  (best R@1 {self.best['metrics']['recall_at_1']:.4f} at epoch {self.best['epoch']})"
            if self.best
            else ""
        )
        return (
            f"epoch {record['epoch']}/{self.cfg.train.epochs}  loss {record['loss']:.4f}  "
            f"{recalls}{best}"
        )

    # ------------------------------------------------------------------ results
    def results(self, status: str, error: str | None = None) -> dict[str, Any]:
        tested = [r for r in self.history if "recall_at_1" in r]
        final = tested[-1] if tested else None
        out: dict[str, Any] = {
            "status": status,
            "run_dir": str(self.run_dir),
            "dataset": str(self.cfg.data.name),
            "backbone": str(self.cfg.model.backbone),
            "epochs": int(self.cfg.train.epochs),
            "epochs_completed": self.history[-1]["epoch"] if self.history else 0,
            "final": None
            if final is None
            else {"epoch": final["epoch"], "metrics": _metrics(final)},
            "best": self.best,
            "history": self.history,
        }
        previous = read_results(self.run_dir) or {}
        if previous.get("evaluation"):
            out["evaluation"] = previous["evaluation"]
        if error:
            out["error"] = error
        return out

    def write_plots(self) -> None:
        """``plots/curves.png`` (loss and Recall@K per epoch) with the package's plots module."""
        try:
            from pml_proxy_anchor.plots import plot_training_curves
        except ImportError:
            return
        if not self.history:
            return
        keys = sorted({key for record in self.history for key in record})
        columns = {key: [record.get(key) for record in self.history] for key in keys}
        try:
            plot_training_curves(columns, self.run_dir / "plots" / "curves.png")
        except Exception as err:  # a plot must never cost a finished run
            LOGGER.warning("could not write the training curves: %s", err)

    # ------------------------------------------------------------------ the run
    def train(self, resume_state: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Build, restore (when resuming), train to ``train.epochs``, write the results."""
        self.build_components()  # bad data, weights or device fail before the run dir exists
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.run_dir / CONFIG_FILE)
        self.build_trainer()
        start_epoch = self.restore(resume_state) if resume_state is not None else 1
        epochs = int(self.cfg.train.epochs)
        self.epoch_started = time.perf_counter()
        try:
            if start_epoch <= epochs:
                self.trainer.train(start_epoch=start_epoch, num_epochs=epochs)
        except NonFiniteLossError as err:
            write_results(self.run_dir, self.results("failed", error=str(err)))
            raise
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
        results = self.results("stopped" if self.stopped_early else "finished")
        write_results(self.run_dir, results)
        self.write_plots()
        return results
