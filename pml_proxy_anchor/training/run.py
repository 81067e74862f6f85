"""One training run: the paper's recipe on PML's ``MetricLossOnly``, from a config to a run dir.

``run(cfg)`` claims the run directory (:mod:`.run_dir`: marker, lock, overwrite and resume
rules), builds the pieces once (:func:`build_components`, :mod:`.builders`), wires PML's logging
presets (record-keeper CSV/SQLite + TensorBoard under ``logs/``) and ``HookContainer`` (test after
each epoch with ``GlobalEmbeddingSpaceTester`` + Recall@K, best epoch by ``recall_at_1``), trains
with :class:`~.trainer.ProxyAnchorTrainer`, and writes the run directory::

    RUN_DIR/.pml-proxy-anchor-run.json  the marker: this is a run directory (run id, entries)
    RUN_DIR/config.yaml              the resolved config
    RUN_DIR/checkpoints/last.pt      full state, every epoch (atomic), for --resume
    RUN_DIR/checkpoints/best.pt      model + proxies of the best Recall@1 epoch
    RUN_DIR/logs/csv, logs/tensorboard
    RUN_DIR/results.json, results.md status, final and best Recall@K, per-epoch history
    RUN_DIR/plots/curves.png         loss and Recall@K per epoch
    RUN_DIR/plots/retrieval_grid.png queries and nearest neighbours (data sets with raw images)
    RUN_DIR/plots/embedding_projection.png  2-D projection of test embeddings (20 classes)

A run that finished an epoch is never replaced unless ``overwrite=True``; a folder the tool did
not make is never written into; ``resume=True`` continues the directory it is given from
``last.pt`` and replays exactly what an uninterrupted run would have done (see :mod:`.seed`).

Faults end the run with its state consistent: a loss, embeddings or parameters that become NaN or
infinite stop it naming the epoch and step (:class:`NonFiniteLossError`, the last good checkpoint
kept); a full disk or a folder without write permission stop it naming the file
(:class:`~.record.RunFileWriteError`, no torn file); Ctrl-C raises :class:`RunInterrupted`, whose
message says how to go on. ``results.json`` then says ``failed`` or ``interrupted``, with the
reason. Its one writer is the run's :class:`~.record.RunRecord`.

Several processes (``torchrun --nproc_per_node=N -m pml_proxy_anchor train CONFIG``, any number of
nodes) run the same code: every process joins the process group (:func:`start_distributed`,
gloo on CPU, nccl on CUDA) and checks that all resolved the same config; ``train.batch_size`` is
the global batch (``batch_size / N`` per process, from a ``DistributedSampler``); the loss is that
of the global batch (``train.proxies``: replicated or class-sharded proxies) and the trunk and
embedder are in DDP. Rank 0 alone claims and writes the run directory, logs, evaluates (PML's
tester on the whole evaluation split, in one process: the other ranks wait at a barrier) and
writes checkpoints, results and plots. Checkpoints hold the full proxy matrix and optimizer state,
gathered from every rank, so a run resumes on any number of processes; the resume state is read
by rank 0 and broadcast, so only rank 0 needs the run directory.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import pickle
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
import tqdm
import yaml
from omegaconf import DictConfig, OmegaConf
from pytorch_metric_learning.utils import logging_presets
from torch import nn
from torch.utils.data import DistributedSampler

from pml_proxy_anchor import distributed
from pml_proxy_anchor.distributed import DistributedContext
from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.training import builders, checkpoint
from pml_proxy_anchor.training.config import load_config, to_dict
from pml_proxy_anchor.training.config_schema import with_schema_defaults
from pml_proxy_anchor.training.device import resolve_device
from pml_proxy_anchor.training.errors import (
    ConfigMismatchError,
    ConfigValueError,
    DeviceNotAvailableError,
)
from pml_proxy_anchor.training.hooks import (
    LossMeter,
    WarmupFreeze,
    chain_iteration_hooks,
    gradient_clippers,
)
from pml_proxy_anchor.training.precision import Precision
from pml_proxy_anchor.training.record import RunRecord
from pml_proxy_anchor.training.report import recall_keys
from pml_proxy_anchor.training.run_dir import CONFIG_FILE, RunDirectory
from pml_proxy_anchor.training.seed import rng_state, seed_everything, set_rng_state
from pml_proxy_anchor.training.speed import use_channels_last
from pml_proxy_anchor.training.trainer import ProxyAnchorTrainer

T = TypeVar("T")
LOGGER = logging.getLogger("pml_proxy_anchor")
# Keys that may differ between a run's saved config and the config given with --resume.
RESUMABLE_CHANGES = (
    "run_dir",
    "train.epochs",
    "train.stop_after_epoch",
    "train.num_workers",
    "train.device",
    "train.proxies",  # checkpoints hold the full proxies either way
    "train.dist_timeout_s",
    "train.channels_last",  # speed switches: the same arithmetic, another layout or compiler
    "train.compile",
    "eval.batch_size",
)


class RunInterrupted(UserError, KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); the message says how to go on (resume or start over).

    A ``KeyboardInterrupt``, so code that lets Ctrl-C through still does; the command line prints
    the message and exits with 130.
    """


def default_run_dir(cfg: DictConfig) -> Path:
    """``runs/<data>_<backbone>``; a timm name's ``/`` and ``.`` become ``_`` (one folder:
    ``runs/cub200_timm_vit_small_patch16_224_dino``)."""
    backbone = str(cfg.model.backbone).replace("/", "_").replace(".", "_")
    return Path("runs") / f"{cfg.data.name}_{backbone}"


def run(
    cfg: DictConfig | Mapping[str, Any] | str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train (or continue) the run described by ``cfg`` in ``cfg.run_dir``; returns the results
    (the content of results.json).

    ``resume``: continue the run in ``cfg.run_dir`` (the directory as given: a copied run
    directory continues in the copy). ``overwrite``: replace the run there (only a directory
    made by this tool, and only the files it wrote). Under torchrun every process calls this
    (the CLI does); all return rank 0's results.
    """
    if not isinstance(cfg, DictConfig):
        cfg = load_config(cfg)
    ctx, owns_group = start_distributed(cfg)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    cfg = OmegaConf.merge(cfg, {"run_dir": str(run_dir)})  # the saved config names its directory
    directory = RunDirectory(run_dir) if ctx.is_main else None
    training: TrainingRun | None = None
    try:
        resume_state = on_main(
            ctx, lambda: claim_run_dir(directory, cfg, resume=resume, overwrite=overwrite)
        )
        parts = build_components(cfg, ctx)  # bad data, weights or device: nothing written yet
        config_yaml = yaml.safe_dump(to_dict(cfg), sort_keys=False)
        on_main(ctx, lambda: directory.begin(config_yaml, resume=resume))  # type: ignore[union-attr]
        training = TrainingRun(cfg, run_dir, ctx, parts)
        return training.train(resume_state)
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, RunInterrupted):
            raise
        raise RunInterrupted(interrupted_message(run_dir, cfg, training)) from None
    finally:
        if training is not None:
            training.release_ddp()
        if directory is not None:
            directory.release()
        if owns_group:
            gc.collect()  # DDP's reducer must go before its process group
            distributed.cleanup()


def claim_run_dir(
    directory: RunDirectory | None, cfg: DictConfig, *, resume: bool, overwrite: bool
) -> dict[str, Any] | None:
    """Rank 0: claim (check and lock) the run directory; the ``last.pt`` state to resume from."""
    assert directory is not None
    directory.claim(resume=resume, overwrite=overwrite)
    if not resume:
        return None
    try:
        saved = read_saved_config(directory.config_file)
        if saved is not None:  # a changed config is refused before a large file is read
            check_resume_config(directory.path, cfg, saved)
        state = checkpoint.load(directory.last_checkpoint)
        if saved is None and state.get("config"):  # config.yaml missing or damaged
            check_resume_config(directory.path, cfg, state["config"])
        return state
    except BaseException:
        directory.release()
        raise


def interrupted_message(run_dir: Path, cfg: DictConfig, training: TrainingRun | None) -> str:
    """What Ctrl-C leaves and the command that works next."""
    epoch = training.current_epoch() if training is not None else None
    during = f"during epoch {epoch}" if epoch is not None else "before training started"
    last = run_dir / "checkpoints" / checkpoint.LAST
    config = run_dir / CONFIG_FILE
    if last.is_file():
        done = training.record.epochs_completed if training is not None else None
        kept = f" (end of epoch {done})" if done else ""
        return (
            f"interrupted {during}; the run's state is in {last}{kept}. Continue with "
            f"`pml-proxy-anchor train {config} --resume`."
        )
    if config.is_file():
        return (
            f"interrupted {during}: no epoch had finished, so there is nothing to resume. Start "
            f"again with `pml-proxy-anchor train {config} --overwrite`."
        )
    return f"interrupted {during}: nothing was written. Run the same command again to start."


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


def read_saved_config(path: Path) -> dict[str, Any] | None:
    """The config a run saved (``config.yaml``); None when missing or unreadable (logged)."""
    if not path.is_file():
        return None
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        LOGGER.warning("%s is unreadable (%s); comparing with the checkpoint's config", path, err)
        return None
    return saved if isinstance(saved, dict) else None


def check_resume_config(
    run_dir: Path, cfg: DictConfig, saved: Mapping[str, Any] | None = None
) -> None:
    """Refuse to resume with a config that changes anything but :data:`RESUMABLE_CHANGES`
    (``run_dir`` included: a copied run directory resumes in the copy).

    ``saved``: the run's config (default: read from ``run_dir/config.yaml``, if there).
    """
    saved_path = run_dir / CONFIG_FILE
    if saved is None:
        saved = read_saved_config(saved_path)
        if saved is None:
            return
    saved = _flatten(with_schema_defaults(saved))  # keys added since the run started: defaults
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


@dataclasses.dataclass
class Components:
    """What a run trains and evaluates, built once from the config (:func:`build_components`)."""

    device: torch.device
    train_set: Any
    eval: builders.EvalSplits
    models: dict[str, nn.Module]  # trunk, embedder
    loss: nn.Module  # the loss of the global batch (this rank's proxy shard when sharded)
    miner: Any
    sampler: Any
    batch_size: int  # per process
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    ddp_models: dict[str, nn.Module]  # trunk and embedder in DDP; empty on one process
    precision: Precision  # train.precision on the device: autocast, loss scaler, TF32
    num_workers: int  # train.num_workers, "auto" resolved for the device


def build_components(cfg: DictConfig, ctx: DistributedContext) -> Components:
    """Device, data, models, loss, miner, sampler, optimizers (nothing written to disk).

    Under torchrun: the loss of the global batch (this rank's proxy shard when sharded, so its
    optimizer holds only the shard), DDP around trunk and embedder (built with the trunk's
    ``requires_grad`` flags of after the warm-up, so that the BatchNorm affine parameters that
    train from then on are averaged too; every rank starts from the same seed, DDP broadcasts
    rank 0's weights). ``train.precision`` is checked against the device first (bf16 on a GPU
    without it, fp16 off CUDA); ``train.channels_last`` puts the models in channels-last layout.
    """
    precision = Precision(str(cfg.train.precision), ctx.device)
    if precision.scaler is not None and ctx.is_distributed and cfg.train.proxies == "sharded":
        raise ConfigValueError(
            "train.precision=fp16 with train.proxies=sharded on several processes is not "
            "supported: each process would skip steps and change its loss scale on its own proxy "
            "shard's gradients, and the scales would drift apart. Fix: train.precision=bf16, or "
            "train.proxies=replicated."
        )
    seed_everything(int(cfg.train.seed))
    train_set, evaluation = builders.build_datasets(cfg)
    models = builders.build_models(cfg, ctx.device)
    if bool(cfg.train.channels_last):
        use_channels_last(models)
    size = builders.embedding_size(models["embedder"], cfg)
    loss = builders.build_loss(cfg, train_set.num_classes, size, ctx.device)
    loss = builders.distribute_loss(cfg, loss)
    miner = builders.build_miner(cfg)
    sampler = builders.build_train_sampler(cfg, train_set)
    batch_size = distributed.local_batch_size(int(cfg.train.batch_size))
    optimizers, schedulers = builders.build_optimizers(cfg, models, loss)
    with WarmupFreeze(models["trunk"], int(cfg.train.warm_epochs)).as_after_warmup():
        ddp_models = builders.wrap_ddp(models, ctx.device)
    return Components(
        device=ctx.device,
        train_set=train_set,
        eval=evaluation,
        models=models,
        loss=loss,
        miner=miner,
        sampler=sampler,
        batch_size=batch_size,
        optimizers=optimizers,
        schedulers=schedulers,
        ddp_models=ddp_models,
        precision=precision,
        num_workers=builders.resolve_num_workers(cfg, ctx.device),
    )


@dataclasses.dataclass
class Logging:
    """Rank 0's PML logging: record-keeper and TensorBoard under ``logs/``, the hook container,
    the tester (Recall@K) and PML's end-of-epoch test-and-record hook."""

    hooks: Any
    tester: Any
    epoch_hook: Callable[[Any], Any]
    tensorboard: Any


def build_logging(cfg: DictConfig, run_dir: Path, parts: Components) -> Logging:
    logs = run_dir / "logs"
    record_keeper, _, tensorboard = logging_presets.get_record_keeper(
        str(logs / "csv"), str(logs / "tensorboard")
    )
    hooks = logging_presets.get_hook_container(
        record_keeper,
        primary_metric="recall_at_1",
        validation_split_name=parts.eval.query_split,
        save_models=False,  # checkpoints are ours: atomic, one file with the full state
        log_freq=int(cfg.train.log_freq),
    )
    tester = builders.build_tester(
        cfg, parts.device, hooks.end_of_testing_hook, num_workers=parts.num_workers
    )
    epoch_hook = hooks.end_of_epoch_hook(
        tester,
        parts.eval.datasets,
        str(run_dir / "checkpoints"),
        test_interval=int(cfg.eval.interval),
        patience=None,
        splits_to_eval=parts.eval.splits_to_eval,
    )
    return Logging(hooks=hooks, tester=tester, epoch_hook=epoch_hook, tensorboard=tensorboard)


def divergence_hint(cfg: DictConfig) -> str:
    """The likely cause and fix of a run whose loss or weights became NaN or infinite."""
    clip = cfg.train.grad_clip
    clipping = "no gradient clipping" if clip is None else f"train.grad_clip={clip}"
    clip_fix = "set train.grad_clip (e.g. 10)" if clip is None else "lower train.grad_clip"
    return (
        "Likely cause: the learning rate is too high for this model and data "
        f"(optimizer.lr={cfg.optimizer.lr}, optimizer.proxy_lr_multiplier="
        f"{cfg.optimizer.proxy_lr_multiplier}, {clipping}). Fix: lower optimizer.lr (e.g. 10x) "
        f"or {clip_fix}, and check the input data; then start again with --overwrite (a run "
        "continued with --resume keeps its config)."
    )


class TrainingRun:
    """One run across epochs: its components, trainer, logging and record, built in ``__init__``.

    ``parts``: the built components (default: built here from ``cfg``). ``ctx``: this process's
    place in a torchrun job (default: a single process). Only the main process (rank 0) has the
    logging and tester and writes anything; the run directory must have been claimed and begun
    (:func:`run` does both).
    """

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        ctx: DistributedContext | None = None,
        parts: Components | None = None,
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx or DistributedContext(0, 1, 0, resolve_device(cfg.train.device), None)
        self.is_main = self.ctx.is_main
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.parts = parts if parts is not None else build_components(cfg, self.ctx)
        self.record = RunRecord.for_config(cfg, self.run_dir)
        self.meter = LossMeter()
        self.epoch_lr = float("nan")
        self.epoch_started = time.perf_counter()
        self.stopped_early = False
        self.logging = build_logging(cfg, self.run_dir, self.parts) if self.is_main else None
        self.trainer = self._make_trainer()

    def _make_trainer(self) -> ProxyAnchorTrainer:
        cfg, parts = self.cfg, self.parts
        clippers = gradient_clippers(
            {**parts.models, "metric_loss": parts.loss}, cfg.train.grad_clip
        )
        hooks = self.logging.hooks if self.logging is not None else None
        # Random batches (DistributedSampler) let each rank draw its own augmentations; a
        # configured sampler draws its order from the global RNGs, which must agree across ranks.
        seed_rank = self.ctx.rank if isinstance(parts.sampler, DistributedSampler) else 0
        return ProxyAnchorTrainer(
            models=parts.models,
            optimizers=parts.optimizers,
            batch_size=parts.batch_size,
            loss_funcs={"metric_loss": parts.loss},
            dataset=parts.train_set,
            mining_funcs={"tuple_miner": parts.miner} if parts.miner is not None else {},
            iterations_per_epoch=cfg.train.iterations_per_epoch,
            data_device=parts.device,
            sampler=parts.sampler,
            lr_schedulers=parts.schedulers,
            gradient_clippers=clippers,
            freeze_trunk_batchnorm=bool(cfg.train.bn_freeze),
            dataloader_num_workers=parts.num_workers,
            end_of_iteration_hook=chain_iteration_hooks(
                self.on_iteration_end, hooks.end_of_iteration_hook if hooks else None
            ),
            end_of_epoch_hook=self.on_epoch_end,
            seed=int(cfg.train.seed),
            warm_epochs=int(cfg.train.warm_epochs),
            last_good_checkpoint=self.last_good_checkpoint,
            divergence_hint=divergence_hint(cfg),
            ddp_models=parts.ddp_models,
            seed_rank=seed_rank,
            progress=self.is_main,
            precision=parts.precision,
            channels_last=bool(cfg.train.channels_last),
            compile_trunk=bool(cfg.train.compile),
        )

    def release_ddp(self) -> None:
        """Drop the DDP wrappers (they hold the process group) once training is over."""
        self.parts.ddp_models = {}
        self.trainer.ddp_models = {}

    # ------------------------------------------------------------------ the run
    def train(self, resume_state: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Restore (when resuming), train to ``train.epochs``, write the results.

        Training, evaluation and the plots run under the precision's TF32 setting
        (:meth:`~.precision.Precision.math_mode`, restored afterwards). On any error or Ctrl-C,
        ``results.json`` records ``failed`` (with the reason) or ``interrupted`` before the error
        goes on.
        """
        with self.parts.precision.math_mode():
            return self._train(resume_state)

    def _train(self, resume_state: Mapping[str, Any] | None) -> dict[str, Any]:
        start_epoch = self.restore(resume_state) if resume_state is not None else 1
        epochs = int(self.cfg.train.epochs)
        self.epoch_started = time.perf_counter()
        try:
            if self.is_main:
                self.record.write()  # "running", from the first moment
            if start_epoch <= epochs:
                self.trainer.train(start_epoch=start_epoch, num_epochs=epochs)
        except KeyboardInterrupt:
            self.end("interrupted", f"interrupted during epoch {self.current_epoch()}")
            raise
        except BaseException as err:
            reason = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            self.end("failed", reason)
            raise
        finally:
            if self.logging is not None:
                self.logging.tensorboard.close()
        results = None
        if self.is_main:
            self.record.status = "stopped" if self.stopped_early else "finished"
            self.record.write()
            self.write_plots()
            results = self.record.to_dict()
        return on_main(self.ctx, lambda: results)

    def end(self, status: str, reason: str) -> None:
        if self.is_main:
            self.record.end(status, reason)

    def current_epoch(self) -> int | None:
        """The epoch being trained (None before the first one started)."""
        return getattr(self.trainer, "epoch", None)

    def restore(self, state: Mapping[str, Any]) -> int:
        """Load a ``last.pt`` state; returns the next epoch to train.

        The state may come from a run on any number of processes: sharded proxies and their
        optimizer moments take this rank's rows of the full matrices. The run's record takes the
        history and best epoch of the checkpoint, and the ``evaluation`` of the old results.
        """
        parts = self.parts
        checkpoint.load_state_dicts(parts.models, state["models"], "models")
        checkpoint.load_state_dicts({"metric_loss": parts.loss}, state["loss_funcs"], "losses")
        checkpoint.load_state_dicts(
            parts.optimizers,
            state["optimizers"],
            "optimizers",
            lambda optimizer, saved: distributed.load_full_optimizer_state_dict(
                optimizer, saved, parts.loss
            ),
        )
        checkpoint.load_state_dicts(parts.schedulers, state["lr_schedulers"], "lr schedulers")
        parts.precision.load_state_dict(state.get("scaler"))  # absent in older checkpoints
        set_rng_state(state["rng"])
        self.record.history = [dict(record) for record in state["history"]]
        self.record.best = dict(state["best"]) if state["best"] else None
        previous = RunRecord.read(self.run_dir, strict=False) if self.is_main else None
        if previous is not None:
            self.record.evaluation = previous.evaluation
        return int(state["epoch"]) + 1

    # ------------------------------------------------------------------ hooks
    def on_iteration_end(self, trainer: ProxyAnchorTrainer) -> None:
        if trainer.iteration == 0:
            self.meter.reset()
            self.epoch_lr = next(iter(self.parts.optimizers.values())).param_groups[0]["lr"]
        loss = trainer.losses["total_loss"]
        self.meter.update(float(loss.detach() if hasattr(loss, "detach") else loss))

    def on_epoch_end(self, trainer: ProxyAnchorTrainer) -> bool:
        """Check the weights, gather the state (every rank), evaluate and save (rank 0), agree
        on going on."""
        trainer.check_finite_parameters({**self.parts.models, "metric_loss": self.parts.loss})
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
        """PML's test-and-record hook, then the history, best.pt, last.pt and results files."""
        assert self.logging is not None
        epoch = trainer.epoch
        keep_going = self.logging.epoch_hook(trainer)
        metrics = self.epoch_metrics(epoch)
        now = time.perf_counter()
        seconds, self.epoch_started = now - self.epoch_started, now
        history = self.record.history
        elapsed = (history[-1]["elapsed_seconds"] if history else 0.0) + seconds
        entry = {
            "epoch": epoch,
            "loss": self.meter.mean,
            "lr": self.epoch_lr,
            "seconds": seconds,
            "elapsed_seconds": elapsed,
            **metrics,
        }
        best = self.record.best
        new_best = bool(metrics) and (
            best is None or metrics["recall_at_1"] > best["metrics"]["recall_at_1"]
        )
        if new_best:
            checkpoint.save_atomic(
                {**self.model_state(epoch, loss_state), "metrics": metrics},
                self.checkpoint_dir / checkpoint.BEST,
            )
        # The record changes only once the checkpoints hold the epoch, so results.json and
        # last.pt always agree (a failed save leaves both at the previous epoch).
        next_best = {"epoch": epoch, "metrics": metrics} if new_best else best
        checkpoint.save_atomic(
            self.full_state(epoch, loss_state, optimizer_states, [*history, entry], next_best),
            self.checkpoint_dir / checkpoint.LAST,
        )
        history.append(entry)
        self.record.best = next_best
        self.record.write()
        tqdm.tqdm.write(self.summary_line(entry))
        stop_after = self.cfg.train.stop_after_epoch
        last_epoch = epoch == int(self.cfg.train.epochs)
        if stop_after is not None and epoch >= int(stop_after) and not last_epoch:
            self.stopped_early = True
            return False
        return keep_going is not False

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        """Recall@K of the epoch if it was tested (every ``eval.interval`` epochs and always the
        last one), else ``{}``."""
        assert self.logging is not None
        tester, splits = self.logging.tester, self.parts.eval
        tested = epoch % int(self.cfg.eval.interval) == 0
        if epoch == int(self.cfg.train.epochs) and not tested:
            models = self.parts.models
            tester.test(
                splits.datasets, epoch, models["trunk"], models["embedder"], splits.splits_to_eval
            )
            tested = True
        if not tested:
            return {}
        return builders.split_metrics(tester.all_accuracies[splits.query_split])

    def summary_line(self, entry: Mapping[str, Any]) -> str:
        recalls = "  ".join(f"R@{k.rsplit('_', 1)[1]} {entry[k]:.4f}" for k in recall_keys(entry))
        best = self.record.best
        best_text = (
            f"  (best R@1 {best['metrics']['recall_at_1']:.4f} at epoch {best['epoch']})"
            if best
            else ""
        )
        return (
            f"epoch {entry['epoch']}/{self.cfg.train.epochs}  loss {entry['loss']:.4f}  "
            f"{recalls}{best_text}"
        )

    # ------------------------------------------------------------------ checkpoints
    def gather_state(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The loss and optimizer states with the full (C, D) proxies and proxy moments, on rank 0
        (None elsewhere). A collective under torchrun: every rank calls it each epoch."""
        loss = self.parts.loss
        loss_state = distributed.full_loss_state_dict(loss)
        optimizer_states = {
            name: distributed.full_optimizer_state_dict(optimizer, loss)
            for name, optimizer in self.parts.optimizers.items()
        }
        return loss_state, (optimizer_states if self.is_main else None)

    def model_state(self, epoch: int, loss_state: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "format": checkpoint.FORMAT_VERSION,
            "epoch": epoch,
            "models": checkpoint.state_dicts(self.parts.models),
            "loss_funcs": {"metric_loss": loss_state},
            "config": to_dict(self.cfg),
        }

    def full_state(
        self,
        epoch: int,
        loss_state: Mapping[str, Any],
        optimizer_states: Mapping[str, Any],
        history: list[dict[str, Any]],
        best: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            **self.model_state(epoch, loss_state),
            "optimizers": dict(optimizer_states),
            "lr_schedulers": checkpoint.state_dicts(self.parts.schedulers),
            "scaler": self.parts.precision.state_dict(),  # fp16's loss scale, else {}
            "rng": rng_state(),
            "history": history,
            "best": best,
        }

    def last_good_checkpoint(self) -> str | None:
        last = self.checkpoint_dir / checkpoint.LAST
        if not last.is_file() or not self.record.history:
            return None
        return f"{last} (end of epoch {self.record.history[-1]['epoch']})"

    # ------------------------------------------------------------------ plots
    def write_plots(self) -> None:
        """``plots/`` (curves, retrieval grid, embedding projection; :mod:`.artifacts`), recorded
        under ``plots`` in the results files. A plot that fails is skipped with a warning."""
        if not self.record.history or self.logging is None:
            return
        try:
            from pml_proxy_anchor.training.artifacts import write_run_plots

            tester, models = self.logging.tester, self.parts.models

            def embed(dataset: Any) -> tuple[Any, Any]:
                return tester.get_all_embeddings(
                    dataset, models["trunk"], models["embedder"], return_as_numpy=True
                )

            splits = self.parts.eval
            query = splits.datasets[splits.query_split]
            gallery = splits.datasets[splits.splits_to_eval[0][1][0]]
            self.record.plots = write_run_plots(
                self.run_dir,
                self.record.history,
                embed,
                query,
                gallery,
                seed=int(self.cfg.train.seed),
            )
            self.record.write()
        except Exception as err:  # a plot must never cost a finished run
            LOGGER.warning("could not write the plots: %s: %s", type(err).__name__, err)
