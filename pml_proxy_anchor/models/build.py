"""Build the (trunk, embedder) pair of the Proxy-Anchor paper from the ``model:`` config section.

PML's trainers take the two as ``models={"trunk": trunk, "embedder": embedder}``: the trunk maps
images to a feature map ``(B, C, H, W)``, the embedder (:class:`~.head.EmbeddingHead`) maps it to
L2-normalised embeddings. Warm-up ("train only the embedding layer and the proxies") therefore
means freezing the trunk's parameters: ``set_trainable(trunk, False)`` (see :mod:`.batchnorm`).

``model_cfg`` keys:

- ``backbone``: ``bn_inception`` | ``resnet50`` | ``small_cnn`` (required).
- ``embedding_size``: output dimension (default 512).
- ``pretrained``: ``null`` (random init), a local weight file, or for ``resnet50`` also a
  torchvision weight name such as ``IMAGENET1K_V1``.
- ``bn_freeze``: keep the trunk's BatchNorm layers in eval mode (default false); for ``resnet50``
  their affine parameters are frozen too (SPEC.md section 2).
- ``normalize``: L2-normalise the embeddings (default true).
- any other key is passed to ``SmallCNN`` for ``small_cnn`` and refused for the other backbones.

The BN-Inception ImageNet classifier (``last_linear``) is removed after the weights are loaded, so
the trunk's state_dict is the file's minus ``last_linear.*`` (and ResNet's lacks ``fc.*``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from torch import nn

from .batchnorm import freeze_batchnorm
from .bn_inception import BNInception, load_bn_inception_weights
from .head import EmbeddingHead
from .resnet import resnet50_trunk
from .weights import load_state_dict_checked, read_state_dict

BACKBONES = ("bn_inception", "resnet50", "small_cnn")
_COMMON_KEYS = ("backbone", "embedding_size", "pretrained", "bn_freeze", "normalize")


class ModelConfigError(ValueError):
    """The ``model:`` config section names an unknown backbone or key."""


def _closest(name: str, choices: tuple[str, ...] | list[str]) -> str:
    matches = difflib.get_close_matches(name, choices, n=1)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def build_model(model_cfg: Mapping[str, Any]) -> tuple[nn.Module, EmbeddingHead]:
    """Build ``(trunk, embedder)`` from the ``model:`` config section (keys in the module doc).

    Raises:
        ModelConfigError: unknown backbone or unknown key (with the closest valid name).
        WeightsNotFoundError, WeightsFileError, WeightsMismatchError: from weight loading.
    """
    cfg = dict(model_cfg)
    backbone = cfg.pop("backbone", None)
    embedding_size = int(cfg.pop("embedding_size", 512))
    pretrained = cfg.pop("pretrained", None)
    bn_freeze = bool(cfg.pop("bn_freeze", False))
    normalize = bool(cfg.pop("normalize", True))
    if backbone not in BACKBONES:
        raise ModelConfigError(
            f"unknown backbone {backbone!r} in the model config; expected one of "
            f"{', '.join(BACKBONES)}.{_closest(str(backbone), BACKBONES)}"
        )
    if cfg and backbone != "small_cnn":
        key = sorted(cfg)[0]
        raise ModelConfigError(
            f"unknown key(s) {sorted(cfg)} in the model config for backbone {backbone!r}; "
            f"expected only {', '.join(_COMMON_KEYS)}.{_closest(key, _COMMON_KEYS)}"
        )

    trunk: nn.Module
    if backbone == "bn_inception":
        trunk = BNInception()
        if pretrained is not None:
            load_bn_inception_weights(trunk, pretrained)
        trunk.remove_classifier()
        in_channels = BNInception.out_channels
    elif backbone == "resnet50":
        trunk = resnet50_trunk(pretrained)
        in_channels = trunk.out_channels
    else:
        from .small_cnn import SmallCNN

        try:
            trunk = SmallCNN(**cfg)
        except TypeError as exc:
            raise ModelConfigError(
                f"invalid SmallCNN option(s) in the model config {sorted(cfg)}: {exc}"
            ) from exc
        if pretrained is not None:
            state_dict = read_state_dict(
                pretrained, architecture="SmallCNN", how_to_get="Expected a SmallCNN state_dict."
            )
            load_state_dict_checked(
                trunk,
                state_dict,
                source=str(pretrained),
                architecture="SmallCNN",
                how_to_get="pass a state_dict saved from a SmallCNN built with the same options.",
            )
        in_channels = int(trunk.out_channels)

    if bn_freeze:
        freeze_batchnorm(trunk, freeze_affine=backbone == "resnet50")
    embedder = EmbeddingHead(in_channels, embedding_size, normalize=normalize)
    return trunk, embedder
