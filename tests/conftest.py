"""Fixtures shared by every test: the global random generators are seeded before each test.

Tests draw their own data from explicit generators (``torch.Generator().manual_seed(n)``,
``np.random.default_rng(n)``); what still uses a global generator (a module's weight
initialisation, a loss's proxies, a DataLoader's shuffling) then starts from the same state in
every run, whatever ran before, so no test passes or fails by chance.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

GLOBAL_SEED = 0


@pytest.fixture(autouse=True)
def seed_global_generators() -> None:
    """Seed ``random``, ``numpy`` and ``torch`` (CPU and any GPU) with ``GLOBAL_SEED``."""
    random.seed(GLOBAL_SEED)
    np.random.seed(GLOBAL_SEED)
    torch.manual_seed(GLOBAL_SEED)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``cuda`` marker (``pytest -m cuda`` runs only those tests)."""
    config.addinivalue_line(
        "markers",
        "cuda: needs a CUDA GPU; skipped (and counted as skipped) without one "
        "(reproduce/gpu_check.sh runs them with `pytest -m cuda`)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``cuda`` when ``torch.cuda.is_available()`` is False."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
