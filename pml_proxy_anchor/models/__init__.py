"""Backbones and the embedding head of the Proxy-Anchor paper (Kim et al., CVPR 2020).

- :class:`BNInception` and :func:`load_bn_inception_weights` - the paper's main backbone, loading
  the ``pretrainedmodels`` ImageNet file ``bn_inception-52deb4733.pth`` strictly.
- :func:`resnet50_trunk` - torchvision's ResNet-50 up to ``layer4``.
- :class:`SmallCNN` - a tiny CPU backbone (tests, Omniglot).
- :class:`TimmTrunk` / :func:`build_timm_trunk` - any timm model as ``model.backbone: timm/<name>``
  (ViT, DINO, ...), weights from a local file (strict) or timm's download.
- :class:`EmbeddingHead` - GAP + GMP summed, Linear (Kaiming fan_out, zero bias), L2 norm.
- :class:`TokenHead` - the ViT papers' head on the CLS token: LayerNorm, Linear, L2 norm.
- :func:`freeze_batchnorm` / :func:`set_trainable` - BN freeze and warm-up.
- :data:`BACKBONES` - the one table of backbones (name -> :class:`Backbone`).
- :func:`build_model` - ``(trunk, embedder)`` from the ``model:`` config section.
"""

from __future__ import annotations

from .batchnorm import freeze_batchnorm, is_batchnorm_frozen, set_trainable, unfreeze_batchnorm
from .bn_inception import BNInception, load_bn_inception_weights
from .build import (
    BACKBONES,
    RANDOM_WEIGHTS,
    Backbone,
    build_model,
    resolve_pretrained,
    timm_backbone,
)
from .errors import (
    ModelConfigError,
    WeightsFileError,
    WeightsMismatchError,
    WeightsNotFoundError,
    WeightsRequiredError,
)
from .head import EmbeddingHead
from .resnet import ResNet50Trunk, resnet50_trunk
from .small_cnn import SmallCNN
from .timm_backbone import TIMM_WEIGHTS, TimmTrunk, build_timm_trunk, load_timm_weights
from .token_head import TokenHead

__all__ = [
    "BACKBONES",
    "RANDOM_WEIGHTS",
    "BNInception",
    "Backbone",
    "EmbeddingHead",
    "ModelConfigError",
    "ResNet50Trunk",
    "SmallCNN",
    "TIMM_WEIGHTS",
    "TimmTrunk",
    "TokenHead",
    "WeightsFileError",
    "WeightsMismatchError",
    "WeightsNotFoundError",
    "WeightsRequiredError",
    "build_model",
    "build_timm_trunk",
    "freeze_batchnorm",
    "is_batchnorm_frozen",
    "load_bn_inception_weights",
    "load_timm_weights",
    "resnet50_trunk",
    "resolve_pretrained",
    "set_trainable",
    "timm_backbone",
    "unfreeze_batchnorm",
]
