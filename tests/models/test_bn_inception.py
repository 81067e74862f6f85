"""BN-Inception: names/shapes of the pretrainedmodels file, wiring, forward, weight loading."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pml_proxy_anchor.models import (
    BNInception,
    WeightsFileError,
    WeightsMismatchError,
    WeightsNotFoundError,
    build_model,
    load_bn_inception_weights,
)

_STATS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def model() -> BNInception:
    torch.manual_seed(0)
    return BNInception().eval()


def test_state_dict_names_and_shapes_equal_the_weight_file(model, bn_inception_shapes):
    actual = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert sorted(set(bn_inception_shapes) - set(actual)) == []  # missing
    assert sorted(set(actual) - set(bn_inception_shapes)) == []  # unexpected
    assert actual == bn_inception_shapes
    assert len(actual) == 485
    assert sum(key.endswith("num_batches_tracked") for key in actual) == 69


def test_parameters_and_buffers_split_as_in_the_file(model, bn_inception_shapes):
    params = {name for name, _ in model.named_parameters()}
    buffers = {name for name, _ in model.named_buffers()}
    assert buffers == {key for key in bn_inception_shapes if key.endswith(_STATS)}
    assert params == set(bn_inception_shapes) - buffers


def test_batchnorm_eps_and_ceil_mode_pooling(model):
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 69
    assert all(bn.eps == 1e-5 and bn.affine and bn.track_running_stats for bn in bns)
    pools = [m for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert len(pools) == 12  # pool1, pool2 and one per inception block
    assert all(pool.ceil_mode for pool in pools)


def test_every_batchnorm_has_the_authors_momentum_0_9():
    """The authors' code/net/bn_inception.py passes momentum=0.9 to all 69 BatchNorm layers."""
    for bn_freeze in (False, True):
        trunk, _ = build_model(
            {"backbone": "bn_inception", "pretrained": "none", "bn_freeze": bn_freeze}
        )
        bns = [m for m in trunk.modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(bns) == 69
        assert [bn.momentum for bn in bns] == [0.9] * 69


def test_momentum_0_9_moves_running_stats_90_percent_to_the_batch():
    net = BNInception().train()
    bn = net.conv1_7x7_s2_bn
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(4, 64, 5, 5, generator=generator) * 3.0 + 2.0
    with torch.no_grad():
        bn(features)
    batch_mean = features.mean(dim=(0, 2, 3))
    batch_var = features.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_mean, 0.9 * batch_mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(bn.running_var, 0.1 + 0.9 * batch_var, rtol=1e-6, atol=1e-5)


def test_forward_224_gives_the_last_feature_map(model):
    x = torch.randn(2, 3, 224, 224) * 60.0  # BGR 0..255 minus mean has about this range
    with torch.no_grad():
        features = model(x)
        logits = model.logits(features)
    assert features.shape == (2, 1024, 7, 7)
    assert torch.isfinite(features).all()
    assert (features >= 0).all()  # every branch of 5b ends in a ReLU or a max-pool of ReLUs
    assert logits.shape == (2, 1000)


# Independent reference written from the pretrainedmodels BN-Inception description:
# (block, has a 1x1 branch, stride, pool of the pool branch).
_REFERENCE_BLOCKS = (
    ("3a", True, 1, "avg"),
    ("3b", True, 1, "avg"),
    ("3c", False, 2, "max"),
    ("4a", True, 1, "avg"),
    ("4b", True, 1, "avg"),
    ("4c", True, 1, "avg"),
    ("4d", True, 1, "avg"),
    ("4e", False, 2, "max"),
    ("5a", True, 1, "avg"),
    ("5b", True, 1, "max"),
)


def _reference_features(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    def cbr(name: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        weight = sd[f"{name}.weight"]
        y = F.conv2d(x, weight, sd[f"{name}.bias"], stride=stride, padding=weight.shape[-1] // 2)
        bn = f"{name}_bn."
        y = F.batch_norm(
            y,
            sd[bn + "running_mean"],
            sd[bn + "running_var"],
            sd[bn + "weight"],
            sd[bn + "bias"],
            training=False,
            eps=1e-5,
        )
        return F.relu(y)

    x = F.max_pool2d(cbr("conv1_7x7_s2", x, 2), 3, 2, ceil_mode=True)
    x = F.max_pool2d(cbr("conv2_3x3", cbr("conv2_3x3_reduce", x)), 3, 2, ceil_mode=True)
    for name, has_1x1, stride, pool in _REFERENCE_BLOCKS:
        p = f"inception_{name}_"
        outs = [cbr(p + "1x1", x)] if has_1x1 else []
        outs.append(cbr(p + "3x3", cbr(p + "3x3_reduce", x), stride))
        double = cbr(p + "double_3x3_1", cbr(p + "double_3x3_reduce", x))
        outs.append(cbr(p + "double_3x3_2", double, stride))
        if stride == 2:
            outs.append(F.max_pool2d(x, 3, 2, ceil_mode=True))
        elif pool == "avg":
            pooled = F.avg_pool2d(x, 3, 1, 1, ceil_mode=True, count_include_pad=True)
            outs.append(cbr(p + "pool_proj", pooled))
        else:
            outs.append(cbr(p + "pool_proj", F.max_pool2d(x, 3, 1, 1, ceil_mode=True)))
        x = torch.cat(outs, dim=1)
    return x


def test_forward_matches_reference_wiring(model):
    """Branch order, strides and pool types; 100x100 makes floor and ceil pooling differ."""
    net = copy.deepcopy(model).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2, generator=generator)
            bn.running_var.uniform_(0.5, 2.0, generator=generator)
            bn.weight.uniform_(0.5, 1.5, generator=generator)
            bn.bias.uniform_(-0.2, 0.2, generator=generator)
        x = torch.randn(1, 3, 100, 100, dtype=torch.float64, generator=generator)
        actual = net(x)
        expected = _reference_features(net.state_dict(), x)
    assert actual.shape == expected.shape == (1, 1024, 3, 3)
    scale = expected.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-9 * scale)


def test_remove_classifier_drops_last_linear():
    net = BNInception()
    net.remove_classifier()
    assert not any(key.startswith("last_linear") for key in net.state_dict())
    with pytest.raises(RuntimeError, match="no ImageNet classifier"):
        net.logits(torch.zeros(1, 1024, 7, 7))


# ---------------------------------------------------------------- weight loading


def test_loads_file_with_leading_singleton_dims(
    tmp_path, bn_inception_shapes, constant_state_dict, bn_leading_one
):
    state_dict = constant_state_dict(bn_inception_shapes, leading_one=bn_leading_one)
    assert state_dict["conv1_7x7_s2_bn.weight"].shape == (1, 64)  # stored as (1, C)
    conv1 = torch.randn(64, 3, 7, 7)
    state_dict["conv1_7x7_s2.weight"] = conv1
    path = tmp_path / "bn_inception-52deb4733.pth"
    torch.save(state_dict, path)

    net = load_bn_inception_weights(BNInception(), path)

    loaded = net.state_dict()
    torch.testing.assert_close(loaded["conv1_7x7_s2.weight"], conv1, rtol=0, atol=0)
    for index, key in enumerate(bn_inception_shapes):
        if key == "conv1_7x7_s2.weight":
            continue
        assert list(loaded[key].shape) == bn_inception_shapes[key]
        assert torch.all(loaded[key] == index + 1), key


def test_file_without_num_batches_tracked_loads(tmp_path, bn_inception_shapes, constant_state_dict):
    """Files written before PyTorch 0.4.1 have no num_batches_tracked buffers."""
    state_dict = constant_state_dict(bn_inception_shapes)
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    assert len(state_dict) == 485 - 69
    torch.save(state_dict, tmp_path / "old.pth")
    net = load_bn_inception_weights(BNInception(), tmp_path / "old.pth")
    assert net.conv1_7x7_s2_bn.num_batches_tracked.item() == 0
    assert torch.all(
        net.last_linear.bias == list(bn_inception_shapes).index("last_linear.bias") + 1
    )


def test_mismatching_file_lists_missing_unexpected_and_shapes(
    tmp_path, bn_inception_shapes, constant_state_dict
):
    state_dict = constant_state_dict(bn_inception_shapes)
    del state_dict["inception_4a_1x1.weight"], state_dict["inception_5b_pool_proj_bn.running_var"]
    state_dict["fc.weight"] = torch.zeros(1000, 2048)
    state_dict["last_linear.weight"] = torch.zeros(10, 1024)
    torch.save(state_dict, tmp_path / "wrong.pth")
    net = BNInception()
    before = net.conv1_7x7_s2.weight.clone()

    with pytest.raises(WeightsMismatchError) as info:
        load_bn_inception_weights(net, tmp_path / "wrong.pth")

    error = info.value
    assert isinstance(error, ValueError)
    assert error.missing == ["inception_4a_1x1.weight", "inception_5b_pool_proj_bn.running_var"]
    assert error.unexpected == ["fc.weight"]
    assert error.shape_mismatches == [("last_linear.weight", (10, 1024), (1000, 1024))]
    message = str(error)
    for text in ("wrong.pth", "inception_4a_1x1.weight", "fc.weight", "last_linear.weight"):
        assert text in message
    assert "bn_inception-52deb4733.pth" in message
    assert torch.equal(net.conv1_7x7_s2.weight, before)  # nothing loaded


def test_data_parallel_prefix_gets_a_hint(tmp_path, bn_inception_shapes, constant_state_dict):
    state_dict = {f"module.{k}": v for k, v in constant_state_dict(bn_inception_shapes).items()}
    torch.save(state_dict, tmp_path / "dp.pth")
    with pytest.raises(WeightsMismatchError, match="start with 'module.'") as info:
        load_bn_inception_weights(BNInception(), tmp_path / "dp.pth")
    assert len(info.value.missing) == 485 - 69
    assert len(info.value.unexpected) == 485


def test_missing_file_says_where_to_get_it(tmp_path):
    path = tmp_path / "weights" / "bn_inception.pth"
    with pytest.raises(WeightsNotFoundError) as info:
        load_bn_inception_weights(BNInception(), path)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(path) in message
    assert "bn_inception-52deb4733.pth" in message
    assert "data.lip6.fr/cadene/pretrainedmodels/" in message


def test_unreadable_or_non_state_dict_file(tmp_path, bn_inception_shapes, constant_state_dict):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(
        WeightsFileError, match=r"BN-Inception weight file .*garbage.pth.* cannot be read"
    ):
        load_bn_inception_weights(BNInception(), garbage)

    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": constant_state_dict(bn_inception_shapes), "epoch": 3}, checkpoint)
    with pytest.raises(WeightsFileError, match="does not hold a plain state_dict"):
        load_bn_inception_weights(BNInception(), checkpoint)
