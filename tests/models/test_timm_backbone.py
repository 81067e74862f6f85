"""timm backbones (``model.backbone: timm/<name>``): the CLS-token head, strict weight files, timm's
download (simulated offline, never reaching the network), names, options and transforms.

The models are timm's own test models (``test_vit``: 64 wide, 6 blocks, 0.3M parameters) at
32x32 pixels, so every test runs in about a second on a CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import timm
import timm.models._builder as timm_builder
import torch
from PIL import Image
from safetensors.torch import save_file

from pml_proxy_anchor.data.transforms import build_transform
from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.models import (
    EmbeddingHead,
    ModelConfigError,
    TimmTrunk,
    TokenHead,
    WeightsMismatchError,
    WeightsNotFoundError,
    WeightsRequiredError,
    build_model,
)

TINY = {"backbone": "timm/test_vit", "img_size": 32, "embedding_size": 16}


def _tiny(seed: int = 0, **extra: object) -> tuple[TimmTrunk, TokenHead]:
    torch.manual_seed(seed)
    trunk, embedder = build_model({**TINY, "pretrained": "none", **extra})
    assert isinstance(trunk, TimmTrunk) and isinstance(embedder, TokenHead)
    return trunk.eval(), embedder.eval()


def _images(seed: int = 1, size: int = 32) -> torch.Tensor:
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_a_vit_gets_the_cls_token_head() -> None:
    trunk, embedder = _tiny()
    assert trunk.pooled and trunk.out_channels == 64
    assert (embedder.in_features, embedder.embedding_size) == (64, 16)
    images = _images()
    with torch.no_grad():
        features = trunk(images)
        cls_token = trunk.model.forward_features(images)[:, 0]  # after the ViT's final norm
        embeddings = embedder(features)
    torch.testing.assert_close(features, cls_token, rtol=0, atol=0)
    assert embeddings.shape == (3, 16)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3), rtol=0, atol=1e-6)


def test_token_head_values_on_a_constructed_case() -> None:
    head = TokenHead(4, 2)
    weight = head.embedding.weight
    torch.testing.assert_close(weight @ weight.T, torch.eye(2), rtol=0, atol=1e-6)  # orthogonal
    assert torch.equal(head.embedding.bias, torch.zeros(2))
    with torch.no_grad():
        head.embedding.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))
        head.embedding.bias.copy_(torch.tensor([0.0, 1.0]))
    features = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # LayerNorm: mean 2.5, variance 1.25
    scale = 1.0 / math.sqrt(1.25 + 1e-5)
    raw = torch.tensor([[-1.5 * scale, 1.5 * scale + 1.0]])
    out = head(features)
    torch.testing.assert_close(out, raw / raw.norm(), rtol=0, atol=1e-6)
    assert list(dict(head.named_parameters())) == ["embedding.weight", "embedding.bias"]
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        head(torch.ones(2, 4, 1, 1))


def test_a_state_dict_of_the_same_architecture_loads_strictly(tmp_path: Path) -> None:
    source, _ = _tiny(seed=5)
    path = tmp_path / "test_vit.pth"
    torch.save(source.model.state_dict(), path)
    loaded, _ = build_model({**TINY, "pretrained": str(path)})
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(_images()), source(_images()))
    other, _ = _tiny(seed=6)
    with torch.no_grad():
        assert not torch.equal(other(_images()), source(_images()))


def test_the_imagenet_classifier_is_dropped_and_safetensors_load(tmp_path: Path) -> None:
    torch.manual_seed(7)
    classifier = timm.create_model("test_vit", pretrained=False, img_size=32)  # with head.*
    state = classifier.state_dict()
    assert {"head.weight", "head.bias"} <= set(state)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    trunk, _ = build_model({**TINY, "pretrained": str(path)})
    assert "head.weight" not in trunk.model.state_dict()
    for key, value in trunk.model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_a_file_of_another_architecture_lists_the_keys(tmp_path: Path) -> None:
    shallower = timm.create_model("test_vit", num_classes=0, img_size=32, depth=2)
    path = tmp_path / "depth2.pth"
    torch.save(shallower.state_dict(), path)
    with pytest.raises(WeightsMismatchError) as caught:
        build_model({**TINY, "pretrained": str(path)})
    error = caught.value
    assert isinstance(error, UserError)
    assert error.unexpected == [] and error.shape_mismatches == []
    assert len(error.missing) == 4 * len([k for k in shallower.state_dict() if "blocks.0." in k])
    assert all(
        key.startswith(("blocks.2.", "blocks.3.", "blocks.4.", "blocks.5."))
        for key in error.missing
    )
    message = str(error)
    assert "timm test_vit" in message and str(path) in message
    assert f"{len(error.missing)} missing key(s)" in message and "more" in message  # capped at 10
    assert "model.pretrained=timm" in message


def test_a_file_of_another_width_lists_the_shape_mismatches(tmp_path: Path) -> None:
    wider = timm.create_model("test_vit", num_classes=0, img_size=32, embed_dim=32, num_heads=2)
    path = tmp_path / "wide.pth"
    torch.save(wider.state_dict(), path)
    with pytest.raises(WeightsMismatchError) as caught:
        build_model({**TINY, "pretrained": str(path)})
    shapes = dict((key, (file, model)) for key, file, model in caught.value.shape_mismatches)
    assert shapes["cls_token"] == ((1, 1, 32), (1, 1, 64))
    assert "shape mismatch(es)" in str(caught.value)


def test_a_missing_file_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match=r"timm test_vit weight file not found"):
        build_model({**TINY, "pretrained": str(tmp_path / "nothing.safetensors")})


def test_unknown_names_get_timm_did_you_mean() -> None:
    with pytest.raises(ModelConfigError, match=r"did you mean timm/vit_small_patch16_224\b"):
        build_model({"backbone": "timm/vit_smal_patch16_224", "pretrained": "none"})
    with pytest.raises(
        ModelConfigError, match=r"no pretrained tag 'dinno'.*vit_small_patch16_224\.dino"
    ):
        build_model({"backbone": "timm/vit_small_patch16_224.dinno", "pretrained": "none"})
    with pytest.raises(ModelConfigError, match=r"names no timm model"):
        build_model({"backbone": "timm/", "pretrained": "none"})
    with pytest.raises(ModelConfigError, match=r"did you mean timm/vit_small_patch16_224"):
        build_transform("timm/vit_smal_patch16_224", train=False)


def test_pretrained_null_is_refused_with_the_ways_to_get_weights() -> None:
    with pytest.raises(
        WeightsRequiredError, match=r"model\.pretrained=timm.*model\.pretrained=none"
    ):
        build_model({**TINY})


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every download function timm's loader can call fails as on a machine without network."""

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("[Errno -2] Name or service not known")

    for function in ("load_state_dict_from_hf", "load_state_dict_from_url", "download_cached_file"):
        monkeypatch.setattr(timm_builder, function, offline)


def test_timm_download_offline_names_the_file_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    with pytest.raises(WeightsNotFoundError) as caught:
        build_model({**TINY, "pretrained": "timm"})
    message = str(caught.value)
    assert "timm could not download the pretrained weights of test_vit" in message
    assert "offline" in message and "model.pretrained=/path/to/file" in message
    assert "Name or service not known" in message


def test_timm_download_loads_what_timm_fetches(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(9)
    fetched = timm.create_model("test_vit", pretrained=False, img_size=32).state_dict()
    _no_network(monkeypatch)
    monkeypatch.setattr(timm_builder, "load_state_dict_from_hf", lambda *a, **k: dict(fetched))
    trunk, _ = build_model({**TINY, "pretrained": "TIMM"})
    assert torch.equal(
        trunk.model.state_dict()["blocks.5.mlp.fc2.weight"], fetched["blocks.5.mlp.fc2.weight"]
    )


def test_model_options_are_checked_and_passed_to_timm() -> None:
    trunk, _ = _tiny(drop_path_rate=0.25)
    assert trunk.model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.25)
    bad = [
        ({"img_size": 0}, r"model\.img_size must be a positive integer"),
        ({"drop_path_rate": 1.5}, r"model\.drop_path_rate must be a number in \[0, 1\)"),
        ({"pool": "cls"}, r"model\.pool must be one of timm, gap_gmp"),
        ({"img_sise": 32}, r"Did you mean 'img_size' for 'img_sise'"),
    ]
    for extra, message in bad:
        with pytest.raises(ModelConfigError, match=message):
            build_model({**TINY, "pretrained": "none", **extra})
    with pytest.raises(ModelConfigError, match=r"test_resnet does not take .*img_size"):
        build_model({"backbone": "timm/test_resnet", "pretrained": "none", "img_size": 32})


def test_a_timm_cnn_can_keep_the_gap_gmp_head() -> None:
    torch.manual_seed(0)
    cfg = {"backbone": "timm/test_resnet", "pretrained": "none", "pool": "gap_gmp"}
    trunk, embedder = build_model({**cfg, "embedding_size": 8})
    assert isinstance(embedder, EmbeddingHead) and embedder.in_channels == trunk.out_channels
    trunk.eval()
    with torch.no_grad():
        features = trunk(_images())
        assert torch.equal(features, trunk.model.forward_features(_images()))
    assert features.dim() == 4 and embedder(features).shape == (3, 8)
    vit, _ = build_model({**TINY, "pretrained": "none", "pool": "gap_gmp"})
    with pytest.raises(ModelConfigError, match=r"model\.pool=timm"):
        vit(_images())


def test_images_of_another_size_than_a_fixed_size_vit_are_refused() -> None:
    trunk, _ = build_model({**TINY, "backbone": "timm/test_vit3", "pretrained": "none"})
    assert trunk.input_size == (32, 32)
    with pytest.raises(
        ModelConfigError, match=r"takes 32x32 images, got 48x48.*data\.crop_size=32"
    ):
        trunk(_images(size=48))


def _solid(colour: tuple[int, int, int], size: tuple[int, int] = (50, 40)) -> Image.Image:
    return Image.fromarray(np.full((size[1], size[0], 3), colour, dtype=np.uint8))


def test_transforms_come_from_the_pretrained_config() -> None:
    test = build_transform("timm/test_vit", train=False)  # 160 px, crop_pct 0.95, mean/std 0.5
    resize, crop = test.transforms[:2]
    assert (resize.size, crop.size, str(resize.interpolation)) == (
        168,
        (160, 160),
        "InterpolationMode.BICUBIC",
    )
    out = test(_solid((255, 0, 51)))
    assert out.shape == (3, 160, 160)
    expected = torch.tensor([1.0, -1.0, 51 / 255 / 0.5 - 1.0]).view(3, 1, 1).expand(3, 160, 160)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)

    small = build_transform("timm/test_vit", train=False, crop_size=32)
    assert (small.transforms[0].size, small.transforms[1].size) == (33, (32, 32))
    train = build_transform("timm/test_vit", train=True, crop_size=32)
    assert train.transforms[0].scale == (0.2, 1.0)
    torch.manual_seed(0)
    assert train(_solid((10, 20, 30))).shape == (3, 32, 32)

    dino = build_transform("timm/vit_small_patch16_224.dino", train=False)
    normalize = dino.transforms[-1]
    assert (dino.transforms[0].size, dino.transforms[1].size) == (248, (224, 224))
    assert tuple(normalize.mean) == (0.485, 0.456, 0.406)
    assert tuple(normalize.std) == (0.229, 0.224, 0.225)
    custom = build_transform("timm/vit_small_patch16_224", train=False, resize_size=256)
    assert custom.transforms[0].size == 256 and tuple(custom.transforms[-1].mean) == (0.5, 0.5, 0.5)


def test_the_backbone_table_resolves_timm_names_without_listing_them() -> None:
    from pml_proxy_anchor.models import BACKBONES

    entry = BACKBONES["timm/test_vit"]
    assert entry.name == "timm/test_vit" and entry.weights_required and not entry.freeze_affine
    assert "timm/test_vit" not in BACKBONES and list(BACKBONES) == [
        "bn_inception",
        "resnet50",
        "small_cnn",
    ]
    with pytest.raises(KeyError):
        BACKBONES["vit"]


def test_a_timm_name_typo_is_named_before_other_keys_of_the_model_section() -> None:
    # The Omniglot config's small_cnn keys would be unknown to a timm trunk; the typo comes first.
    from pml_proxy_anchor.models import build_model

    cfg = {"backbone": "timm/vit_smal_patch16_224", "channels": [8], "pretrained": "none"}
    with pytest.raises(ModelConfigError, match="unknown timm model.*vit_small_patch16_224"):
        build_model(cfg)
