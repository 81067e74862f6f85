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
    RUN_DIR/plots/curves.png         loss and Recall@K per epoch
    RUN_DIR/plots/retrieval_grid.png queries and nearest neighbours (data sets with raw images)
    RUN_DIR/plots/embedding_projection.png  2-D projection of test embeddings (20 classes)

A finished or unfinished run directory is never overwritten unless ``overwrite=True``;
``resume=True`` continues from ``last.pt`` and replays exactly what an uninterrupted run would
have done (see :mod:`.seed`).

Several processes (``torchrun --nproc_per_node=N -m pml_proxy_anchor train CONFIG``, any number of
nodes) run the same code: every process joins the process group (:func:`start_distributed`,
gloo on CPU, nccl on CUDA) and checks that all resolved the same config; ``train.batch_size`` is
the global batch (``batch_size / N`` per process, from a ``DistributedSampler``); the loss is that
of the global batch (``train.proxies``: replicated or class-sharded proxies) and the trunk and
embedder are in DDP. Rank 0 alone checks and writes the run directory, logs, evaluates (PML's
tester on the whole evaluation split, in one process: the other ranks wait at a barrier) and
writes checkpoints, results and plots. Checkpoints hold the full proxy matrix and optimizer state,
gathered from every rank, so a run resumes on any number of processes; the resume state is read
by rank 0 and broadcast, so only rank 0 needs the run directory.
"""

from __future__ import annotations

import gc
import logging
import pickle
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import tqdm
from omegaconf import DictConfig, OmegaConf
from pytorch_metric_learning.utils import logging_presets
from torch.utils.data import DistributedSampler

from pml_proxy_anchor import distributed
from pml_proxy_anchor.distributed import DistributedContext, RankFailureError
from pml_proxy_anchor.training import builders, checkpoint
from pml_proxy_anchor.training.config import load_config, save_config, to_dict
from pml_proxy_anchor.training.device import resolve_device
from pml_proxy_anchor.training.errors import (
    CheckpointNotFoundError,
    ConfigMismatchError,
    DeviceNotAvailableError,
    NonFiniteLossError,
    RunDirectoryExistsError,
)
from pml_proxy_anchor.training.hooks import LossMeter, chain_iteration_hooks, gradient_clippers
from pml_proxy_anchor.training.report import read_results, recall_keys, write_results
from pml_proxy_anchor.training.seed import rng_state, seed_everything, set_rng_state
from pml_proxy_anchor.training.trainer import ProxyAnchorTrainer

T = TypeVar("T")
LOGGER = logging.getLogger("pml_proxy_anchor")
CONFIG_FILE = "config.yaml"
# Keys that may differ between a run's saved config and the config given with --resume.
RESUMABLE_CHANGES = (
    "run_dir",
    "train.epochs",
    "train.stop_after_epoch",
    "train.num_workers",
    "train.device",
    "train.proxies",  # checkpoints hold the full proxies either way
    "train.dist_timeout_s",
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
    """Train (or continue) the run described by ``cfg``; returns the results (results.json).

    Under torchrun every process calls this (the CLI does); all return rank 0's results.
    """
    if not isinstance(cfg, DictConfig):
        cfg = load_config(cfg)
    ctx, owns_group = start_distributed(cfg)
    training: TrainingRun | None = None
    try:
        run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
        state = on_main(
            ctx, lambda: prepare_run_dir(run_dir, cfg, resume=resume, overwrite=overwrite)
        )
        training = TrainingRun(cfg, run_dir, ctx)
        return training.train(state)
    finally:
        if training is not None:
            training.release_ddp()
        if owns_group:
            gc.collect()  # DDP's reducer must go before its process group
            distributed.cleanup()


def start_distributed(cfg: DictConfig) -> tuple[DistributedContext, bool]:
    """Join torchrun's process group (if any) and check the config is the same on every rank.

    Returns the context and whether this call created the group (then :func:`run` leaves it at
    the end). Without torchrun: a single-process context on ``train.device``.
    """
    device = resolve_device(cfg.train.device)  # a clear error for a device this machine lacks
    already = distributed.is_distributed()
    ctx = distributed.init_distributed(
        device="cuda" if device.type == "cuda" else "cpu",
        timeout_s=float(cfg.train.dist_timeout_s),
    )
    if not ctx.is_distributed:
        return DistributedContext(0, 1, 0, device, None), False
    owns_group = not already
    try:
        if device.type not in ("cpu", "cuda"):
            raise DeviceNotAvailableError(
                f"train.device={cfg.train.device!r}: several processes need CPU (gloo) or CUDA "
                "(nccl) devices. Fix: pass train.device=cpu or cuda, or run one process."
            )
        distributed.check_config_consistency(cfg, ignore=("train.device",))
        distributed.local_batch_size(int(cfg.train.batch_size))  # divisible by the world size
    except BaseException:
        if owns_group:
            distributed.cleanup()
        raise
    return ctx, owns_group


def on_main(ctx: DistributedContext, fn: Callable[[], T]) -> T:
    """``fn()`` run by rank 0 only; its result, or the error it raised, on every rank."""
    if not ctx.is_distributed:
        return fn()
    result, error, shared = None, None, None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as err:  # re-raised on every rank
            error = shared = err
            try:
                pickle.dumps(err)
            except Exception:
                shared = RuntimeError(f"rank 0: {type(err).__name__}: {err}")
    result, shared = distributed.broadcast_object((result, shared))
    if error is not None:
        raise error
    if shared is not None:
        raise shared
    return result


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
    """The state of one run across epochs: history, best epoch, checkpoints, results.

    ``ctx``: this process's place in a torchrun job (default: a single process). Only the main
    process (rank 0) keeps the history and writes anything.
    """

    def __init__(
        self, cfg: DictConfig, run_dir: Path, ctx: DistributedContext | None = None
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx or DistributedContext(0, 1, 0, resolve_device(cfg.train.device), None)
        self.is_main = self.ctx.is_main
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.meter = LossMeter()
        self.stopped_early = False
        self.ddp_models: dict[str, Any] = {}
        self.epoch_lr = float("nan")
        self.epoch_started = time.perf_counter()

    # ------------------------------------------------------------------ building
    def build_components(self) -> None:
        """Device, data, models, loss, miner, sampler, optimizers (nothing written to disk).

        Under torchrun: the loss of the global batch (this rank's proxy shard when sharded, so
        its optimizer holds only the shard), DDP around trunk and embedder (built before any
        warm-up freeze; every rank starts from the same seed, DDP broadcasts rank 0's weights).
        """
        cfg = self.cfg
        self.device = self.ctx.device
        seed_everything(int(cfg.train.seed))
        self.train_set, self.eval = builders.build_datasets(cfg)
        self.models = builders.build_models(cfg, self.device)
        size = builders.embedding_size(self.models["embedder"], cfg)
        loss = builders.build_loss(cfg, self.train_set.num_classes, size, self.device)
        self.loss = builders.distribute_loss(cfg, loss)
        self.miner = builders.build_miner(cfg)
        self.sampler = builders.build_train_sampler(cfg, self.train_set)
        self.batch_size = distributed.local_batch_size(int(cfg.train.batch_size))
        self.optimizers, self.schedulers = builders.build_optimizers(cfg, self.models, self.loss)
        self.ddp_models = builders.wrap_ddp(self.models, self.device)

    def release_ddp(self) -> None:
        """Drop the DDP wrappers (they hold the process group) once training is over."""
        self.ddp_models = {}
        if getattr(self, "trainer", None) is not None:
            self.trainer.ddp_models = {}

    def build_trainer(self) -> None:
        """PML's logging presets and the tester with Recall@K (rank 0), and the trainer."""
        cfg = self.cfg
        miner, sampler = self.miner, self.sampler
        clippers = gradient_clippers({**self.models, "metric_loss": self.loss}, cfg.train.grad_clip)
        self.hooks = self.tester = self.pml_epoch_hook = self.tensorboard = None
        if self.is_main:
            self.build_logging()
        # Random batches (DistributedSampler) let each rank draw its own augmentations; a
        # configured sampler draws its order from the global RNGs, which must agree across ranks.
        seed_rank = self.ctx.rank if isinstance(sampler, DistributedSampler) else 0
        self.trainer = ProxyAnchorTrainer(
            models=self.models,
            optimizers=self.optimizers,
            batch_size=self.batch_size,
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
                self.on_iteration_end, self.hooks.end_of_iteration_hook if self.hooks else None
            ),
            end_of_epoch_hook=self.on_epoch_end,
            seed=int(cfg.train.seed),
            warm_epochs=int(cfg.train.warm_epochs),
            last_good_checkpoint=self.last_good_checkpoint,
            ddp_models=self.ddp_models,
            seed_rank=seed_rank,
            progress=self.is_main,
        )

    def build_logging(self) -> None:
        """Rank 0: record-keeper and TensorBoard under ``logs/``, PML's hooks and the tester."""
        cfg = self.cfg
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

    # ------------------------------------------------------------------ state
    def gather_state(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The loss and optimizer states with the full (C, D) proxies and proxy moments, on rank 0
        (None elsewhere). A collective under torchrun: every rank calls it each epoch."""
        loss_state = distributed.full_loss_state_dict(self.loss)
        optimizer_states = {
            name: distributed.full_optimizer_state_dict(optimizer, self.loss)
            for name, optimizer in self.optimizers.items()
        }
        return loss_state, (optimizer_states if self.is_main else None)

    def model_state(self, epoch: int, loss_state: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "format": checkpoint.FORMAT_VERSION,
            "epoch": epoch,
            "models": checkpoint.state_dicts(self.models),
            "loss_funcs": {"metric_loss": loss_state},
            "config": to_dict(self.cfg),
        }

    def full_state(
        self, epoch: int, loss_state: Mapping[str, Any], optimizer_states: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            **self.model_state(epoch, loss_state),
            "optimizers": dict(optimizer_states),
            "lr_schedulers": checkpoint.state_dicts(self.schedulers),
            "rng": rng_state(),
            "history": self.history,
            "best": self.best,
        }

    def restore(self, state: Mapping[str, Any]) -> int:
        """Load a ``last.pt`` state; returns the next epoch to train.

        The state may come from a run on any number of processes: sharded proxies and their
        optimizer moments take this rank's rows of the full matrices.
        """
        checkpoint.load_state_dicts(self.models, state["models"], "models")
        checkpoint.load_state_dicts({"metric_loss": self.loss}, state["loss_funcs"], "losses")
        checkpoint.load_state_dicts(
            self.optimizers,
            state["optimizers"],
            "optimizers",
            lambda optimizer, saved: distributed.load_full_optimizer_state_dict(
                optimizer, saved, self.loss
            ),
        )
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
        """Gather the state (every rank), evaluate and save (rank 0), agree on going on."""
        loss_state, optimizer_states = self.gather_state()
        keep_going = True
        if self.is_main:
            assert loss_state is not None and optimizer_states is not None
            keep_going = self.evaluate_and_save(trainer, loss_state, optimizer_states)
        if self.ctx.is_distributed:
            distributed.barrier(f"end of epoch {trainer.epoch} (rank 0 evaluates and saves)")
            keep_going = bool(distributed.broadcast_object(keep_going))
        return keep_going

    def evaluate_and_save(
        self,
        trainer: ProxyAnchorTrainer,
        loss_state: Mapping[str, Any],
        optimizer_states: Mapping[str, Any],
    ) -> bool:
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
                {**self.model_state(epoch, loss_state), "metrics": metrics},
                self.checkpoint_dir / checkpoint.BEST,
            )
        checkpoint.save_atomic(
            self.full_state(epoch, loss_state, optimizer_states),
            self.checkpoint_dir / checkpoint.LAST,
        )
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
        """``plots/`` (curves, retrieval grid, embedding projection; :mod:`.artifacts`), recorded
        under ``plots`` in the results files. A plot that fails is skipped with a warning."""
        if not self.history:
            return
        try:
            from pml_proxy_anchor.training.artifacts import write_run_plots

            def embed(dataset: Any) -> tuple[Any, Any]:
                assert self.tester is not None
                return self.tester.get_all_embeddings(
                    dataset,
                    self.models["trunk"],
                    self.models["embedder"],
                    return_as_numpy=True,
                )

            datasets = self.eval.datasets
            query = datasets[self.eval.query_split]
            gallery = datasets[self.eval.splits_to_eval[0][1][0]]
            written = write_run_plots(
                self.run_dir,
                self.history,
                embed if self.tester is not None else None,
                query,
                gallery,
                seed=int(self.cfg.train.seed),
            )
            results = read_results(self.run_dir)
            if results is not None:
                results["plots"] = written
                write_results(self.run_dir, results)
        except Exception as err:  # a plot must never cost a finished run
            LOGGER.warning("could not write the plots: %s: %s", type(err).__name__, err)

    # ------------------------------------------------------------------ the run
    def train(self, resume_state: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Build, restore (when resuming), train to ``train.epochs``, write the results."""
        self.build_components()  # bad data, weights or device fail before the run dir exists
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / CONFIG_FILE)
        self.build_trainer()
        start_epoch = self.restore(resume_state) if resume_state is not None else 1
        epochs = int(self.cfg.train.epochs)
        self.epoch_started = time.perf_counter()
        try:
            if start_epoch <= epochs:
                self.trainer.train(start_epoch=start_epoch, num_epochs=epochs)
        except (NonFiniteLossError, RankFailureError) as err:
            if self.is_main:
                write_results(self.run_dir, self.results("failed", error=str(err)))
            raise
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
        results = None
        if self.is_main:
            results = self.results("stopped" if self.stopped_early else "finished")
            write_results(self.run_dir, results)
            self.write_plots()
        return on_main(self.ctx, lambda: results)
