"""The authors' warm-up: trunk frozen for ``warm`` epochs, then every trunk parameter trains.

The authors' code/train.py freezes every parameter outside the embedding layer and the loss at
epoch 0 and sets ``requires_grad = True`` on all of them at ``epoch == args.warm`` (0-based), so
the BatchNorm affine parameters that ResNet-50's ``bn_freeze`` froze at build time train from
epoch ``warm + 1`` (1-based) on, while the BatchNorm layers stay in eval mode.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from pml_proxy_anchor.losses import ProxyAnchorLoss
from pml_proxy_anchor.models import EmbeddingHead, build_model, freeze_batchnorm, set_trainable
from pml_proxy_anchor.training import builders
from pml_proxy_anchor.training.hooks import WarmupFreeze
from pml_proxy_anchor.training.trainer import ProxyAnchorTrainer

RESNET50_BN_AFFINE_ELEMENTS = 53_120  # weight + bias of ResNet-50's 53 BatchNorm layers


def _bns(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def _affine(module: nn.Module) -> list[nn.Parameter]:
    return [p for bn in _bns(module) for p in (bn.weight, bn.bias)]


def _optimizer_cfg(warm_epochs: int) -> object:
    return OmegaConf.create(
        {
            "optimizer": {
                "name": "AdamW",
                "lr": 1e-2,
                "weight_decay": 1e-4,
                "proxy_lr_multiplier": 100.0,
                "proxy_weight_decay": None,
            },
            "scheduler": {"step": 10, "gamma": 0.5},
            "train": {"warm_epochs": warm_epochs},
        }
    )


@pytest.fixture(scope="module")
def resnet50() -> nn.Module:
    torch.manual_seed(0)
    trunk, _ = build_model({"backbone": "resnet50", "pretrained": "none", "bn_freeze": True})
    return trunk


def test_resnet50_bn_affine_frozen_during_warmup_then_trainable(resnet50: nn.Module) -> None:
    affine = _affine(resnet50)
    assert sum(p.numel() for p in affine) == RESNET50_BN_AFFINE_ELEMENTS
    assert not any(p.requires_grad for p in affine)  # frozen when built, as in the authors' code
    warmup = WarmupFreeze(resnet50, warm_epochs=5)  # cub200_resnet50: warm 5
    try:
        for epoch in range(1, 6):
            warmup.apply(epoch)
            assert not any(p.requires_grad for p in resnet50.parameters()), epoch
        warmup.apply(6)
        assert all(p.requires_grad for p in resnet50.parameters())
        resnet50.train()
        assert not any(bn.training for bn in _bns(resnet50))  # BN stays in eval mode
    finally:  # back to the state as built
        set_trainable(resnet50, True)
        freeze_batchnorm(resnet50, freeze_affine=True)


def test_optimizer_holds_the_bn_affine_parameters_frozen_at_build(resnet50: nn.Module) -> None:
    embedder = EmbeddingHead(2048, 8)
    loss = ProxyAnchorLoss(num_classes=3, embedding_size=8)
    optimizers, _ = builders.build_optimizers(
        _optimizer_cfg(5), {"trunk": resnet50, "embedder": embedder}, loss
    )
    held = {id(p) for group in optimizers["trunk_optimizer"].param_groups for p in group["params"]}
    assert {id(p) for p in resnet50.parameters()} <= held
    assert {id(p) for p in _affine(resnet50)} <= held


def test_without_warmup_a_bn_affine_freeze_lasts_the_whole_run() -> None:
    trunk = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    freeze_batchnorm(trunk, freeze_affine=True)
    warmup = WarmupFreeze(trunk, warm_epochs=0)
    for epoch in (1, 2, 60):
        warmup.apply(epoch)
        assert trunk[0].weight.requires_grad and not trunk[1].weight.requires_grad


def test_resumed_run_gets_the_flags_of_an_uninterrupted_one() -> None:
    def fresh() -> nn.Sequential:
        trunk = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        freeze_batchnorm(trunk, freeze_affine=True)
        return trunk

    continuous, resumed = fresh(), fresh()
    warm = WarmupFreeze(continuous, warm_epochs=2)
    for epoch in (1, 2, 3, 4):
        warm.apply(epoch)
    WarmupFreeze(resumed, warm_epochs=2).apply(4)
    flags = [p.requires_grad for p in continuous.parameters()]
    assert flags == [p.requires_grad for p in resumed.parameters()] == [True] * 4


def test_as_after_warmup_shows_the_released_flags_and_restores_them() -> None:
    trunk = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    freeze_batchnorm(trunk, freeze_affine=True)
    warmup = WarmupFreeze(trunk, warm_epochs=1)
    with warmup.as_after_warmup():
        assert all(p.requires_grad for p in trunk.parameters())
    assert trunk[0].weight.requires_grad and not trunk[1].weight.requires_grad
    assert trunk[1].frozen_affine
    with WarmupFreeze(trunk, warm_epochs=0).as_after_warmup():
        assert not trunk[1].weight.requires_grad  # no warm-up: the affine freeze stays


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_bad_warm_epochs_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="warm_epochs must be a non-negative integer"):
        WarmupFreeze(nn.Linear(2, 2), bad)  # type: ignore[arg-type]


class _SmallTrunk(nn.Sequential):
    out_channels = 4

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3))


def test_bn_affine_changes_after_a_step_of_epoch_warm_plus_1_and_not_before() -> None:
    """Through PML's training loop (ProxyAnchorTrainer) with the run's optimizers."""
    torch.manual_seed(0)
    trunk = _SmallTrunk()
    freeze_batchnorm(trunk, freeze_affine=True)  # what bn_freeze does for ResNet-50
    embedder = EmbeddingHead(4, 8)
    loss = ProxyAnchorLoss(num_classes=4, embedding_size=8)
    models = {"trunk": trunk, "embedder": embedder}
    optimizers, _ = builders.build_optimizers(_optimizer_cfg(1), models, loss)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 8, 8, generator=generator)
    labels = torch.arange(4).repeat(2)
    bn = trunk[1]
    snapshots: dict[int, dict[str, torch.Tensor]] = {
        0: {k: v.detach().clone() for k, v in trunk.state_dict().items()}
    }

    def end_of_epoch(trainer: ProxyAnchorTrainer) -> bool:
        snapshots[trainer.epoch] = {k: v.detach().clone() for k, v in trunk.state_dict().items()}
        return True

    trainer = ProxyAnchorTrainer(
        models=models,
        optimizers=optimizers,
        batch_size=8,
        loss_funcs={"metric_loss": loss},
        dataset=torch.utils.data.TensorDataset(images, labels),
        iterations_per_epoch=1,
        data_device=torch.device("cpu"),
        dataloader_num_workers=0,
        freeze_trunk_batchnorm=True,
        end_of_epoch_hook=end_of_epoch,
        seed=0,
        warm_epochs=1,
        progress=False,
    )
    trainer.train(1, 2)

    before, warm, after = snapshots[0], snapshots[1], snapshots[2]
    for key in ("1.weight", "1.bias", "0.weight", "3.weight"):
        assert torch.equal(warm[key], before[key]), f"{key} changed during the warm-up"
        assert not torch.equal(after[key], warm[key]), f"{key} did not train in epoch 2"
    for key in ("1.running_mean", "1.running_var"):
        assert torch.equal(after[key], before[key]), f"{key} changed: BN left eval mode"
    assert not bn.training and bn.weight.requires_grad
