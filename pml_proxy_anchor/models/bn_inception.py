"""BN-Inception (Inception with batch normalisation; Ioffe & Szegedy, ICML 2015).

The backbone of the Proxy-Anchor paper (Kim et al., CVPR 2020), built layer for layer like the
ImageNet port of the ``pretrainedmodels`` package that the paper's code starts from, so that its
weight file ``bn_inception-52deb4733.pth`` loads with ``strict=True``: the same flat module names
(``conv1_7x7_s2``, ``inception_3a_1x1_bn``, ...), convolutions with bias, BatchNorm with eps 1e-5,
pooling with ``ceil_mode=True``, and the same order of branches in every concatenation (a wrong
order would load without complaint and compute garbage).

BatchNorm momentum: all 69 BatchNorm layers take ``momentum=0.9``, as in the authors' code
(``code/net/bn_inception.py``, which keeps the Caffe port's value), not PyTorch's default 0.1. In
PyTorch's convention ``running = (1 - momentum) * running + momentum * batch``, so each training
batch moves the running statistics 90% of the way to its own. This matters only where BatchNorm is
not frozen (SOP and In-Shop, ``train.bn_freeze: false``): the running statistics used at
evaluation are then those of the last batches, as in the authors' runs (docs/paper.md section 2).
The momentum is not part of the state_dict; it applies to checkpoints written before this change
too.

Input: 224x224 **BGR** images in 0..255 minus the mean (104, 117, 128), std 1
(docs/paper.md section 2).
``forward`` returns the last feature map ``(B, 1024, 7, 7)`` (the trunk used for metric learning);
``logits`` applies the 1000-class ImageNet classifier ``last_linear``, which is kept only so that
the file loads strictly and can be removed with :meth:`BNInception.remove_classifier`.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weights import load_state_dict_checked, read_state_dict

BN_MOMENTUM = 0.9  # the authors' value for every BatchNorm layer (see the module docstring)
BN_INCEPTION_FILENAME = "bn_inception-52deb4733.pth"
BN_INCEPTION_URL = f"http://data.lip6.fr/cadene/pretrainedmodels/{BN_INCEPTION_FILENAME}"
HOW_TO_GET_BN_INCEPTION = (
    f"Expected the ImageNet BN-Inception of the `pretrainedmodels` package, {BN_INCEPTION_FILENAME}"
    f" (the file the paper's code uses); download it from {BN_INCEPTION_URL}."
)


class _Block(NamedTuple):
    """Channels of one inception block (``c1x1 is None`` marks a stride-2 reduction block)."""

    name: str
    in_channels: int
    c1x1: int | None
    c3x3_reduce: int
    c3x3: int
    double_reduce: int
    double: int
    pool: str  # "avg" (3x3 s1), "max" (3x3 s1) or "max_s2" (3x3 s2, no projection)
    pool_proj: int | None


_BLOCKS: tuple[_Block, ...] = (
    _Block("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    _Block("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    _Block("3c", 320, None, 128, 160, 64, 96, "max_s2", None),
    _Block("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    _Block("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    _Block("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    _Block("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    _Block("4e", 608, None, 128, 192, 192, 256, "max_s2", None),
    _Block("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    _Block("5b", 1024, 352, 192, 320, 192, 224, "max", 128),
)


class BNInception(nn.Module):
    """BN-Inception with the module names and shapes of the ``pretrainedmodels`` ImageNet port.

    Args:
        num_classes: outputs of the ImageNet classifier ``last_linear`` (1000 for the weight file).

    Attributes:
        out_channels: channels of the feature map returned by ``forward`` (1024).
        input_space, input_range, mean, std: the expected input (BGR, 0..255, mean, std 1).
    """

    out_channels = 1024
    input_space = "BGR"
    input_range = (0, 255)
    mean = (104.0, 117.0, 128.0)
    std = (1.0, 1.0, 1.0)

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_bn("conv1_7x7_s2", 3, 64, kernel=7, stride=2, padding=3)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._conv_bn("conv2_3x3_reduce", 64, 64, kernel=1)
        self._conv_bn("conv2_3x3", 64, 192, kernel=3, padding=1)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for block in _BLOCKS:
            self._inception_block(block)
        self.last_linear: nn.Linear | None = nn.Linear(self.out_channels, num_classes)

    def _conv_bn(
        self, name: str, cin: int, cout: int, *, kernel: int, stride: int = 1, padding: int = 0
    ) -> None:
        self.add_module(name, nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(cout, eps=1e-5, momentum=BN_MOMENTUM))

    def _inception_block(self, b: _Block) -> None:
        prefix = f"inception_{b.name}"
        stride = 2 if b.pool == "max_s2" else 1
        if b.c1x1 is not None:
            self._conv_bn(f"{prefix}_1x1", b.in_channels, b.c1x1, kernel=1)
        self._conv_bn(f"{prefix}_3x3_reduce", b.in_channels, b.c3x3_reduce, kernel=1)
        self._conv_bn(f"{prefix}_3x3", b.c3x3_reduce, b.c3x3, kernel=3, stride=stride, padding=1)
        self._conv_bn(f"{prefix}_double_3x3_reduce", b.in_channels, b.double_reduce, kernel=1)
        self._conv_bn(f"{prefix}_double_3x3_1", b.double_reduce, b.double, kernel=3, padding=1)
        self._conv_bn(
            f"{prefix}_double_3x3_2", b.double, b.double, kernel=3, stride=stride, padding=1
        )
        if b.pool == "avg":
            pool: nn.Module = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True)
        elif b.pool == "max":
            pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        else:
            pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.add_module(f"{prefix}_pool", pool)
        if b.pool_proj is not None:
            self._conv_bn(f"{prefix}_pool_proj", b.in_channels, b.pool_proj, kernel=1)

    def _cbr(self, name: str, x: Tensor) -> Tensor:
        """Convolution, BatchNorm, ReLU of the layer called ``name``."""
        return F.relu(getattr(self, f"{name}_bn")(getattr(self, name)(x)), inplace=True)

    def _block_forward(self, b: _Block, x: Tensor) -> Tensor:
        prefix = f"inception_{b.name}"
        branches = []
        if b.c1x1 is not None:
            branches.append(self._cbr(f"{prefix}_1x1", x))
        branches.append(self._cbr(f"{prefix}_3x3", self._cbr(f"{prefix}_3x3_reduce", x)))
        double = self._cbr(f"{prefix}_double_3x3_reduce", x)
        double = self._cbr(f"{prefix}_double_3x3_1", double)
        branches.append(self._cbr(f"{prefix}_double_3x3_2", double))
        pooled = getattr(self, f"{prefix}_pool")(x)
        if b.pool_proj is not None:
            pooled = self._cbr(f"{prefix}_pool_proj", pooled)
        branches.append(pooled)
        return torch.cat(branches, dim=1)

    def features(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` BGR image minus mean -> feature map ``(B, 1024, H/32, W/32)``."""
        x = self.pool1_3x3_s2(self._cbr("conv1_7x7_s2", x))
        x = self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x))
        x = self.pool2_3x3_s2(x)
        for block in _BLOCKS:
            x = self._block_forward(block, x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """The trunk: the last feature map, ``(B, 1024, 7, 7)`` for a 224x224 input."""
        return self.features(x)

    def logits(self, features: Tensor) -> Tensor:
        """ImageNet class scores from a feature map (global average pool, ``last_linear``)."""
        if self.last_linear is None:
            raise RuntimeError(
                "this BNInception has no ImageNet classifier (remove_classifier() was called); "
                "use forward() for the feature map."
            )
        return self.last_linear(features.mean(dim=(2, 3)))

    def remove_classifier(self) -> None:
        """Drop ``last_linear`` (unused by the trunk) so it is neither trained nor checkpointed."""
        self.last_linear = None


def squeeze_leading_singleton(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The paper's loader fix-up: drop a leading dimension of size 1 (e.g. ``(1, C)`` -> ``(C,)``).

    Zero-dimensional tensors (``num_batches_tracked``) are kept as they are.
    """
    return {
        key: value.squeeze(0) if value.dim() > 0 and value.shape[0] == 1 else value
        for key, value in state_dict.items()
    }


def load_bn_inception_weights(model: BNInception, path: str | os.PathLike[str]) -> BNInception:
    """Load the ImageNet BN-Inception file (``bn_inception-52deb4733.pth``) into ``model``.

    Leading size-1 dimensions are squeezed first, as the paper's code does, then the state_dict
    is loaded with ``strict=True``. Call this before :meth:`BNInception.remove_classifier`.

    Returns:
        ``model``, with the weights loaded.

    Raises:
        WeightsNotFoundError: ``path`` does not exist (the message gives the download URL).
        WeightsFileError: the file is not a readable state_dict.
        WeightsMismatchError: keys or shapes differ from BN-Inception's (both lists are given).
    """
    state_dict = read_state_dict(
        path, architecture="BN-Inception", how_to_get=HOW_TO_GET_BN_INCEPTION
    )
    load_state_dict_checked(
        model,
        squeeze_leading_singleton(state_dict),
        source=os.fspath(path),
        architecture="BN-Inception",
        how_to_get=HOW_TO_GET_BN_INCEPTION,
    )
    return model
