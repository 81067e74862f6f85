"""SmallCNN: widths (a list, or a width and a growth), out_channels, feature maps, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pml_proxy_anchor.models.small_cnn import SmallCNN


def _conv_widths(model: SmallCNN) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_width_list_sets_one_width_per_block() -> None:
    model = SmallCNN(channels=[4, 4, 8, 16], pool_last=False)
    assert _conv_widths(model) == [4, 4, 8, 16]
    assert model.out_channels == 16
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3


def test_base_width_with_growth_and_convs_per_block() -> None:
    model = SmallCNN(channels=4, blocks=3, growth=2.0, convs_per_block=2)
    assert _conv_widths(model) == [4, 4, 8, 8, 16, 16]
    assert model.out_channels == 16


@pytest.mark.parametrize(
    ("pool_last", "size", "expected"),
    [(False, 28, (2, 16, 3, 3)), (True, 28, (2, 16, 1, 1)), (False, 56, (2, 16, 7, 7))],
)
def test_feature_map_shape(pool_last: bool, size: int, expected: tuple[int, ...]) -> None:
    model = SmallCNN(channels=[4, 4, 8, 16], pool_last=pool_last).eval()
    with torch.no_grad():
        assert tuple(model(torch.rand(2, 1, size, size)).shape) == expected


def test_in_channels() -> None:
    model = SmallCNN(channels=[4, 8], in_channels=3).eval()
    with torch.no_grad():
        assert tuple(model(torch.rand(1, 3, 16, 16)).shape) == (1, 8, 4, 4)


def test_blocks_must_match_the_width_list() -> None:
    with pytest.raises(ValueError, match="blocks=3 does not match the 2 widths"):
        SmallCNN(channels=[4, 8], blocks=3)


def test_width_list_and_growth_are_exclusive() -> None:
    with pytest.raises(ValueError, match="either a list of widths"):
        SmallCNN(channels=[4, 8], growth=2.0)


@pytest.mark.parametrize(
    "kwargs", [{"channels": [4, 0]}, {"channels": 4, "blocks": 0}, {"growth": 0.5}]
)
def test_bad_sizes_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SmallCNN(**kwargs)
