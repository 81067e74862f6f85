"""Every sweep test leaves Hydra's global state as it found it: cleared."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hydra.core.global_hydra import GlobalHydra


@pytest.fixture(autouse=True)
def hydra_state_cleared() -> Iterator[None]:
    yield
    # plan_sweep keeps Hydra set up for launch(); a test that plans without launching must not
    # leave it to the next test (load_config inside a running Hydra job is tested elsewhere).
    GlobalHydra.instance().clear()
