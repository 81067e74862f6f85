"""BN freeze: eval mode survives .train(), running statistics stay fixed, affine freeze, warm-up."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from pml_proxy_anchor.models import (
    BNInception,
    freeze_batchnorm,
    is_batchnorm_frozen,
    resnet50_trunk,
    set_trainable,
    unfreeze_batchnorm,
)


def _small() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.BatchNorm1d(4 * 6 * 6)
    )


def _stats(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: buffer.clone()
        for name, buffer in module.named_buffers()
        if name.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }


def _assert_stats_equal(before: dict[str, torch.Tensor], module: nn.Module) -> None:
    after = _stats(module)
    assert after.keys() == before.keys() and len(after) > 0
    for name, value in before.items():
        assert torch.equal(after[name], value), name


def test_unfrozen_batchnorm_updates_statistics_control():
    model = _small().train()
    before = _stats(model)
    model(torch.randn(4, 3, 8, 8) + 1.0)
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])


def test_frozen_layers_stay_in_eval_mode_after_train():
    model = _small()
    assert freeze_batchnorm(model, freeze_affine=False) == 2
    model.train()
    assert not model[1].training and not model[4].training
    assert model.training and model[0].training  # the rest is in train mode
    assert is_batchnorm_frozen(model[1]) and not is_batchnorm_frozen(model[0])
    assert isinstance(model[1], nn.BatchNorm2d) and isinstance(model[4], nn.BatchNorm1d)


def test_train_mode_forward_keeps_running_statistics_and_equals_eval_output():
    model = _small()
    freeze_batchnorm(model, freeze_affine=False)
    before = _stats(model)
    x = torch.randn(4, 3, 8, 8) + 1.0
    model.train()
    out_train = model(x)
    _assert_stats_equal(before, model)
    model.eval()
    torch.testing.assert_close(out_train, model(x), rtol=0, atol=0)


def test_state_dict_and_parameter_objects_unchanged():
    model = _small()
    params_before = list(model.parameters())
    keys_before = list(model.state_dict())
    freeze_batchnorm(model, freeze_affine=True)
    assert all(a is b for a, b in zip(params_before, model.parameters(), strict=True))
    assert list(model.state_dict()) == keys_before


def test_freeze_affine_controls_gradients():
    trainable = _small()
    freeze_batchnorm(trainable, freeze_affine=False)
    frozen = _small()
    freeze_batchnorm(frozen, freeze_affine=True)
    x = torch.randn(2, 3, 8, 8)
    for model in (trainable, frozen):
        model.train()
        model(x).square().sum().backward()
    assert trainable[1].weight.requires_grad and trainable[1].weight.grad is not None
    assert not frozen[1].weight.requires_grad and not frozen[1].bias.requires_grad
    assert frozen[1].weight.grad is None and frozen[4].bias.grad is None
    assert frozen[0].weight.grad is not None  # convolutions still learn


def test_set_trainable_for_warm_up_keeps_frozen_affine_frozen():
    model = _small()
    freeze_batchnorm(model, freeze_affine=True)
    set_trainable(model, False)
    assert not any(p.requires_grad for p in model.parameters())
    set_trainable(model, True)
    assert model[0].weight.requires_grad and model[0].bias.requires_grad
    assert not model[1].weight.requires_grad and not model[4].bias.requires_grad


def test_end_of_warm_up_releases_frozen_affine_but_keeps_eval_mode():
    """The authors' warm-up ends with requires_grad=True on every trunk parameter."""
    model = _small()
    freeze_batchnorm(model, freeze_affine=True)
    set_trainable(model, False)
    set_trainable(model, True, release_frozen_affine=True)
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert is_batchnorm_frozen(model[1]) and not model[1].training
    set_trainable(model, True)  # released for good: a later call does not freeze them again
    assert model[1].weight.requires_grad and model[4].bias.requires_grad
    set_trainable(model, False, release_frozen_affine=True)
    assert not any(p.requires_grad for p in model.parameters())


def test_frozen_model_survives_deepcopy_and_pickling():
    model = _small()
    freeze_batchnorm(model, freeze_affine=True)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for clone in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        clone.train()
        before = _stats(clone)
        clone(torch.randn(2, 3, 8, 8))
        _assert_stats_equal(before, clone)
        assert not clone[1].training and not clone[1].weight.requires_grad


def test_unfreeze_restores_plain_batchnorm():
    model = _small()
    freeze_batchnorm(model, freeze_affine=True)
    assert unfreeze_batchnorm(model.train()) == 2
    assert type(model[1]) is nn.BatchNorm2d and type(model[4]) is nn.BatchNorm1d
    assert model[1].training and model[1].weight.requires_grad
    before = model[1].running_mean.clone()
    model(torch.randn(4, 3, 8, 8) + 1.0)
    assert not torch.equal(model[1].running_mean, before)


def test_unsupported_batchnorm_subclass_is_refused():
    class CustomBatchNorm(nn.BatchNorm2d):
        pass

    with pytest.raises(TypeError, match="CustomBatchNorm"):
        freeze_batchnorm(nn.Sequential(CustomBatchNorm(3)), freeze_affine=False)


def test_bn_inception_freeze_keeps_running_stats_fixed():
    model = BNInception()
    assert freeze_batchnorm(model, freeze_affine=False) == 69
    model.train()
    before = _stats(model)
    model(torch.randn(2, 3, 64, 64) * 50.0)
    _assert_stats_equal(before, model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(not bn.training and bn.weight.requires_grad for bn in bns)


def test_resnet50_freeze_keeps_stats_and_affine_fixed():
    model = resnet50_trunk(None)
    assert freeze_batchnorm(model, freeze_affine=True) == 53
    model.train()
    before = _stats(model)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    _assert_stats_equal(before, model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(not bn.training for bn in bns)
    assert all(not bn.weight.requires_grad and bn.weight.grad is None for bn in bns)
    assert model.conv1.weight.grad is not None
