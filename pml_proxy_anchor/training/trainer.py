"""PML's ``MetricLossOnly`` with the hooks a reproducible paper run needs.

Additions to ``pytorch_metric_learning.trainers.MetricLossOnly``:

- every epoch starts by reseeding all RNGs from ``(seed, epoch)`` and opening a fresh DataLoader
  iterator, so a resumed run replays exactly the batches of an uninterrupted one;
- the warm-up freeze of the trunk (:class:`~pml_proxy_anchor.training.hooks.WarmupFreeze`);
- a NaN guard: a non-finite loss stops training with :class:`NonFiniteLossError` before the
  backward pass, naming the epoch, the iteration and the global step.

Everything else (forward, mining, loss, gradient clippers, optimizers, lr schedulers by epoch,
BatchNorm freeze, logging hooks) is PML's own code.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_metric_learning import trainers

from pml_proxy_anchor.training.errors import NonFiniteLossError
from pml_proxy_anchor.training.hooks import WarmupFreeze
from pml_proxy_anchor.training.seed import seed_epoch, seed_worker


class ProxyAnchorTrainer(trainers.MetricLossOnly):
    """``MetricLossOnly`` with per-epoch reseeding, warm-up freeze and a NaN guard.

    Args:
        seed: the run's seed; epoch ``e`` reseeds every RNG from ``(seed, e)``.
        warm_epochs: epochs during which the trunk is frozen.
        last_good_checkpoint: called on a NaN loss to name the checkpoint that was kept.
        *args, **kwargs: those of ``MetricLossOnly``.
    """

    def __init__(
        self,
        *args: Any,
        seed: int = 0,
        warm_epochs: int = 0,
        last_good_checkpoint: Any = None,
        **kwargs: Any,
    ) -> None:
        self.seed = int(seed)
        self.warm_epochs = int(warm_epochs)
        self.last_good_checkpoint = last_good_checkpoint
        self.started_epoch: int | None = None
        super().__init__(*args, **kwargs)
        self.warmup = WarmupFreeze(self.models["trunk"], self.warm_epochs)

    def initialize_dataloader(self) -> None:
        """PML's train DataLoader plus a worker seed function; the iterator opens per epoch."""
        sampler = self.sampler
        batch_sampler = isinstance(sampler, torch.utils.data.BatchSampler)
        self.dataloader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=1 if batch_sampler else int(self.batch_size),
            sampler=None if batch_sampler else sampler,
            batch_sampler=sampler if batch_sampler else None,
            shuffle=sampler is None,
            drop_last=not batch_sampler,
            num_workers=self.dataloader_num_workers,
            collate_fn=self.collate_fn,
            worker_init_fn=seed_worker,
            pin_memory=False,
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

    def begin_epoch(self) -> None:
        """Reseed from ``(seed, epoch)`` and open the epoch's DataLoader iterator."""
        self.started_epoch = self.epoch
        seed_epoch(self.seed, self.epoch)
        self.dataloader_iter = iter(self.dataloader)

    def set_to_train(self) -> None:
        if self.started_epoch != self.epoch:  # PML calls this first in every epoch
            self.begin_epoch()
        super().set_to_train()
        self.warmup.apply(self.epoch)

    def backward(self) -> None:
        loss = self.losses["total_loss"]
        if not bool(torch.isfinite(torch.as_tensor(loss)).all()):
            raise NonFiniteLossError(self._non_finite_message(loss))
        super().backward()

    def _non_finite_message(self, loss: Any) -> str:
        step = self.get_global_iteration()
        kept = self.last_good_checkpoint() if callable(self.last_good_checkpoint) else None
        where = (
            f"The last good checkpoint, {kept}, was kept."
            if kept
            else "No checkpoint had been written yet (the failure came in the first epoch)."
        )
        return (
            f"the loss became {float(loss)} at epoch {self.epoch}, iteration "
            f"{self.iteration + 1}/{self.iterations_per_epoch} (global step {step + 1}); "
            f"training stopped. {where} Fix: lower optimizer.lr or "
            "optimizer.proxy_lr_multiplier, keep train.grad_clip set, check the input data, "
            "then start again or continue with --resume."
        )
