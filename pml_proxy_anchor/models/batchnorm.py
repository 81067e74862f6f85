"""BatchNorm freeze and warm-up freezing of the Proxy-Anchor recipe (docs/paper.md section 2).

BN freeze keeps the backbone's BatchNorm layers in eval mode during training, so their running
mean/variance stay those of the pretrained weights (small batches of few classes would corrupt
them); for ResNet their affine weight and bias are frozen too when the model is built.

How the eval mode survives ``model.train()``: :func:`freeze_batchnorm` switches each BatchNorm
layer's class to a subclass (:class:`EvalModeBatchNorm2d`, ...) whose ``train(mode)`` always sets
eval mode. ``nn.Module.train`` calls ``train`` on every child, so any ``.train()`` from any caller
(PML's trainers call it every epoch) leaves the layers in eval mode, with no hook and nothing for
the trainer to remember. Parameters, buffers, state_dict names and the parameter objects that an
optimizer holds are unchanged; the frozen model deep-copies and pickles normally.
:func:`unfreeze_batchnorm` undoes it.

Warm-up (train only the embedding layer and the proxies for the first epochs), as in the authors'
``code/train.py``: ``set_trainable(trunk, False)`` for the warm-up epochs, then at its end
``set_trainable(trunk, True, release_frozen_affine=True)``: every trunk parameter trains from
then on, the affine parameters frozen at build time included (the authors set
``requires_grad = True`` on every parameter outside the embedding layer), while the BatchNorm
layers stay in eval mode. The embedder is a separate module, so its parameters are "the
embedding layer". Without a warm-up (0 epochs) nothing is released: the affine freeze then lasts
the whole run, as in the authors' code. ``training.hooks.WarmupFreeze`` applies this per epoch.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _EvalModeBatchNorm:
    """Mixin: ``train(mode)`` keeps the layer in eval mode (uses running statistics)."""

    frozen_affine: bool = False

    def train(self, mode: bool = True) -> nn.Module:
        return super().train(False)  # type: ignore[misc]


class EvalModeBatchNorm1d(_EvalModeBatchNorm, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` that stays in eval mode (see :func:`freeze_batchnorm`)."""


class EvalModeBatchNorm2d(_EvalModeBatchNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that stays in eval mode (see :func:`freeze_batchnorm`)."""


class EvalModeBatchNorm3d(_EvalModeBatchNorm, nn.BatchNorm3d):
    """``nn.BatchNorm3d`` that stays in eval mode (see :func:`freeze_batchnorm`)."""


class EvalModeSyncBatchNorm(_EvalModeBatchNorm, nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` that stays in eval mode (see :func:`freeze_batchnorm`)."""


_FROZEN = {
    nn.BatchNorm1d: EvalModeBatchNorm1d,
    nn.BatchNorm2d: EvalModeBatchNorm2d,
    nn.BatchNorm3d: EvalModeBatchNorm3d,
    nn.SyncBatchNorm: EvalModeSyncBatchNorm,
}
_ORIGINAL = {frozen: original for original, frozen in _FROZEN.items()}


def freeze_batchnorm(module: nn.Module, freeze_affine: bool) -> int:
    """Keep every BatchNorm layer in ``module`` in eval mode, now and after any ``.train()``.

    Args:
        module: the trunk (or any module) whose BatchNorm layers to freeze.
        freeze_affine: also set ``requires_grad=False`` on their weight and bias (ResNet in the
            paper; BN-Inception keeps them trainable).

    Returns:
        The number of BatchNorm layers frozen.

    Raises:
        TypeError: a BatchNorm subclass other than torch's BatchNorm1d/2d/3d/SyncBatchNorm.
    """
    count = 0
    for layer in module.modules():
        if not isinstance(layer, _BatchNorm):
            continue
        if not isinstance(layer, _EvalModeBatchNorm):
            frozen_class = _FROZEN.get(type(layer))
            if frozen_class is None:
                raise TypeError(
                    f"freeze_batchnorm supports torch's BatchNorm1d/2d/3d and SyncBatchNorm, got "
                    f"{type(layer).__name__}. Fix: build the model with those layers, or call "
                    ".eval() on this layer after every .train()."
                )
            layer.__class__ = frozen_class
        layer.frozen_affine = freeze_affine or layer.frozen_affine
        layer.train(False)
        if layer.frozen_affine:
            for param in (layer.weight, layer.bias):
                if param is not None:
                    param.requires_grad_(False)
        count += 1
    return count


def unfreeze_batchnorm(module: nn.Module) -> int:
    """Undo :func:`freeze_batchnorm`: plain BatchNorm classes, affine parameters trainable again.

    Affine parameters frozen by ``freeze_affine=True`` get ``requires_grad=True`` again; the layers
    take ``module``'s current train/eval mode. Returns the number of layers unfrozen.
    """
    count = 0
    for layer in module.modules():
        if isinstance(layer, _EvalModeBatchNorm):
            layer.__class__ = _ORIGINAL[type(layer)]
            if layer.__dict__.pop("frozen_affine", False):
                for param in (layer.weight, layer.bias):
                    if param is not None:
                        param.requires_grad_(True)
            layer.train(module.training)
            count += 1
    return count


def is_batchnorm_frozen(layer: nn.Module) -> bool:
    """Whether ``layer`` is a BatchNorm layer frozen by :func:`freeze_batchnorm`."""
    return isinstance(layer, _EvalModeBatchNorm)


def set_trainable(
    module: nn.Module, trainable: bool, *, release_frozen_affine: bool = False
) -> None:
    """Set ``requires_grad`` of all parameters of ``module`` (warm-up freezes the trunk).

    Affine parameters of BatchNorm layers frozen with ``freeze_affine=True`` stay frozen, unless
    ``trainable`` and ``release_frozen_affine`` are both true: then they become trainable and the
    layers keep only their eval mode (as after ``freeze_batchnorm(..., freeze_affine=False)``).
    This is the end of the authors' warm-up.
    """
    for layer in module.modules():
        frozen_affine = isinstance(layer, _EvalModeBatchNorm) and layer.frozen_affine
        if frozen_affine and trainable and release_frozen_affine:
            layer.frozen_affine = False
            frozen_affine = False
        for param in layer.parameters(recurse=False):
            param.requires_grad_(trainable and not frozen_affine)
