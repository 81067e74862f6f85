"""PML's ``MetricLossOnly`` with the hooks a reproducible paper run needs.

Additions to ``pytorch_metric_learning.trainers.MetricLossOnly``:

- every epoch starts by reseeding all RNGs from ``(seed, epoch)`` and opening a fresh DataLoader
  iterator, so a resumed run replays exactly the batches of an uninterrupted one;
- the warm-up freeze of the trunk (:class:`~pml_proxy_anchor.training.hooks.WarmupFreeze`);
- a NaN guard: embeddings that contain NaN or infinite values (checked right after the forward
  pass, before the loss sees them), a non-finite loss (before the backward pass) or non-finite
  weights at the end of an epoch (before anything is evaluated or saved) stop training with
  :class:`NonFiniteLossError`, naming the epoch, the iteration, the global step, the last good
  checkpoint and the likely cause (``divergence_hint``);
- mixed precision (``precision``, :class:`~.precision.Precision`): the forward pass of trunk and
  embedder under its autocast, the embeddings cast to float32 before the NaN guard, the miner and
  the loss; with fp16 the GradScaler's ``scale(loss).backward()``, ``unscale_`` of every optimizer
  before the gradient clippers, ``step`` and ``update``. The NaN guard checks the unscaled float32
  loss and the embeddings as in fp32: infinite *scaled* gradients are the GradScaler's normal
  business (it skips the step and halves the scale), so they are not a divergence; a loss scale
  that falls below :data:`~.precision.MIN_LOSS_SCALE` (non-finite gradients step after step) is,
  and stops the run like one;
- the speed switches (:mod:`.speed`): input batches in channels-last layout, the trunk's training
  forward pass through ``torch.compile``; DataLoader settings from
  :func:`~pml_proxy_anchor.data.workers.loader_kwargs` (``pin_memory`` on CUDA, batches copied with
  ``non_blocking``);
- several processes (torchrun): ``set_epoch`` of the ``DistributedSampler`` every epoch, the
  forward pass through the DDP-wrapped trunk and embedder (``ddp_models``; the plain modules in
  ``models`` are what the tester, the checkpoints and the hooks see), and a progress bar on rank 0
  only. During the warm-up the frozen trunk runs outside DDP: it has no gradient to average.

Everything else (forward, mining, loss, gradient clippers, optimizers, lr schedulers by epoch,
BatchNorm freeze, logging hooks) is PML's own code; ``train`` is PML's epoch loop verbatim but for
the ``disable`` flag of its progress bar.
"""

from __future__ import annotations

from typing import Any

import torch
import tqdm
from pytorch_metric_learning import trainers
from pytorch_metric_learning.utils import common_functions as c_f
from torch import nn

from pml_proxy_anchor.data.workers import loader_kwargs
from pml_proxy_anchor.distributed.sampler import set_epoch
from pml_proxy_anchor.training.errors import NonFiniteLossError
from pml_proxy_anchor.training.hooks import WarmupFreeze
from pml_proxy_anchor.training.precision import MIN_LOSS_SCALE, Precision
from pml_proxy_anchor.training.seed import seed_epoch, seed_worker
from pml_proxy_anchor.training.speed import CompiledForward, channels_last_batch


class ProxyAnchorTrainer(trainers.MetricLossOnly):
    """``MetricLossOnly`` with per-epoch reseeding, warm-up freeze, a NaN guard, mixed precision
    and the speed switches.

    Args:
        seed: the run's seed; epoch ``e`` reseeds every RNG from ``(seed, e)``.
        warm_epochs: epochs during which the trunk is frozen.
        last_good_checkpoint: called on a NaN loss to name the checkpoint that was kept.
        divergence_hint: the likely cause and the fix, appended to the NaN guard's message.
        ddp_models: ``{"trunk", "embedder"}`` wrapped in ``DistributedDataParallel`` (same
            parameters as ``models``), used for the training forward pass; None: one process.
        seed_rank: mixed into the per-epoch seeds (see :func:`~.seed.seed_epoch`); 0 on every
            rank when a sampler draws its order from the global RNGs.
        progress: show the progress bar (rank 0 only under torchrun).
        precision: autocast, loss scaler and TF32 setting (default: fp32 on ``data_device``).
            The caller applies its :meth:`~.precision.Precision.math_mode` around training.
        channels_last: feed the trunk channels-last batches (the models are made channels-last
            by the caller, :func:`~.speed.use_channels_last`).
        compile_trunk: run the trunk's training forward pass through ``torch.compile``.
        *args, **kwargs: those of ``MetricLossOnly``.
    """

    def __init__(
        self,
        *args: Any,
        seed: int = 0,
        warm_epochs: int = 0,
        last_good_checkpoint: Any = None,
        divergence_hint: str = "",
        ddp_models: dict[str, nn.Module] | None = None,
        seed_rank: int = 0,
        progress: bool = True,
        precision: Precision | None = None,
        channels_last: bool = False,
        compile_trunk: bool = False,
        **kwargs: Any,
    ) -> None:
        self.seed = int(seed)
        self.warm_epochs = int(warm_epochs)
        self.last_good_checkpoint = last_good_checkpoint
        self.divergence_hint = str(divergence_hint)
        self.ddp_models = dict(ddp_models or {})
        self.seed_rank = int(seed_rank)
        self.progress = bool(progress)
        self.started_epoch: int | None = None
        self.channels_last = bool(channels_last)
        self.compile_trunk = bool(compile_trunk)
        self.compiled: dict[int, CompiledForward] = {}  # id(trunk module) -> its compiled forward
        super().__init__(*args, **kwargs)
        self.precision = precision if precision is not None else Precision("fp32", self.data_device)
        self.warmup = WarmupFreeze(self.models["trunk"], self.warm_epochs)

    def initialize_dataloader(self) -> None:
        """PML's train DataLoader plus a worker seed function and :func:`loader_kwargs` for the
        device; the iterator opens per epoch. Workers are not persistent: each epoch's iterator
        starts them again from that epoch's seeds, so a resumed run replays the augmentations."""
        sampler = self.sampler
        batch_sampler = isinstance(sampler, torch.utils.data.BatchSampler)
        self.dataloader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=1 if batch_sampler else int(self.batch_size),
            sampler=None if batch_sampler else sampler,
            batch_sampler=sampler if batch_sampler else None,
            shuffle=sampler is None,
            drop_last=not batch_sampler,
            collate_fn=self.collate_fn,
            worker_init_fn=seed_worker,
            **loader_kwargs(
                int(self.dataloader_num_workers), self.data_device, persistent_workers=False
            ),
        )
        if not self.iterations_per_epoch:
            self.iterations_per_epoch = len(self.dataloader)
        if self.iterations_per_epoch < 1:
            raise ValueError(
                f"the train split has {len(self.dataset)} samples, fewer than one batch of "
                f"{self.batch_size} (batches drop the incomplete last one). Fix: lower "
                "train.batch_size."
            )
        self.dataloader_iter = None

    def train(self, start_epoch: int = 1, num_epochs: int = 1) -> None:
        """PML's ``BaseTrainer.train`` loop, with the progress bar shown only if ``progress``."""
        self.initialize_dataloader()
        for self.epoch in range(start_epoch, num_epochs + 1):
            self.set_to_train()
            c_f.LOGGER.info(f"TRAINING EPOCH {self.epoch}")
            pbar = tqdm.tqdm(range(self.iterations_per_epoch), disable=not self.progress)
            for self.iteration in pbar:
                self.forward_and_backward()
                self.end_of_iteration_hook(self)
                loss = self.losses["total_loss"]
                value = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
                pbar.set_description(f"total_loss={value:.5f}")
                self.step_lr_schedulers(end_of_epoch=False)
            self.step_lr_schedulers(end_of_epoch=True)
            self.zero_losses()
            if self.end_of_epoch_hook(self) is False:
                break

    def begin_epoch(self) -> None:
        """Reseed from ``(seed, epoch)``, ``set_epoch`` the sampler, open the epoch's iterator."""
        self.started_epoch = self.epoch
        seed_epoch(self.seed, self.epoch, self.seed_rank)
        set_epoch(self.sampler, self.epoch)
        self.dataloader_iter = iter(self.dataloader)

    def get_trunk_output(self, data: Any) -> torch.Tensor:
        trunk = self.models["trunk"]
        if "trunk" in self.ddp_models and not self.warmup.is_frozen(self.epoch):
            trunk = self.ddp_models["trunk"]
        if self.compile_trunk:
            if id(trunk) not in self.compiled:
                self.compiled[id(trunk)] = CompiledForward(trunk)
            trunk = self.compiled[id(trunk)]
        if torch.is_tensor(data) and data.device != self.data_device:
            data = data.to(self.data_device, non_blocking=True)  # pinned on CUDA
        data = c_f.to_device(data, device=self.data_device, dtype=self.dtype)
        return trunk(channels_last_batch(data) if self.channels_last else data)

    def get_final_embeddings(self, base_output: torch.Tensor) -> torch.Tensor:
        return self.ddp_models.get("embedder", self.models["embedder"])(base_output)

    def set_to_train(self) -> None:
        if self.started_epoch != self.epoch:  # PML calls this first in every epoch
            self.begin_epoch()
        super().set_to_train()
        self.warmup.apply(self.epoch)

    def compute_embeddings(self, data: Any) -> torch.Tensor:
        """PML's forward pass under the precision's autocast, cast to float32, then the NaN guard
        on its output (before the loss's own checks)."""
        with self.precision.autocast():
            embeddings = super().compute_embeddings(data)
        embeddings = embeddings.float()  # miner and loss in float32 (a no-op in fp32)
        if not bool(torch.isfinite(embeddings.detach()).all()):
            nan = int(torch.isnan(embeddings.detach()).sum())
            inf = int(torch.isinf(embeddings.detach()).sum())
            raise NonFiniteLossError(
                self._non_finite_message(
                    f"the embeddings became non-finite ({nan} NaN and {inf} infinite values of "
                    f"{embeddings.numel()})",
                    in_step=True,
                )
            )
        return embeddings

    def backward(self) -> None:
        loss = self.losses["total_loss"]
        if not bool(torch.isfinite(torch.as_tensor(loss)).all()):
            value = float(torch.as_tensor(loss).detach())
            raise NonFiniteLossError(
                self._non_finite_message(f"the loss became {value}", in_step=True)
            )
        scaler = self.precision.scaler
        if scaler is None:
            super().backward()
        else:
            scaler.scale(loss).backward()

    def steppable_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers PML steps (not in ``freeze_these``) that hold a gradient (during the
        warm-up the trunk's has none; the GradScaler refuses an optimizer without one)."""
        return {
            name: optimizer
            for name, optimizer in self.optimizers.items()
            if c_f.regex_replace("_optimizer$", "", name) not in self.freeze_these
            and any(p.grad is not None for g in optimizer.param_groups for p in g["params"])
        }

    def clip_gradients(self) -> None:
        """PML's gradient clippers, on unscaled gradients (fp16: ``unscale_`` first)."""
        scaler = self.precision.scaler
        if scaler is not None:
            for optimizer in self.steppable_optimizers().values():
                scaler.unscale_(optimizer)
        super().clip_gradients()

    def step_optimizers(self) -> None:
        """PML's optimizer steps; fp16: ``scaler.step`` each (skipped when a gradient is not
        finite) and ``scaler.update``, then the check of the loss scale."""
        scaler = self.precision.scaler
        if scaler is None:
            super().step_optimizers()
            return
        stepped = self.steppable_optimizers()
        for name, optimizer in self.optimizers.items():
            if name in stepped:
                scaler.step(optimizer)
            elif c_f.regex_replace("_optimizer$", "", name) not in self.freeze_these:
                optimizer.step()  # no gradient (the trunk in the warm-up): a no-op, as in fp32
        if stepped:
            scaler.update()
        scale = self.precision.loss_scale_collapsed()
        if scale is not None:
            raise NonFiniteLossError(
                self._non_finite_message(
                    f"the fp16 loss scale fell to {scale:g} (below {MIN_LOSS_SCALE:g}): the "
                    "gradients were non-finite step after step, so every step was skipped "
                    "(float16 overflow; train.precision=bf16 or fp32 avoids it)",
                    in_step=True,
                )
            )

    def check_finite_parameters(self, modules: dict[str, nn.Module]) -> None:
        """Raise :class:`NonFiniteLossError` if a parameter of ``modules`` is NaN or infinite
        (the last optimizer step of the epoch diverged): nothing of it is evaluated or saved."""
        for name, module in modules.items():
            for param_name, parameter in module.named_parameters():
                if not bool(torch.isfinite(parameter.detach()).all()):
                    raise NonFiniteLossError(
                        self._non_finite_message(
                            f"the weights became non-finite ({name}.{param_name}) after the last "
                            "optimizer step",
                            in_step=False,
                        )
                    )

    def _non_finite_message(self, what: str, in_step: bool) -> str:
        step = self.get_global_iteration()
        if in_step:
            where = (
                f"at epoch {self.epoch}, iteration {self.iteration + 1}/"
                f"{self.iterations_per_epoch} (global step {step + 1})"
            )
        else:
            where = f"at the end of epoch {self.epoch} (global step {step + 1})"
        kept = self.last_good_checkpoint() if callable(self.last_good_checkpoint) else None
        checkpoint = (
            f"The last good checkpoint, {kept}, was kept."
            if kept
            else "No checkpoint had been written yet (the failure came in the first epoch)."
        )
        hint = self.divergence_hint or (
            "Fix: lower optimizer.lr or optimizer.proxy_lr_multiplier, keep train.grad_clip set, "
            "check the input data, then start again with --overwrite."
        )
        return f"{what} {where}; training stopped. {checkpoint} {hint}"
