"""Fixtures of the distributed tests: the multi-process runs happen once per session (2 and 3
ranks) and the tests compare what the ranks recorded with single-process references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from dist_workers import die_program, errors, program, run_ranks


def _collect(out: Path, world: int) -> list[dict[str, Any]]:
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Any]:
    """Two spawned jobs, each starting its processes once (start-up dominates the cost):

    - 2 ranks: the equivalence checks, then one sharded training step saved to a checkpoint;
    - 3 ranks: the equivalence checks, resume from that checkpoint (re-sharded 2 -> 3) and one
      more step; then rank 2 dies and ranks 0 and 1 record the error of their next collective.
    """
    out2, out3 = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("three")
    ckpt = out2 / "last.pt"
    codes = run_ranks(program, 2, out2, ("equivalence", "save"), str(ckpt))
    assert codes == [0, 0], f"rank exit codes {codes}\n{errors(out2)}"
    codes = run_ranks(die_program, 3, out3, ("equivalence", "resume"), str(ckpt))
    assert codes == [0, 0, 3], f"rank exit codes {codes}\n{errors(out3)}"
    return {"ckpt": ckpt, 2: _collect(out2, 2), 3: _collect(out3, 3)}


@pytest.fixture(params=[2, 3], ids=["2proc", "3proc"])
def equivalence_run(request: pytest.FixtureRequest, runs: dict[int, Any]):
    return request.param, runs[request.param]


@pytest.fixture
def checkpoint_runs(runs: dict[int, Any]):
    """(checkpoint file, what the 2 saving ranks recorded, what the 3 resuming ranks recorded)."""
    return runs["ckpt"], runs[2], runs[3]
