"""Checkpoints hold the full proxy matrix whatever the sharding: saved from 2 ranks (gathered),
resumed on 3 ranks and on 1 process (re-sharded), with identical proxies and continued training
equal to a single-process run."""

from __future__ import annotations

import pytest
import torch
from dist_workers import checkpoint_batches, global_batch, make_loss, train_step

from pml_proxy_anchor.distributed import (
    ShardedProxyAnchorLoss,
    full_loss_state_dict,
    full_optimizer_state_dict,
    load_full_optimizer_state_dict,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


def _single_process_steps(ckpt_state: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Proxies after step 0 and after step 1 of one process (plain ProxyAnchorLoss + AdamW)."""
    batch = global_batch(2)
    loss = make_loss(batch)
    opt = torch.optim.AdamW(loss.parameters(), lr=0.01)
    steps = checkpoint_batches(batch, batch["inputs"] @ batch["weight"].T, 1, 0)
    train_step(loss, *steps[0], opt)
    after0 = loss.proxies.detach().clone()
    if ckpt_state is not None:  # resume from the 2-rank file instead of the in-memory state
        loss.load_state_dict(ckpt_state["loss"])
        opt.load_state_dict(ckpt_state["opt"])
    train_step(loss, *steps[1], opt)
    return after0, loss.proxies.detach().clone()


def test_save_gathers_the_full_matrix(checkpoint_runs) -> None:
    ckpt, saved_ranks, _ = checkpoint_runs
    state = torch.load(ckpt, weights_only=True)
    full = state["loss"]["proxies"]
    assert full.shape == (global_batch(2)["num_classes"], global_batch(2)["proxies"].shape[1])
    shards = sorted(saved_ranks, key=lambda r: r["lo"])
    assert torch.equal(full, torch.cat([r["saved_shard"] for r in shards]))
    moments = state["opt"]["state"][0]
    assert moments["exp_avg"].shape == full.shape and moments["exp_avg_sq"].shape == full.shape
    after0, _ = _single_process_steps()
    torch.testing.assert_close(full, after0, **TOL)


def test_resume_on_three_ranks_reshards_and_continues(checkpoint_runs) -> None:
    ckpt, _, resumed = checkpoint_runs
    state = torch.load(ckpt, weights_only=True)
    full = state["loss"]["proxies"]
    for result in resumed:
        assert torch.equal(result["loaded"], full[result["lo"] : result["hi"]])
    assert [r["hi"] - r["lo"] for r in resumed] == [3, 2, 2]
    assert resumed[1]["after"] is None and resumed[2]["after"] is None  # gathered on rank 0 only
    _, after1 = _single_process_steps(state)
    torch.testing.assert_close(resumed[0]["after"]["proxies"], after1, **TOL)


def test_resume_on_one_process(checkpoint_runs) -> None:
    ckpt, _, resumed = checkpoint_runs
    state = torch.load(ckpt, weights_only=True)
    batch = global_batch(2)
    loss = ShardedProxyAnchorLoss.from_loss(make_loss(batch), ddp_average=False).double()
    assert (loss.lo, loss.hi) == (0, batch["num_classes"])
    loss.load_state_dict(state["loss"])
    assert torch.equal(full_loss_state_dict(loss)["proxies"], state["loss"]["proxies"])
    opt = torch.optim.AdamW(loss.parameters(), lr=0.01)
    load_full_optimizer_state_dict(opt, state["opt"], loss)
    steps = checkpoint_batches(batch, batch["inputs"] @ batch["weight"].T, 1, 0)
    train_step(loss, *steps[1], opt)
    torch.testing.assert_close(loss.proxies.detach(), resumed[0]["after"]["proxies"], **TOL)
    saved_opt = full_optimizer_state_dict(opt, loss)
    assert saved_opt["state"][0]["exp_avg"].shape == state["opt"]["state"][0]["exp_avg"].shape


def test_wrong_number_of_rows_is_refused() -> None:
    loss = ShardedProxyAnchorLoss(10, 4, rank=0, world_size=3)
    with pytest.raises(ValueError, match=r"have 9 rows; expected the full matrix \(10 rows\)"):
        loss.load_state_dict({"proxies": torch.zeros(9, 4)})
