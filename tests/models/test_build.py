"""build_model: (trunk, embedder) for each backbone from the model config section."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import pml_proxy_anchor.models as models
from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.models import (
    BACKBONES,
    Backbone,
    BNInception,
    EmbeddingHead,
    ModelConfigError,
    WeightsFileError,
    WeightsNotFoundError,
    WeightsRequiredError,
    build_model,
    is_batchnorm_frozen,
)


def _bns(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_bn_inception_pretrained_and_frozen(
    tmp_path, bn_inception_shapes, constant_state_dict, bn_leading_one
):
    path = tmp_path / "bn_inception-52deb4733.pth"
    torch.save(constant_state_dict(bn_inception_shapes, leading_one=bn_leading_one), path)
    cfg = {"backbone": "bn_inception", "embedding_size": 64, "pretrained": str(path)}
    trunk, embedder = build_model({**cfg, "bn_freeze": True})

    expected = {k: v for k, v in bn_inception_shapes.items() if not k.startswith("last_linear")}
    state = trunk.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == expected  # classifier dropped
    index = list(bn_inception_shapes).index("inception_5b_1x1.weight")
    assert torch.all(state["inception_5b_1x1.weight"] == index + 1)  # weights were loaded
    assert all(is_batchnorm_frozen(bn) and bn.weight.requires_grad for bn in _bns(trunk))
    assert isinstance(embedder, EmbeddingHead)
    assert (embedder.in_channels, embedder.embedding_size) == (1024, 64)


def test_bn_inception_embeddings_are_unit_vectors():
    trunk, embedder = build_model(
        {"backbone": "bn_inception", "embedding_size": 64, "pretrained": "none"}
    )
    trunk.train()
    with torch.no_grad():
        out = embedder(trunk(torch.randn(2, 3, 64, 64)))
    assert out.shape == (2, 64)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2), rtol=0, atol=1e-5)


def test_resnet50_bn_freeze_freezes_affine_too():
    trunk, embedder = build_model({"backbone": "resnet50", "bn_freeze": True, "pretrained": "none"})
    assert embedder.in_channels == 2048 and embedder.embedding_size == 512  # default size
    bns = _bns(trunk)
    assert len(bns) == 53
    assert all(is_batchnorm_frozen(bn) and not bn.weight.requires_grad for bn in bns)


def test_without_bn_freeze_batchnorm_trains():
    trunk, _ = build_model({"backbone": "small_cnn", "embedding_size": 8, "channels": 4})
    trunk.train()
    assert all(bn.training and not is_batchnorm_frozen(bn) for bn in _bns(trunk))


def test_small_cnn_takes_extra_keys_and_sizes_the_head():
    cfg = {"backbone": "small_cnn", "embedding_size": 16, "channels": 8, "blocks": 2}
    trunk, embedder = build_model({**cfg, "bn_freeze": True})
    assert trunk.out_channels == 8 and embedder.in_channels == 8
    assert all(is_batchnorm_frozen(bn) and bn.weight.requires_grad for bn in _bns(trunk))
    out = embedder(trunk(torch.randn(3, 1, 28, 28)))
    assert out.shape == (3, 16)
    assert models.SmallCNN is type(trunk)


def test_small_cnn_pretrained_round_trip(tmp_path):
    cfg = {"backbone": "small_cnn", "embedding_size": 4, "channels": 4, "blocks": 1}
    source, _ = build_model(cfg)
    torch.save(source.state_dict(), tmp_path / "small.pth")
    loaded, _ = build_model({**cfg, "pretrained": str(tmp_path / "small.pth")})
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_unknown_backbone_suggests_the_closest():
    with pytest.raises(ModelConfigError, match="'bn_inceptoin'.*did you mean 'bn_inception'"):
        build_model({"backbone": "bn_inceptoin"})
    with pytest.raises(ModelConfigError, match="model.backbone is not set.*bn_inception"):
        build_model({"embedding_size": 512})
    with pytest.raises(ModelConfigError, match="model.backbone must be a name"):
        build_model({"backbone": 3})


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ModelConfigError, match=r"\['embeding_size'\].*'embedding_size'"):
        build_model({"backbone": "resnet50", "embeding_size": 128, "pretrained": "none"})


def test_invalid_small_cnn_option():
    with pytest.raises(ModelConfigError, match="colours"):
        build_model({"backbone": "small_cnn", "colours": 3})


def test_missing_weight_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="bn_inception-52deb4733.pth"):
        build_model({"backbone": "bn_inception", "pretrained": str(tmp_path / "nope.pth")})


# ------------------------------------------------------------ backbone table and pretrained policy


def test_backbones_are_one_table_of_records():
    assert list(BACKBONES) == ["bn_inception", "resnet50", "small_cnn"]
    assert all(
        isinstance(entry, Backbone) and entry.name == name for name, entry in BACKBONES.items()
    )
    paper = {name for name, entry in BACKBONES.items() if entry.weights_required}
    assert paper == {"bn_inception", "resnet50"}


@pytest.mark.parametrize(
    ("backbone", "weight_file"),
    [("bn_inception", "bn_inception-52deb4733.pth"), ("resnet50", "resnet50-0676ba61.pth")],
)
def test_paper_backbone_without_pretrained_is_refused(backbone, weight_file):
    for cfg in ({"backbone": backbone}, {"backbone": backbone, "pretrained": None}):
        with pytest.raises(WeightsRequiredError) as info:
            build_model(cfg)
        message = str(info.value)
        assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
        assert f"model.pretrained is not set for model.backbone={backbone!r}" in message
        assert weight_file in message and "docs/paper.md section 2" in message
        assert "model.pretrained=none" in message


@pytest.mark.parametrize("value", ["none", "None", "NONE", " none "])
def test_explicit_none_means_random_weights(value):
    torch.manual_seed(0)
    trunk, _ = build_model({"backbone": "bn_inception", "pretrained": value})
    torch.manual_seed(0)
    assert torch.equal(trunk.conv1_7x7_s2.weight, BNInception().conv1_7x7_s2.weight)


def test_small_cnn_takes_null_and_none_as_random_weights():
    cfg = {"backbone": "small_cnn", "channels": 4, "blocks": 1}
    for pretrained in (None, "none"):
        trunk, _ = build_model({**cfg, "pretrained": pretrained})
        assert trunk.out_channels == 4


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"pretrained": 5}, r"model.pretrained must be the path .*got 5 \(int\)"),
        ({"pretrained": True}, r"model.pretrained must be the path .*got True \(bool\)"),
        ({"pretrained": ["a.pth"]}, r"model.pretrained must be the path"),
        ({"pretrained": "  "}, r"model.pretrained is an empty string"),
        ({"embedding_size": 0}, r"model.embedding_size must be a positive integer.*got 0"),
        ({"embedding_size": 2.5}, r"model.embedding_size must be a positive integer.*got 2.5"),
        ({"embedding_size": "512"}, r"model.embedding_size .*got '512'"),
        ({"embedding_size": True}, r"model.embedding_size .*got True"),
        ({"bn_freeze": "false"}, r"model.bn_freeze must be true or false; got 'false'"),
        ({"normalize": 1}, r"model.normalize must be true or false; got 1"),
        ({"channels": -1}, r"invalid SmallCNN option"),
    ],
)
def test_bad_model_values_are_refused_naming_the_key(cfg, match):
    base = {"backbone": "small_cnn", "channels": 4, "blocks": 1}
    with pytest.raises(ModelConfigError, match=match) as info:
        build_model({**base, **cfg})
    assert isinstance(info.value, UserError)


def test_model_section_must_be_a_mapping():
    with pytest.raises(ModelConfigError, match="must be a mapping"):
        build_model(["bn_inception"])


# ------------------------------------------------------------------------ unusable weight files


def _bad_weight_files(tmp_path: Path) -> dict[str, Path]:
    good = io.BytesIO()
    torch.save({"conv1_7x7_s2.weight": torch.zeros(64, 3, 7, 7)}, good)
    data = good.getvalue()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "random": np.random.default_rng(0).bytes(4096),
        "text": b"<html>404 Not Found</html>",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.pth"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "text"])
def test_damaged_weight_file_names_the_file_and_says_download_again(tmp_path, kind):
    path = _bad_weight_files(tmp_path)[kind]
    with pytest.raises(WeightsFileError) as info:
        build_model({"backbone": "bn_inception", "pretrained": str(path)})
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert str(path) in message and "Fix: download the file again" in message
    assert "bn_inception-52deb4733.pth" in message
    for internal in ("miniz", "PytorchStreamReader", "UnpicklingError", "EOFError", "Weights only"):
        assert internal not in message
    if kind == "empty":
        assert "empty (0 bytes" in message


def test_directory_as_weight_file_is_refused(tmp_path):
    with pytest.raises(WeightsFileError, match=r"is a directory.*the file inside it") as info:
        build_model({"backbone": "resnet50", "pretrained": str(tmp_path)})
    assert str(tmp_path) in str(info.value)


def test_pickled_model_instead_of_state_dict_is_refused(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(WeightsFileError, match=r"objects other than tensors.*state_dict\(\)"):
        build_model({"backbone": "small_cnn", "channels": 4, "pretrained": str(path)})


def test_non_finite_weights_are_refused(tmp_path):
    cfg = {"backbone": "small_cnn", "channels": 4, "blocks": 1}
    source, _ = build_model(cfg)
    state_dict = source.state_dict()
    state_dict["features.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state_dict, tmp_path / "nan.pth")
    with pytest.raises(WeightsFileError, match=r"NaN or infinite values.*features\.0\.weight"):
        build_model({**cfg, "pretrained": str(tmp_path / "nan.pth")})


def test_missing_weight_file_is_a_user_error(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFoundError) as info:
        build_model({"backbone": "resnet50", "pretrained": str(missing)})
    assert isinstance(info.value, UserError) and isinstance(info.value, FileNotFoundError)
    assert str(missing) in str(info.value) and "resnet50-0676ba61.pth" in str(info.value)
