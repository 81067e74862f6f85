"""Checkpoints independent of the number of processes: the full proxy matrix on save, re-sharded
on load.

A checkpoint always holds the loss state of a single-process run (``{"proxies": (C, D), ...}``)
and, for the proxies' optimizer, moment tensors of shape (C, D). With class-sharded proxies
(:class:`~pml_proxy_anchor.distributed.sharded.ShardedProxyAnchorLoss`) the rows of all ranks are
gathered to rank 0 before it writes the file (the gather happens before the file is opened, so a
rank that dies during it leaves the previous checkpoint intact). On load, every rank takes its rows
``[lo, hi)`` of the full matrix for the *current* world size, so a run saved on N processes resumes
on any M.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .gather import _comm_device, get_rank, get_world_size, guarded, is_distributed
from .sharded import ShardedProxyAnchorLoss, shard_bounds


def gather_rows(local: torch.Tensor, num_classes: int, dst: int | None = 0) -> torch.Tensor | None:
    """The full (C, ...) tensor from the class shards of all ranks (:func:`shard_bounds`).

    Args:
        local: this rank's rows ``[lo, hi)``.
        num_classes: C.
        dst: the rank that receives the result (others get None); None = every rank.
    """
    world = get_world_size()
    if not is_distributed() or world == 1:
        return local.detach().clone()
    rank = get_rank()
    lo, hi = shard_bounds(num_classes, world, rank)
    if local.shape[0] != hi - lo:
        raise ValueError(
            f"rank {rank} holds {local.shape[0]} rows; the shard of {num_classes} classes over "
            f"{world} ranks is [{lo}, {hi}) ({hi - lo} rows)"
        )
    longest = shard_bounds(num_classes, world, 0)[1]  # rank 0 holds the largest shard
    send = local.detach().to(_comm_device())
    if send.shape[0] < longest:
        send = torch.cat([send, send.new_zeros((longest - send.shape[0], *send.shape[1:]))])
    send = send.contiguous()
    bounds = [shard_bounds(num_classes, world, r) for r in range(world)]
    if dst is None:
        parts = [torch.empty_like(send) for _ in range(world)]
        guarded("all_gather(proxy shards)", dist.all_gather, parts, send)
    else:
        parts = [torch.empty_like(send) for _ in range(world)] if rank == dst else None
        guarded("gather(proxy shards)", dist.gather, send, parts, dst=dst)
        if parts is None:
            return None
    return torch.cat([p[: b[1] - b[0]] for p, b in zip(parts, bounds)]).to(local.device)


def shard_rows(
    full: torch.Tensor, rank: int | None = None, world_size: int | None = None
) -> torch.Tensor:
    """Rows ``[lo, hi)`` of ``full`` (C, ...) for ``rank`` of ``world_size`` (a copy)."""
    rank = get_rank() if rank is None else rank
    world = get_world_size() if world_size is None else world_size
    lo, hi = shard_bounds(full.shape[0], world, rank)
    return full[lo:hi].clone()


def full_loss_state_dict(loss: nn.Module, dst: int = 0) -> dict[str, Any] | None:
    """The loss's ``state_dict`` with the full (C, D) proxies, on rank ``dst`` (None elsewhere).

    A collective for sharded losses: every rank must call it. Replicated losses
    (``ProxyAnchorLoss``, ``GlobalBatchLoss``) already hold the full matrix.
    """
    state = loss.state_dict()
    if isinstance(loss, ShardedProxyAnchorLoss):
        full = gather_rows(loss.proxies, loss.num_classes, dst=dst)
        if full is None:
            return None
        state = dict(state)
        state["proxies"] = full
    return state if get_rank() == dst else None


def _proxy_param_id(optimizer: torch.optim.Optimizer, proxies: torch.Tensor) -> int | None:
    """Index of ``proxies`` in ``optimizer.state_dict()['state']`` (params numbered in order)."""
    index = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param is proxies:
                return index
            index += 1
    return None


def full_optimizer_state_dict(
    optimizer: torch.optim.Optimizer, loss: nn.Module, dst: int = 0
) -> dict[str, Any] | None:
    """``optimizer.state_dict()`` with the proxies' per-row state (Adam moments...) gathered to
    full (C, D) tensors, on rank ``dst`` (None elsewhere). Every rank must call it."""
    state = optimizer.state_dict()
    # Only sharded proxies need gathering; other losses (with or without proxies) pass through.
    pid = (
        _proxy_param_id(optimizer, loss.proxies)
        if isinstance(loss, ShardedProxyAnchorLoss)
        else None
    )
    if pid is not None:
        per_param = dict(state["state"].get(pid, {}))
        for key in sorted(per_param):
            value = per_param[key]
            if torch.is_tensor(value) and value.ndim >= 1 and value.shape == loss.proxies.shape:
                per_param[key] = gather_rows(value, loss.num_classes, dst=dst)
        state = {**state, "state": {**state["state"], pid: per_param}}
    return state if get_rank() == dst else None


def load_full_optimizer_state_dict(
    optimizer: torch.optim.Optimizer, state: Mapping[str, Any], loss: nn.Module
) -> None:
    """Load a state written by :func:`full_optimizer_state_dict` (any world size) into
    ``optimizer``: the proxies' full (C, ...) state tensors are re-sharded for this rank."""
    state = dict(state)
    pid = (
        _proxy_param_id(optimizer, loss.proxies)
        if isinstance(loss, ShardedProxyAnchorLoss)
        else None
    )
    if pid is not None and pid in state["state"]:
        per_param = dict(state["state"][pid])
        for key, value in per_param.items():
            if torch.is_tensor(value) and value.ndim >= 1 and value.shape[0] == loss.num_classes:
                per_param[key] = value[loss.lo : loss.hi].clone()
        state["state"] = {**state["state"], pid: per_param}
    optimizer.load_state_dict(state)
