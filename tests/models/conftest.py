"""Shared fixtures of the model tests: the expected BN-Inception state_dict and synthetic files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "bn_inception_state_dict_shapes.json"
_BN_TENSORS = (".weight", ".bias", ".running_mean", ".running_var")


@pytest.fixture(scope="session")
def bn_inception_shapes() -> dict[str, list[int]]:
    """Names and shapes of the pretrainedmodels file bn_inception-52deb4733.pth (485 entries)."""
    return json.loads(FIXTURE.read_text())


def _constant_state_dict(
    shapes: dict[str, list[int]], leading_one: Callable[[str], bool] = lambda key: False
) -> dict[str, torch.Tensor]:
    """A state_dict with the given names/shapes where entry ``i`` is filled with ``i + 1``.

    Tensors are ``expand``-ed views of one element, so the saved file stays tiny. Keys selected by
    ``leading_one`` get an extra leading dimension of size 1, as in the real BN-Inception file.
    """
    state_dict: dict[str, torch.Tensor] = {}
    for index, (key, shape) in enumerate(shapes.items()):
        if key.endswith("num_batches_tracked"):
            state_dict[key] = torch.tensor(index + 1, dtype=torch.long)
            continue
        shape = [1, *shape] if leading_one(key) else shape
        state_dict[key] = torch.full((1,) * len(shape), float(index + 1)).expand(*shape)
    return state_dict


def _is_bn_tensor(key: str) -> bool:
    return "_bn." in key and key.endswith(_BN_TENSORS)


@pytest.fixture(scope="session")
def constant_state_dict() -> Callable[..., dict[str, torch.Tensor]]:
    """The function that makes synthetic state_dicts (see ``_constant_state_dict``)."""
    return _constant_state_dict


@pytest.fixture(scope="session")
def bn_leading_one() -> Callable[[str], bool]:
    """Selects BatchNorm weights, biases and running statistics: stored as (1, C) in test files."""
    return _is_bn_tensor
