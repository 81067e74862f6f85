"""A rank that dies or hangs: the other ranks stop with RankFailureError (a clear message) instead
of waiting forever; the process group timeout bounds the wait."""

from __future__ import annotations

import torch
from dist_workers import errors, hang_program, run_ranks

TIMEOUT_S = 2.0


def _check_message(failure: dict, rank: int, world: int) -> None:
    assert failure["type"] == "RankFailureError"
    assert f"rank {rank} of {world}" in failure["error"] and "Another rank" in failure["error"]
    assert "resume from the last checkpoint" in failure["error"]


def test_ranks_stop_when_a_rank_dies(runs) -> None:
    """In the 3-rank job, rank 2 exits (code 3) after its work: ranks 0 and 1 raise and exit 0."""
    for rank in (0, 1):
        _check_message(runs[3][rank]["failure"], rank, 3)


def test_rank_stops_when_a_rank_hangs(tmp_path) -> None:
    # the join deadline is far above TIMEOUT_S: a survivor that waits forever fails the test
    codes = run_ranks(
        hang_program, 2, tmp_path, TIMEOUT_S, timeout=90.0, stop_rest_after_rank0=True
    )
    assert codes[0] == 0, (
        f"the surviving rank did not stop: exit code {codes[0]}\n{errors(tmp_path)}"
    )
    _check_message(torch.load(tmp_path / "rank0.pt", weights_only=False)["failure"], 0, 2)
