"""Training hooks of the paper's recipe (Kim et al., CVPR 2020, authors' training code).

- :class:`WarmupFreeze`: for the first ``warm_epochs`` epochs only the embedding layer and the
  proxies learn; the trunk's parameters get ``requires_grad=False`` (the trunk stays in train mode,
  as in the authors' code, so unfrozen BatchNorm statistics still update). BatchNorm affine
  parameters frozen by the BN freeze stay frozen.
- :class:`GradValueClipper`: ``clip_grad_value_(params, 10)`` for the model and the proxies, as a
  PML ``gradient_clippers`` entry.

The BN freeze itself is the models package's (``model.bn_freeze``, set from ``train.bn_freeze``).
- :class:`LossMeter`: the mean total loss of the epoch, fed by the end-of-iteration hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


class WarmupFreeze:
    """Freeze the trunk's trainable parameters during epochs ``1..warm_epochs`` (1-based)."""

    def __init__(self, trunk: nn.Module, warm_epochs: int) -> None:
        self.warm_epochs = int(warm_epochs)
        # Only the parameters trainable at the start: a BN-affine freeze stays in force afterwards.
        self.parameters = [p for p in trunk.parameters() if p.requires_grad]

    def is_frozen(self, epoch: int) -> bool:
        return epoch <= self.warm_epochs

    def apply(self, epoch: int) -> None:
        trainable = not self.is_frozen(epoch)
        for parameter in self.parameters:
            parameter.requires_grad_(trainable)


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
