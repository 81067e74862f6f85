"""Backbones and the embedding head of the Proxy-Anchor paper (Kim et al., CVPR 2020).

- :class:`BNInception` and :func:`load_bn_inception_weights` - the paper's main backbone, loading
  the ``pretrainedmodels`` ImageNet file ``bn_inception-52deb4733.pth`` strictly.
- :func:`resnet50_trunk` - torchvision's ResNet-50 up to ``layer4``.
- ``SmallCNN`` - a tiny CPU backbone (tests, Omniglot).
- :class:`EmbeddingHead` - GAP + GMP summed, Linear (Kaiming fan_out, zero bias), L2 norm.
- :func:`freeze_batchnorm` / :func:`set_trainable` - BN freeze and warm-up.
- :func:`build_model` - ``(trunk, embedder)`` from the ``model:`` config section.
"""

from __future__ import annotations

from typing import Any

from .batchnorm import freeze_batchnorm, is_batchnorm_frozen, set_trainable, unfreeze_batchnorm
from .bn_inception import BNInception, load_bn_inception_weights
from .build import BACKBONES, ModelConfigError, build_model
from .errors import WeightsFileError, WeightsMismatchError, WeightsNotFoundError
from .head import EmbeddingHead
from .resnet import ResNet50Trunk, resnet50_trunk

__all__ = [
    "BACKBONES",
    "BNInception",
    "EmbeddingHead",
    "ModelConfigError",
    "ResNet50Trunk",
    "SmallCNN",
    "WeightsFileError",
    "WeightsMismatchError",
    "WeightsNotFoundError",
    "build_model",
    "freeze_batchnorm",
    "is_batchnorm_frozen",
    "load_bn_inception_weights",
    "resnet50_trunk",
    "set_trainable",
    "unfreeze_batchnorm",
]


def __getattr__(name: str) -> Any:
    # SmallCNN lives in small_cnn.py (owned by the Omniglot work); imported on first use.
    if name == "SmallCNN":
        from .small_cnn import SmallCNN

        return SmallCNN
    raise AttributeError(f"module 'pml_proxy_anchor.models' has no attribute {name!r}")
