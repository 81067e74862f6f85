"""ResNet-50 trunk: torchvision names, feature map shape, loading from a file or by weight name."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import ResNet50_Weights, resnet50

from pml_proxy_anchor.models import (
    ResNet50Trunk,
    WeightsMismatchError,
    WeightsNotFoundError,
    resnet50_trunk,
)


@pytest.fixture(scope="module")
def trunk() -> ResNet50Trunk:
    torch.manual_seed(0)
    return resnet50_trunk(None).eval()


@pytest.fixture(scope="module")
def torchvision_shapes() -> dict[str, list[int]]:
    """Names/shapes of torchvision's resnet50 state_dict (what its ImageNet weight files hold)."""
    return {key: list(value.shape) for key, value in resnet50(weights=None).state_dict().items()}


def test_trunk_has_torchvision_names_and_shapes_without_fc(trunk, torchvision_shapes):
    actual = {key: list(value.shape) for key, value in trunk.state_dict().items()}
    expected = {k: v for k, v in torchvision_shapes.items() if not k.startswith("fc.")}
    assert len(torchvision_shapes) - len(expected) == 2  # fc.weight, fc.bias
    assert actual == expected
    assert list(actual) == list(expected)  # same order as torchvision
    assert trunk.out_channels == 2048


def test_forward_224_gives_2048x7x7(trunk):
    with torch.no_grad():
        features = trunk(torch.randn(1, 3, 224, 224))
    assert features.shape == (1, 2048, 7, 7)
    assert torch.isfinite(features).all() and (features >= 0).all()


def _check_loaded(model: ResNet50Trunk, shapes: dict[str, list[int]]) -> None:
    loaded = model.state_dict()
    for index, key in enumerate(shapes):
        if key in loaded:
            assert torch.all(loaded[key] == index + 1), key


def test_loads_torchvision_file(tmp_path, torchvision_shapes, constant_state_dict):
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(constant_state_dict(torchvision_shapes), path)
    _check_loaded(resnet50_trunk(str(path)), torchvision_shapes)


def test_loads_by_name_from_the_hub_cache(
    tmp_path, monkeypatch, torchvision_shapes, constant_state_dict
):
    """A torchvision weight name resolves through the torch hub cache (no download needed)."""
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(constant_state_dict(torchvision_shapes), cache / "resnet50-0676ba61.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    _check_loaded(resnet50_trunk("ResNet50_Weights.IMAGENET1K_V1"), torchvision_shapes)


def test_missing_file_names_the_torchvision_files(tmp_path):
    path = tmp_path / "resnet50.pth"
    with pytest.raises(WeightsNotFoundError) as info:
        resnet50_trunk(path)
    message = str(info.value)
    assert str(path) in message
    for weights in (ResNet50_Weights.IMAGENET1K_V1, ResNet50_Weights.IMAGENET1K_V2):
        assert weights.url in message  # .../resnet50-0676ba61.pth and .../resnet50-11ad3fa6.pth
    assert "resnet50-0676ba61.pth" in message and "resnet50-11ad3fa6.pth" in message


def test_mismatching_file_lists_keys(tmp_path, torchvision_shapes, constant_state_dict):
    state_dict = constant_state_dict(torchvision_shapes)
    del state_dict["fc.bias"]
    state_dict["layer5.0.conv1.weight"] = torch.zeros(1)
    state_dict["fc.weight"] = torch.zeros(100, 2048)
    torch.save(state_dict, tmp_path / "resnet18ish.pth")
    with pytest.raises(WeightsMismatchError) as info:
        resnet50_trunk(tmp_path / "resnet18ish.pth")
    assert info.value.missing == ["fc.bias"]
    assert info.value.unexpected == ["layer5.0.conv1.weight"]
    assert info.value.shape_mismatches == [("fc.weight", (100, 2048), (1000, 2048))]
    assert "ResNet-50" in str(info.value) and "resnet50-0676ba61.pth" in str(info.value)
