"""Training hooks of the paper's recipe (Kim et al., CVPR 2020, authors' training code).

- :class:`WarmupFreeze`: the authors' warm-up (``code/train.py``). For the first ``warm_epochs``
  epochs only the embedding layer and the proxies learn: every trunk parameter gets
  ``requires_grad=False`` (the trunk stays in train mode, as in the authors' code, so unfrozen
  BatchNorm statistics still update). From epoch ``warm_epochs + 1`` on every trunk parameter
  trains, the BatchNorm affine parameters frozen at build time (ResNet-50 with ``bn_freeze``)
  included, while frozen BatchNorm layers stay in eval mode. With ``warm_epochs == 0`` nothing is
  frozen or released, so a BN-affine freeze lasts the whole run (the authors skip the block when
  ``warm == 0``).
- :class:`GradValueClipper`: ``clip_grad_value_(params, 10)`` for the model and the proxies, as a
  PML ``gradient_clippers`` entry.
- :class:`LossMeter`: the mean total loss of the epoch, fed by the end-of-iteration hook.

The BN freeze itself is the models package's (``model.bn_freeze``, set from ``train.bn_freeze``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from pml_proxy_anchor.models.batchnorm import is_batchnorm_frozen, set_trainable


class WarmupFreeze:
    """Freeze the trunk during epochs ``1..warm_epochs`` (1-based), then train all of it.

    ``apply(epoch)`` sets the state of that epoch from scratch, so a run resumed at any epoch
    gets the same ``requires_grad`` flags as an uninterrupted one. The optimizers must hold every
    trunk parameter (frozen ones included): ``training.builders.build_optimizers`` passes
    ``module.parameters()``, and optimizers skip parameters whose gradient is None.

    Args:
        trunk: the backbone (the embedder and the loss are never frozen).
        warm_epochs: number of warm-up epochs (>= 0; 0: no warm-up).
    """

    def __init__(self, trunk: nn.Module, warm_epochs: int) -> None:
        if isinstance(warm_epochs, bool) or not isinstance(warm_epochs, int) or warm_epochs < 0:
            raise ValueError(
                "warm_epochs must be a non-negative integer (train.warm_epochs); "
                f"got {warm_epochs!r}"
            )
        self.trunk = trunk
        self.warm_epochs = warm_epochs

    def is_frozen(self, epoch: int) -> bool:
        """Whether the trunk is frozen during ``epoch`` (1-based)."""
        return epoch <= self.warm_epochs

    def apply(self, epoch: int) -> None:
        """Set the trunk's ``requires_grad`` flags for ``epoch`` (call at the start of it)."""
        if self.warm_epochs == 0:
            return  # no warm-up: nothing frozen, nothing released (as in the authors' code)
        if self.is_frozen(epoch):
            set_trainable(self.trunk, False)
        else:
            set_trainable(self.trunk, True, release_frozen_affine=True)

    @contextmanager
    def as_after_warmup(self) -> Iterator[None]:
        """Inside the block, the trunk's ``requires_grad`` flags are those after the warm-up.

        Build ``DistributedDataParallel`` inside it: DDP averages the gradients only of the
        parameters that require a gradient when it is built, and the BatchNorm affine parameters
        frozen at build time train after the warm-up. The flags are restored on exit.
        """
        saved = [(p, p.requires_grad) for p in self.trunk.parameters()]
        flags = [(m, m.frozen_affine) for m in self.trunk.modules() if is_batchnorm_frozen(m)]
        try:
            self.apply(self.warm_epochs + 1)
            yield
        finally:
            for layer, frozen_affine in flags:
                layer.frozen_affine = frozen_affine
            for parameter, requires_grad in saved:
                parameter.requires_grad_(requires_grad)


class GradValueClipper:
    """Clip every gradient element of ``parameters`` to ``[-clip_value, clip_value]``."""

    def __init__(self, parameters: Iterable[nn.Parameter], clip_value: float) -> None:
        self.parameters = list(parameters)
        self.clip_value = float(clip_value)

    def __call__(self) -> None:
        with_grad = [p for p in self.parameters if p.grad is not None]  # none during warm-up
        if with_grad:
            torch.nn.utils.clip_grad_value_(with_grad, self.clip_value)


def gradient_clippers(
    modules: dict[str, nn.Module], clip_value: float | None
) -> dict[str, GradValueClipper]:
    """PML ``gradient_clippers``: ``{"<name>_grad_clipper": clipper}`` for modules with params."""
    if clip_value is None:
        return {}
    return {
        f"{name}_grad_clipper": GradValueClipper(module.parameters(), clip_value)
        for name, module in modules.items()
        if any(True for _ in module.parameters())
    }


class LossMeter:
    """Running mean of the total loss over one epoch."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float) -> None:
        self.total += float(value)
        self.count += 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan


def chain_iteration_hooks(*hooks: Callable[[Any], Any] | None) -> Callable[[Any], None]:
    """One end-of-iteration hook calling each non-None hook in order."""
    active = [hook for hook in hooks if hook is not None]

    def hook(trainer: Any) -> None:
        for each in active:
            each(trainer)

    return hook
