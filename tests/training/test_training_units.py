"""Checkpoints, RNG state, hooks and device resolution, each on constructed cases."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pml_proxy_anchor.training import CheckpointNotFoundError, DeviceNotAvailableError, checkpoint
from pml_proxy_anchor.training.device import resolve_device
from pml_proxy_anchor.training.hooks import GradValueClipper, WarmupFreeze
from pml_proxy_anchor.training.seed import derive_seed, rng_state, seed_epoch, set_rng_state


def _draw() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    seed_epoch(5, 2)
    _draw()
    path = checkpoint.save_atomic(
        {"format": checkpoint.FORMAT_VERSION, "rng": rng_state()}, tmp_path / "c" / "last.pt"
    )
    expected = _draw()
    _draw()
    set_rng_state(checkpoint.load(path)["rng"])  # loads with weights_only=True
    assert _draw() == expected


def test_epoch_seeds_differ_by_epoch_and_repeat_by_seed() -> None:
    assert derive_seed(1, 1) == derive_seed(1, 1)
    assert len({derive_seed(1, e) for e in range(1, 50)}) == 49
    assert derive_seed(1, 2) != derive_seed(2, 2)


def test_atomic_save_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "epoch": 1}, path)
    checkpoint.save_atomic({"format": checkpoint.FORMAT_VERSION, "epoch": 2}, path)
    assert checkpoint.load(path)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_missing_checkpoint_names_the_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match=r"best\.pt.*checkpoints/last\.pt"):
        checkpoint.find_checkpoint(tmp_path, "best")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a pml-proxy-anchor checkpoint"):
        checkpoint.load(tmp_path / "other.pt")


def test_warmup_freezes_the_trunk_then_releases_all_of_it() -> None:
    """As in the authors' train.py: after the warm-up every trunk parameter trains (the BN
    affine freeze itself is pinned in tests/training/test_warmup_unfreeze.py)."""
    trunk = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    warmup = WarmupFreeze(trunk, warm_epochs=2)
    warmup.apply(1)
    assert not any(p.requires_grad for p in trunk.parameters())
    warmup.apply(2)
    assert not trunk[0].weight.requires_grad
    warmup.apply(3)
    assert all(p.requires_grad for p in trunk.parameters())


def test_grad_value_clipper_clips_elementwise_and_skips_params_without_grad() -> None:
    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))
    a.grad = torch.tensor([-25.0, 3.0, 10.5])
    GradValueClipper([a, b], 10.0)()
    assert torch.equal(a.grad, torch.tensor([-10.0, 3.0, 10.0]))
    assert b.grad is None


def test_device_auto_and_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceNotAvailableError, match=r"no usable CUDA.*train\.device=cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceNotAvailableError, match=r"^--device 'cuda' asks.*--device cpu"):
        resolve_device("cuda", what="--device")


def test_unknown_device_name_is_refused() -> None:
    with pytest.raises(DeviceNotAvailableError, match="not a device name"):
        resolve_device("tpu0")
    with pytest.raises(DeviceNotAvailableError, match=r"^device='tpu0' is not a device name"):
        resolve_device("tpu0", what="device")


def test_default_run_dir_is_one_folder_for_a_timm_backbone() -> None:
    from omegaconf import OmegaConf

    from pml_proxy_anchor.training.run import default_run_dir

    cfg = OmegaConf.create({"data": {"name": "cub200"}, "model": {"backbone": "bn_inception"}})
    assert default_run_dir(cfg) == Path("runs/cub200_bn_inception")
    cfg.model.backbone = "timm/vit_small_patch16_224.dino"
    assert default_run_dir(cfg) == Path("runs/cub200_timm_vit_small_patch16_224_dino")
