"""Image transforms of the Proxy-Anchor paper (docs/paper.md section 2), one builder per backbone.

Geometry (every backbone but ``small_cnn``):

- train: ``RandomResizedCrop(crop_size)`` + ``RandomHorizontalFlip()``;
- test: ``Resize(resize_size)`` + ``CenterCrop(crop_size)``, with ``crop_size=224, resize_size=256``
  (the 256-crop variant used for comparison with HORDE: ``crop_size=256``, the resize then defaults
  to ``round(256 * 256 / 224) = 293``, the same ratio).

Pixels:

- ``bn_inception``: BGR order, range 0..255, minus the mean (104, 117, 128) (B, G, R), std 1:
  ``out[c] = 255 * rgb[2 - c] - mean[c]``;
- ``resnet50``: RGB in 0..1, normalised with the ImageNet mean (0.485, 0.456, 0.406) and std
  (0.229, 0.224, 0.225);
- ``small_cnn``: one grayscale channel in 0..1, resized to ``image_size`` (default 28), normalised
  with mean 0.5 and std 0.5, no augmentation (the small CPU backbone used for tests and Omniglot).

``timm/<name>`` backbones take everything from the model's pretrained config
(:func:`~pml_proxy_anchor.models.timm_backbone.timm_data_config`): RGB in 0..1 normalised with its
mean/std; train ``RandomResizedCrop(crop_size, scale=(0.2, 1))`` with its interpolation + flip (the
crop scale of HIER's and Hyp-ViT's ViT runs); test ``Resize(resize_size)`` + ``CenterCrop``. The
crop defaults to the config's input size (224 for ViT-S/16), the resize to
``floor(crop / crop_pct)`` (timm's rule); ``data.crop_size`` / ``data.resize_size`` override them
(``data.crop_size`` must equal a ViT's ``model.img_size``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision import transforms as T

from pml_proxy_anchor.models.build import BACKBONES
from pml_proxy_anchor.models.timm_backbone import eval_resize_size, timm_data_config, timm_name

from .errors import DataConfigError

BN_INCEPTION_MEAN_BGR = (104.0, 117.0, 128.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_CROP_SCALE = (0.2, 1.0)  # RandomResizedCrop scale of HIER's and Hyp-ViT's ViT training


class RGBToBGR255:
    """``(3, H, W)`` RGB in 0..1 -> BGR in 0..255 (the input convention of BN-Inception)."""

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"expected an RGB tensor (3, H, W), got shape {tuple(tensor.shape)}")
        return tensor.flip(0) * 255.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _geometry(train: bool, crop_size: int, resize_size: int | None) -> list[Callable[..., Any]]:
    if train:
        return [T.RandomResizedCrop(crop_size), T.RandomHorizontalFlip()]
    if resize_size is None:
        resize_size = 256 if crop_size == 224 else round(crop_size * 256 / 224)
    return [T.Resize(resize_size), T.CenterCrop(crop_size)]


def _timm_transform(
    name: str, train: bool, crop_size: int | None, resize_size: int | None
) -> T.Compose:
    config = timm_data_config(name)
    crop = crop_size if crop_size is not None else int(config["input_size"][-1])
    try:
        interpolation = T.InterpolationMode(config["interpolation"])
    except ValueError:  # e.g. timm's "random"
        interpolation = T.InterpolationMode.BICUBIC
    if train:
        geometry = [
            T.RandomResizedCrop(crop, scale=TIMM_CROP_SCALE, interpolation=interpolation),
            T.RandomHorizontalFlip(),
        ]
    else:
        resize = resize_size or eval_resize_size(crop, float(config["crop_pct"]))
        geometry = [T.Resize(resize, interpolation=interpolation), T.CenterCrop(crop)]
    normalize = T.Normalize(mean=tuple(config["mean"]), std=tuple(config["std"]))
    return T.Compose([*geometry, T.ToTensor(), normalize])


def build_transform(
    backbone: str,
    train: bool,
    *,
    crop_size: int | None = None,
    resize_size: int | None = None,
    image_size: int = 28,
) -> T.Compose:
    """The transform for ``backbone`` (``"bn_inception"``, ``"resnet50"``, ``"small_cnn"`` or
    ``"timm/<name>"``).

    Args:
        backbone: the backbone the images are fed to.
        train: the training transform (random crop and flip) or the test one (resize, centre crop).
        crop_size: the side of the crop (None: 224; 256 for the HORDE-comparison variant; a timm
            model's input size for ``timm/<name>``).
        resize_size: the test-time resize before the centre crop (256 for a 224 crop by default;
            ``floor(crop / crop_pct)`` of the pretrained config for ``timm/<name>``).
        image_size: the side of the square images of ``small_cnn``.

    Returns:
        A ``torchvision.transforms.Compose`` mapping a PIL image to a float32 ``(C, H, W)`` tensor.

    Raises:
        DataConfigError: an unknown backbone, or a size that is not a positive integer.
        ModelConfigError: an unknown timm model (with timm's closest names).
    """
    for key, value in (
        ("crop_size", crop_size),
        ("resize_size", resize_size),
        ("image_size", image_size),
    ):
        if value is None and key in ("crop_size", "resize_size"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataConfigError(f"data.{key} must be a positive integer, got {value!r}.")
    name = timm_name(backbone)
    if name is not None:
        return _timm_transform(name, train, crop_size, resize_size)
    crop_size = 224 if crop_size is None else crop_size
    if backbone == "bn_inception":
        return T.Compose(
            [
                *_geometry(train, crop_size, resize_size),
                T.ToTensor(),
                RGBToBGR255(),
                T.Normalize(mean=BN_INCEPTION_MEAN_BGR, std=(1.0, 1.0, 1.0)),
            ]
        )
    if backbone == "resnet50":
        return T.Compose(
            [
                *_geometry(train, crop_size, resize_size),
                T.ToTensor(),
                T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            ]
        )
    if backbone == "small_cnn":
        return T.Compose(
            [
                T.Grayscale(num_output_channels=1),
                T.Resize((image_size, image_size)),
                T.ToTensor(),
                T.Normalize(mean=(0.5,), std=(0.5,)),
            ]
        )
    raise DataConfigError(
        f"unknown backbone {backbone!r} for the image transform; expected one of {list(BACKBONES)} "
        "or timm/<name>."
    )
