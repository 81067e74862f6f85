"""ResNet-50 trunk (He et al., CVPR 2016) from torchvision, the paper's second backbone.

:func:`resnet50_trunk` builds ``torchvision.models.resnet50``, loads torchvision's ImageNet weights
(from a local file, or by torchvision weight name, which downloads into the torch hub cache when
online and reuses the cached file otherwise) and keeps everything up to ``layer4``: the trunk
returns the feature map ``(B, 2048, 7, 7)`` for a 224x224 RGB input normalised with the ImageNet
mean/std. The paper's code calls ``resnet50(pretrained=True)``, i.e. ``IMAGENET1K_V1``.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor, nn
from torchvision.models import ResNet, ResNet50_Weights, resnet50

from .errors import WeightsNotFoundError
from .weights import load_state_dict_checked, read_state_dict

RESNET50_V1_URL = ResNet50_Weights.IMAGENET1K_V1.url
RESNET50_V1_FILENAME = Path(RESNET50_V1_URL).name  # resnet50-0676ba61.pth, the paper's weights
HOW_TO_GET_RESNET50 = (
    "Expected torchvision's ImageNet ResNet-50 state_dict: "
    f"{RESNET50_V1_FILENAME} (IMAGENET1K_V1, the paper's weights) from "
    f"{RESNET50_V1_URL}, or {Path(ResNet50_Weights.IMAGENET1K_V2.url).name} "
    f"(IMAGENET1K_V2) from {ResNet50_Weights.IMAGENET1K_V2.url}."
)


class ResNet50Trunk(nn.Module):
    """The convolutional part of a torchvision ResNet (no average pooling, no ``fc``).

    Its state_dict names are torchvision's (``conv1.weight``, ``layer1.0.bn1.running_mean``, ...)
    without ``fc.*``.

    Attributes:
        out_channels: channels of the returned feature map (2048 for ResNet-50).
    """

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.out_channels: int = resnet.fc.in_features

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> ``(B, 2048, H/32, W/32)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _weight_enum(name: str) -> ResNet50_Weights | None:
    """``"IMAGENET1K_V1"``, ``"ResNet50_Weights.IMAGENET1K_V2"`` or ``"DEFAULT"`` -> the enum."""
    short = name.removeprefix("ResNet50_Weights.")
    if short == "DEFAULT":
        return ResNet50_Weights.DEFAULT
    return ResNet50_Weights.__members__.get(short)


def resnet50_trunk(weights: str | os.PathLike[str] | None = None) -> ResNet50Trunk:
    """Build the ResNet-50 trunk, optionally with torchvision's ImageNet weights.

    Args:
        weights: ``None`` for random initialisation; a path to a torchvision ResNet-50 state_dict
            file (e.g. ``resnet50-0676ba61.pth``); or a torchvision weight name
            (``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, ``"DEFAULT"``, optionally prefixed with
            ``"ResNet50_Weights."``), taken from the torch hub cache or downloaded when online.
            An existing file always wins over a name.

    Raises:
        WeightsNotFoundError: the file does not exist, or the named weights are neither cached
            nor downloadable (the message gives the URLs).
        WeightsFileError: the file is not a readable state_dict.
        WeightsMismatchError: the keys or shapes are not torchvision's ResNet-50 ones.
    """
    model = resnet50(weights=None)
    if weights is not None:
        path = Path(weights).expanduser()
        named = _weight_enum(os.fspath(weights))
        if path.is_file() or named is None:
            state_dict = read_state_dict(
                path, architecture="ResNet-50", how_to_get=HOW_TO_GET_RESNET50
            )
            source = os.fspath(path)
        else:
            try:
                state_dict = named.get_state_dict(progress=True)
            except OSError as exc:  # URLError is an OSError: offline and not in the hub cache
                raise WeightsNotFoundError(
                    f"ResNet-50 weights {named} are not in the torch hub cache and could not be "
                    f"downloaded ({exc}). Download {named.url} on a machine with internet access "
                    "and pass the local file path instead of the name, or copy it into "
                    "$TORCH_HOME/hub/checkpoints/."
                ) from exc
            source = named.url
        load_state_dict_checked(
            model,
            state_dict,
            source=source,
            architecture="ResNet-50",
            how_to_get=HOW_TO_GET_RESNET50,
        )
    return ResNet50Trunk(model)
