"""Any timm model as the trunk: ``model.backbone: timm/<name>`` (e.g. ``timm/vit_small_patch16_224``
or, with a pretrained tag, ``timm/vit_small_patch16_224.dino``).

The trunk is ``timm.create_model(name, num_classes=0)`` (the ImageNet classifier removed) in a
:class:`TimmTrunk`. Its head depends on ``model.pool``:

- ``timm`` (default): the vector the timm model pools itself, one per image: for a ViT the CLS
  token after the final LayerNorm, as in HIER (Kim et al., CVPR 2023) and Hyp-ViT (Ermolov et al.,
  CVPR 2022); for a CNN its global average. The embedder is :class:`~.token_head.TokenHead`
  (LayerNorm without parameters, orthogonal Linear, L2 norm; HIER's head).
- ``gap_gmp``: the feature map ``(B, C, H, W)`` of ``forward_features`` and the Proxy-Anchor
  paper's :class:`~.head.EmbeddingHead` (GAP + GMP summed, Linear, L2 norm); for CNNs only.

Weights (``model.pretrained``): a local file (a state_dict of the same architecture, built with the
same options, ``.safetensors`` or a ``torch.save`` file), loaded strictly: any missing or unexpected
key or shape mismatch is a :class:`~.errors.WeightsMismatchError` listing them; the classifier keys
the model's pretrained config names (``head.*`` for a ViT) are dropped first, as for BN-Inception's
``last_linear``. ``timm``: timm's own download (Hugging Face hub, cached); offline it fails with a
:class:`~.errors.WeightsNotFoundError` naming the file alternative. ``none``: random weights.
``null`` is refused: the ViT papers fine-tune pretrained weights.

Other ``model:`` keys: ``img_size`` (passed to ``create_model``: the input side of a ViT, e.g. 32
for a tiny test run; the images must then have that size, ``data.crop_size``), ``drop_path_rate``
(stochastic depth) and ``pool``.

Transforms: :func:`timm_data_config` reads the mean, std, input size, interpolation and crop ratio
from the model's pretrained config (timm's ``resolve_data_config``, no model built);
``pml_proxy_anchor.data.transforms`` builds the train and test transforms from it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from pml_proxy_anchor.registry import close_matches

from .errors import ModelConfigError, WeightsFileError, WeightsNotFoundError, weights_not_found
from .weights import load_state_dict_checked, read_state_dict

TIMM_PREFIX = "timm/"
TIMM_WEIGHTS = "timm"  # model.pretrained value: timm's own download
POOLS = ("timm", "gap_gmp")
OPTION_KEYS = ("img_size", "drop_path_rate", "pool")
EXAMPLE = "timm/vit_small_patch16_224.dino"


def timm_name(backbone: Any) -> str | None:
    """The timm model name of a ``timm/<name>`` backbone; None for the other backbones."""
    if isinstance(backbone, str) and backbone.startswith(TIMM_PREFIX):
        return backbone[len(TIMM_PREFIX) :]
    return None


@functools.cache
def _known_names() -> tuple[frozenset[str], frozenset[str]]:
    """timm's architectures and its ``architecture.tag`` names with pretrained weights."""
    import timm

    return frozenset(timm.list_models()), frozenset(timm.list_pretrained())


def check_timm_name(name: str) -> str:
    """``name`` when timm has the architecture (and the pretrained tag, if one is given).

    Raises:
        ModelConfigError: no or an unknown name or tag, with timm's closest names.
    """
    architectures, pretrained = _known_names()
    if not name.strip():
        raise ModelConfigError(
            f"model.backbone={TIMM_PREFIX!r} names no timm model; expected timm/<name>, "
            f"e.g. {EXAMPLE}."
        )
    architecture, _, tag = name.partition(".")
    if architecture in architectures and (not tag or name in pretrained):
        return name
    if architecture in architectures:
        tags = sorted(n for n in pretrained if n.startswith(architecture + "."))
        best = (close_matches(name, tags, n=1) or tags or [architecture])[0]
        raise ModelConfigError(
            f"timm has no pretrained tag {tag!r} for {architecture}"
            + (f"; its tags: {', '.join(tags)}." if tags else " (it has no pretrained weights).")
            + f" Fix: model.backbone={TIMM_PREFIX}{best}."
        )
    close = close_matches(name, sorted(architectures | pretrained), n=5)
    hint = (
        f"did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else "no close name."
    )
    raise ModelConfigError(
        f"unknown timm model {name!r} in model.backbone={TIMM_PREFIX}{name}: {hint} "
        "timm.list_models() lists the architectures, timm.list_pretrained() the tags with weights."
    )


def _pretrained_cfg(name: str) -> dict[str, Any]:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(check_timm_name(name))
    return cfg.to_dict() if cfg is not None else {}


def timm_data_config(name: str) -> dict[str, Any]:
    """``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct`` of the model's pretrained
    config (timm's defaults where it has none: 224, bicubic, ImageNet mean/std, 0.875)."""
    from timm.data import resolve_data_config

    cfg = _pretrained_cfg(name)
    return dict(resolve_data_config(pretrained_cfg={"architecture": name, **cfg}))


def eval_resize_size(crop_size: int, crop_pct: float) -> int:
    """The test-time resize before the centre crop: ``floor(crop_size / crop_pct)``, as timm."""
    return math.floor(crop_size / crop_pct)


class TimmTrunk(nn.Module):
    """A timm model without classifier, returning the pooled vector or the feature map.

    Args:
        model: ``timm.create_model(name, num_classes=0, ...)``.
        name: the timm name, for messages.
        pool: ``"timm"`` (the model's own pooled vector, ``(B, C)``) or ``"gap_gmp"`` (the map
            ``(B, C, H, W)`` of ``forward_features``, for :class:`~.head.EmbeddingHead`).

    Attributes:
        out_channels: size of the pooled vector or channels of the map.
        pooled: whether the output is one vector per image (the head is then a ``TokenHead``).
        input_size: ``(H, W)`` the model requires (a ViT with a fixed size), else None.
    """

    def __init__(self, model: nn.Module, name: str, pool: str = "timm") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ModelConfigError(f"model.pool must be one of {', '.join(POOLS)}; got {pool!r}.")
        self.model = model
        self.model_name = name
        self.pooled = pool == "timm"
        features = int(getattr(model, "num_features"))  # noqa: B009 - timm's attribute
        self.out_channels = (
            int(getattr(model, "head_hidden_size", features)) if self.pooled else features
        )
        patch_embed = getattr(model, "patch_embed", None)
        strict = getattr(patch_embed, "strict_img_size", False) and not getattr(
            model, "dynamic_img_size", False
        )
        size = getattr(patch_embed, "img_size", None) if strict else None
        self.input_size: tuple[int, int] | None = (int(size[0]), int(size[1])) if size else None

    def forward(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> ``(B, out_channels)`` or ``(B, out_channels, H', W')``."""
        if self.input_size is not None and tuple(images.shape[-2:]) != self.input_size:
            height, width = self.input_size
            raise ModelConfigError(
                f"timm model {self.model_name} takes {height}x{width} images, got "
                f"{images.shape[-2]}x{images.shape[-1]}. Fix: make the image size and the model "
                f"agree: data.crop_size={height} (the crop of the transforms), or "
                f"model.img_size={images.shape[-1]} (the ViT's input size)."
            )
        if self.pooled:
            return self.model(images)
        features = self.model.forward_features(images)
        if features.dim() != 4 or features.shape[1] != self.out_channels:
            raise ModelConfigError(
                f"model.pool=gap_gmp needs a feature map (B, {self.out_channels}, H, W) from timm "
                f"model {self.model_name}, whose forward_features returns shape "
                f"{tuple(features.shape)} (a transformer's tokens?). Fix: model.pool=timm."
            )
        return features


def _create_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if options.get("img_size") is not None:
        size = options["img_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ModelConfigError(f"model.img_size must be a positive integer; got {size!r}.")
        kwargs["img_size"] = size
    if options.get("drop_path_rate") is not None:
        rate = options["drop_path_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ModelConfigError(
                f"model.drop_path_rate must be a number in [0, 1); got {rate!r}."
            )
        kwargs["drop_path_rate"] = float(rate)
    return kwargs


def how_to_get(name: str) -> str:
    """Where the weights of timm model ``name`` come from, one sentence for error messages."""
    hub = _pretrained_cfg(name).get("hf_hub_id")
    file = (
        f" (or timm's file https://huggingface.co/{hub}/resolve/main/model.safetensors)"
        if hub
        else ""
    )
    return (
        f"Expected a state_dict of timm's {name} built with the same model options: on a machine "
        f"with network, torch.save(timm.create_model({name!r}, pretrained=True, num_classes=0)"
        f".state_dict(), path){file}."
    )


def _file_hint(name: str) -> str:
    return f"{how_to_get(name)} Or pass model.pretrained={TIMM_WEIGHTS} to let timm download it."


def _read_file(path: Path, name: str) -> dict[str, Tensor]:
    architecture = f"timm {name}"
    if path.suffix != ".safetensors" or path.is_dir():
        return read_state_dict(path, architecture=architecture, how_to_get=_file_hint(name))
    if not path.is_file():
        raise weights_not_found(path, architecture=architecture, how_to_get=_file_hint(name))
    from timm.models import load_state_dict

    try:
        return dict(load_state_dict(str(path)))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise WeightsFileError(
            f"{architecture} weight file {str(path)!r} cannot be read as safetensors ({exc}). "
            f"Fix: download the file again. {_file_hint(name)}"
        ) from exc


def _drop_classifier(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """``state`` without the ImageNet classifier keys (the pretrained config's ``classifier``)
    that the model built with ``num_classes=0`` lacks."""
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    prefixes = tuple(
        f"{c}." for c in ((classifier,) if isinstance(classifier, str) else classifier)
    )
    expected = model.state_dict()
    return {k: v for k, v in state.items() if k in expected or not k.startswith(prefixes)}


def load_timm_weights(model: nn.Module, path: str | Path, name: str) -> None:
    """Load a local weight file into the timm model ``model`` strictly (classifier keys dropped).

    Raises:
        WeightsNotFoundError, WeightsFileError: no, or an unreadable, file.
        WeightsMismatchError: the file is for another architecture or other options; lists the
            missing and unexpected keys and the shape mismatches.
    """
    file = Path(path).expanduser()
    state = _drop_classifier(_read_file(file, name), model)
    load_state_dict_checked(
        model, state, source=str(file), architecture=f"timm {name}", how_to_get=_file_hint(name)
    )


def _download(name: str, kwargs: dict[str, Any]) -> nn.Module:
    import timm

    cfg = _pretrained_cfg(name)
    if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
        raise ModelConfigError(
            f"timm has no pretrained weights for {name}, so model.pretrained={TIMM_WEIGHTS} "
            f"cannot load any. Fix: a model with weights (timm.list_pretrained() lists them), a "
            "local weight file, or model.pretrained=none for random weights on purpose."
        )
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, **kwargs)
    except OSError as exc:  # no network: huggingface_hub / urllib errors derive from OSError
        source = cfg.get("hf_hub_id") or cfg.get("url")
        raise WeightsNotFoundError(
            f"timm could not download the pretrained weights of {name} from {source} "
            f"({type(exc).__name__}: {exc}); is this machine offline? Fix: download them on a "
            "machine with network and pass model.pretrained=/path/to/file. "
            f"{how_to_get(name)} Or model.pretrained=none for random weights on purpose."
        ) from exc


def build_timm_trunk(name: str, weights: str | None, options: Mapping[str, Any]) -> TimmTrunk:
    """``timm/<name>``'s trunk: random (``weights`` None), timm's download (``"timm"``) or a file.

    ``options`` are the ``model:`` keys of :data:`OPTION_KEYS`.

    Raises:
        ModelConfigError: unknown name or tag, a bad option value, an option the model lacks.
        WeightsNotFoundError, WeightsFileError, WeightsMismatchError: from the weights.
    """
    import timm

    name = check_timm_name(name)
    kwargs = _create_kwargs(options)
    pool = options.get("pool", "timm")
    if pool not in POOLS:
        raise ModelConfigError(f"model.pool must be one of {', '.join(POOLS)}; got {pool!r}.")
    download = weights is not None and weights.strip().lower() == TIMM_WEIGHTS
    try:
        model = (
            _download(name, kwargs)
            if download
            else timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        )
    except TypeError as exc:  # e.g. img_size for a CNN
        raise ModelConfigError(
            f"timm model {name} does not take the model option(s) {sorted(kwargs)}: {exc}. "
            "Fix: remove them from the model config."
        ) from exc
    if weights is not None and not download:
        load_timm_weights(model, weights, name)
    return TimmTrunk(model, name, pool=pool)
