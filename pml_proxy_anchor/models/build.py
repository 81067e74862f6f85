"""Build the (trunk, embedder) pair of the Proxy-Anchor paper from the ``model:`` config section.

PML's trainers take the two as ``models={"trunk": trunk, "embedder": embedder}``: the trunk maps
images to a feature map ``(B, C, H, W)``, the embedder (:class:`~.head.EmbeddingHead`) maps it to
L2-normalised embeddings; a trunk that returns one vector per image (``pooled``: a timm ViT's CLS
token) gets a :class:`~.token_head.TokenHead` instead. Warm-up ("train only the embedding layer and
the proxies") therefore means freezing the trunk's parameters (``training.hooks.WarmupFreeze``).

The backbones are the entries of one table, :data:`BACKBONES` (name -> :class:`Backbone`), looked
up with :func:`pml_proxy_anchor.registry.choose` (unknown names get a did-you-mean hint), plus any
timm model as ``timm/<name>`` (:mod:`.timm_backbone`; did-you-mean over timm's names), which the
table returns on lookup without listing it.

``model_cfg`` keys:

- ``backbone``: ``bn_inception`` | ``resnet50`` | ``small_cnn`` | ``timm/<name>`` (required).
- ``embedding_size``: output dimension (default 512).
- ``pretrained``: a local weight file; for ``resnet50`` also a torchvision weight name such as
  ``IMAGENET1K_V1``; or ``none`` (any case) to start from random weights. ``bn_inception`` and
  ``resnet50`` refuse ``null`` (the key left unset): the paper starts them from ImageNet weights,
  and a run from random weights silently loses tens of points (docs/paper.md section 2).
  ``small_cnn`` takes ``null`` as random weights. ``timm/<name>``: a local file, ``timm`` (timm's
  own download) or ``none``; ``null`` is refused (the ViT papers start from pretrained weights).
- ``bn_freeze``: keep the trunk's BatchNorm layers in eval mode (default false); for ``resnet50``
  their affine parameters are frozen too when the model is built, as in the authors' code, until
  the end of the warm-up (docs/paper.md section 2).
- ``normalize``: L2-normalise the embeddings (default true).
- ``img_size``, ``drop_path_rate``, ``pool``: ``timm/<name>`` only (:mod:`.timm_backbone`).
- any other key is passed to ``SmallCNN`` for ``small_cnn`` and refused for the other backbones.

The BN-Inception ImageNet classifier (``last_linear``) is removed after the weights are loaded, so
the trunk's state_dict is the file's minus ``last_linear.*`` (and ResNet's lacks ``fc.*``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from pml_proxy_anchor.registry import RegistryError, choose, close_matches

from .batchnorm import freeze_batchnorm
from .bn_inception import (
    BN_INCEPTION_FILENAME,
    BN_INCEPTION_URL,
    BNInception,
    load_bn_inception_weights,
)
from .errors import ModelConfigError, WeightsRequiredError
from .head import EmbeddingHead
from .resnet import RESNET50_V1_FILENAME, RESNET50_V1_URL, resnet50_trunk
from .small_cnn import SmallCNN
from .timm_backbone import OPTION_KEYS as TIMM_OPTION_KEYS
from .timm_backbone import TIMM_WEIGHTS, build_timm_trunk, check_timm_name, timm_name
from .token_head import TokenHead
from .weights import load_state_dict_checked, read_state_dict

_COMMON_KEYS = ("backbone", "embedding_size", "pretrained", "bn_freeze", "normalize")
RANDOM_WEIGHTS = "none"  # the explicit value of model.pretrained for random initialisation


@dataclass(frozen=True)
class Backbone:
    """One entry of :data:`BACKBONES`.

    Attributes:
        name: the ``model.backbone`` value.
        build: ``(weights, options) -> trunk``; ``weights`` is a file path or weight name, or
            None for random weights; ``options`` are the extra ``model:`` keys. The trunk has an
            ``out_channels`` attribute.
        freeze_affine: ``bn_freeze`` also freezes the BatchNorm affine parameters at build time
            (the warm-up releases them at its end, as the authors' code does).
        weights_required: ``model.pretrained`` must be set (a file or ``none``); the paper starts
            this backbone from ImageNet weights.
        where_to_get_weights: how to obtain the weight file, for the error when it is missing.
        takes_options: extra ``model:`` keys go to the constructor (else they are refused).
        option_keys: the extra ``model:`` keys ``build`` takes (the others are refused).
    """

    name: str
    build: Callable[[str | None, dict[str, Any]], nn.Module]
    freeze_affine: bool
    weights_required: bool
    where_to_get_weights: str = ""
    takes_options: bool = False
    option_keys: tuple[str, ...] = ()


def _build_bn_inception(weights: str | None, options: dict[str, Any]) -> nn.Module:
    trunk = BNInception()
    if weights is not None:
        load_bn_inception_weights(trunk, weights)
    trunk.remove_classifier()
    return trunk


def _build_resnet50(weights: str | None, options: dict[str, Any]) -> nn.Module:
    return resnet50_trunk(weights)


def _build_small_cnn(weights: str | None, options: dict[str, Any]) -> nn.Module:
    try:
        trunk = SmallCNN(**options)
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(
            f"invalid SmallCNN option(s) in the model config {sorted(options)}: {exc}"
        ) from exc
    if weights is not None:
        state_dict = read_state_dict(
            weights, architecture="SmallCNN", how_to_get="Expected a SmallCNN state_dict."
        )
        load_state_dict_checked(
            trunk,
            state_dict,
            source=str(weights),
            architecture="SmallCNN",
            how_to_get="pass a state_dict saved from a SmallCNN built with the same options.",
        )
    return trunk


class BackboneTable(dict[str, Backbone]):
    """The table of backbones by name; a lookup of ``timm/<name>`` (not listed: any timm model)
    returns :func:`timm_backbone` of it."""

    def __missing__(self, key: str) -> Backbone:
        name = timm_name(key)
        if name is None:
            raise KeyError(key)
        return timm_backbone(name)


BACKBONES: BackboneTable = BackboneTable(
    (backbone.name, backbone)
    for backbone in (
        Backbone(
            "bn_inception",
            _build_bn_inception,
            freeze_affine=False,
            weights_required=True,
            where_to_get_weights=(
                f"download the ImageNet BN-Inception the paper starts from, {BN_INCEPTION_FILENAME}"
                f", from {BN_INCEPTION_URL} (docs/paper.md section 2) and pass "
                f"model.pretrained=/path/to/{BN_INCEPTION_FILENAME}"
            ),
        ),
        Backbone(
            "resnet50",
            _build_resnet50,
            freeze_affine=True,
            weights_required=True,
            where_to_get_weights=(
                f"download torchvision's ImageNet ResNet-50 weights, {RESNET50_V1_FILENAME} "
                f"(IMAGENET1K_V1, the weights of the authors' code), from {RESNET50_V1_URL} "
                f"(docs/paper.md section 2) and pass model.pretrained=/path/to/"
                f"{RESNET50_V1_FILENAME}, or pass model.pretrained=IMAGENET1K_V1 to take it from "
                "the torch hub cache (downloaded there when online)"
            ),
        ),
        Backbone(
            "small_cnn",
            _build_small_cnn,
            freeze_affine=False,
            weights_required=False,
            takes_options=True,
        ),
    )
)


def timm_backbone(name: str) -> Backbone:
    """The :class:`Backbone` of ``timm/<name>`` (not in :data:`BACKBONES`: any timm model)."""
    return Backbone(
        f"timm/{name}",
        functools.partial(build_timm_trunk, name),
        freeze_affine=False,
        weights_required=True,
        where_to_get_weights=(
            f"pass model.pretrained={TIMM_WEIGHTS} to let timm download the weights of {name} "
            "(cached; needs network once), or model.pretrained=/path/to/a state_dict file of "
            "that model"
        ),
        option_keys=TIMM_OPTION_KEYS,
    )


def resolve_pretrained(backbone: Backbone, pretrained: Any) -> str | None:
    """The weights to load for ``backbone``: a path or weight name, or None for random weights.

    ``none`` (any case) means random weights on purpose; ``None`` (the key left unset) is refused
    for backbones with ``weights_required``.

    Raises:
        WeightsRequiredError: ``pretrained`` is None and the backbone needs weights.
        ModelConfigError: ``pretrained`` is not a string (or path), or is empty.
    """
    if pretrained is None:
        if backbone.weights_required:
            raise WeightsRequiredError(
                f"model.pretrained is not set for model.backbone={backbone.name!r}: the papers' "
                "runs start from pretrained (ImageNet) weights, and a run from random weights "
                f"loses tens of points of Recall@K. Fix: {backbone.where_to_get_weights}. To "
                f"train from random weights on purpose, pass model.pretrained={RANDOM_WEIGHTS}."
            )
        return None
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    if not isinstance(pretrained, str):
        raise ModelConfigError(
            f"model.pretrained must be the path of a weight file (or {RANDOM_WEIGHTS!r} for "
            f"random weights); got {pretrained!r} ({type(pretrained).__name__})."
        )
    if not pretrained.strip():
        raise ModelConfigError(
            "model.pretrained is an empty string; expected the path of a weight file, or "
            f"{RANDOM_WEIGHTS!r} for random weights."
        )
    if pretrained.strip().lower() == RANDOM_WEIGHTS:
        return None
    return pretrained


def _flag(cfg: dict[str, Any], key: str, default: bool) -> bool:
    value = cfg.pop(key, default)
    if not isinstance(value, bool):
        raise ModelConfigError(f"model.{key} must be true or false; got {value!r}.")
    return value


def _embedding_size(cfg: dict[str, Any]) -> int:
    value = cfg.pop("embedding_size", 512)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelConfigError(
            f"model.embedding_size must be a positive integer (512 in the paper); got {value!r}."
        )
    return value


def _backbone(name: Any) -> Backbone:
    if name is None:
        raise ModelConfigError(
            f"model.backbone is not set; expected one of {', '.join(BACKBONES)} or timm/<name>."
        )
    model_name = timm_name(name)
    if model_name is not None:  # the name first: a typo is named before any other key
        return timm_backbone(check_timm_name(model_name))
    try:
        return choose(name, BACKBONES, "model.backbone")
    except RegistryError as exc:
        raise ModelConfigError(str(exc)) from None


def build_model(model_cfg: Mapping[str, Any]) -> tuple[nn.Module, EmbeddingHead | TokenHead]:
    """Build ``(trunk, embedder)`` from the ``model:`` config section (keys in the module doc).

    The embedder is a :class:`~.token_head.TokenHead` for a trunk whose ``pooled`` attribute is
    true (one vector per image), an :class:`~.head.EmbeddingHead` otherwise.

    Raises:
        ModelConfigError: unknown backbone or key (with the closest valid name), a value of the
            wrong type.
        WeightsRequiredError: ``pretrained`` unset for a backbone the paper starts from ImageNet.
        WeightsNotFoundError, WeightsFileError, WeightsMismatchError: from weight loading.
    """
    if not isinstance(model_cfg, Mapping):
        raise ModelConfigError(
            f"the model config section must be a mapping of keys to values; got {model_cfg!r}."
        )
    cfg = {str(key): value for key, value in model_cfg.items()}
    backbone = _backbone(cfg.pop("backbone", None))
    embedding_size = _embedding_size(cfg)
    bn_freeze = _flag(cfg, "bn_freeze", False)
    normalize = _flag(cfg, "normalize", True)
    pretrained = cfg.pop("pretrained", None)
    unknown = sorted(key for key in cfg if key not in backbone.option_keys)
    if unknown and not backbone.takes_options:
        known = (*_COMMON_KEYS, *backbone.option_keys)
        hints = {key: close_matches(key, known, n=1) for key in unknown}
        hint = "".join(f" Did you mean {m[0]!r} for {k!r}?" for k, m in hints.items() if m)
        raise ModelConfigError(
            f"unknown key(s) {unknown} in the model config for backbone {backbone.name!r}; "
            f"expected only {', '.join(known)}.{hint}"
        )
    weights = resolve_pretrained(backbone, pretrained)

    trunk = backbone.build(weights, cfg)
    if bn_freeze:
        freeze_batchnorm(trunk, freeze_affine=backbone.freeze_affine)
    head = TokenHead if getattr(trunk, "pooled", False) else EmbeddingHead
    embedder = head(int(trunk.out_channels), embedding_size, normalize=normalize)
    return trunk, embedder
