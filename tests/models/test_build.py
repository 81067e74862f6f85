"""build_model: (trunk, embedder) for each backbone from the model config section."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pml_proxy_anchor.models as models
from pml_proxy_anchor.models import (
    EmbeddingHead,
    ModelConfigError,
    WeightsNotFoundError,
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
    trunk, embedder = build_model({"backbone": "bn_inception", "embedding_size": 64})
    trunk.train()
    with torch.no_grad():
        out = embedder(trunk(torch.randn(2, 3, 64, 64)))
    assert out.shape == (2, 64)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2), rtol=0, atol=1e-5)


def test_resnet50_bn_freeze_freezes_affine_too():
    trunk, embedder = build_model({"backbone": "resnet50", "bn_freeze": True})
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
    with pytest.raises(ModelConfigError, match="'bn_inceptoin'.*Did you mean 'bn_inception'"):
        build_model({"backbone": "bn_inceptoin"})
    with pytest.raises(ModelConfigError, match="unknown backbone None"):
        build_model({"embedding_size": 512})


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ModelConfigError, match=r"\['embeding_size'\].*'embedding_size'"):
        build_model({"backbone": "resnet50", "embeding_size": 128})


def test_invalid_small_cnn_option():
    with pytest.raises(ModelConfigError, match="colours"):
        build_model({"backbone": "small_cnn", "colours": 3})


def test_missing_weight_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="bn_inception-52deb4733.pth"):
        build_model({"backbone": "bn_inception", "pretrained": str(tmp_path / "nope.pth")})
