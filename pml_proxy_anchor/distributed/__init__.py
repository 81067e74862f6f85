"""Data-parallel and class-sharded training of the Proxy-Anchor loss on torch.distributed.

- :class:`GlobalBatchLoss`: the exact loss of the global batch (gathered from all ranks),
  proxies replicated;
- :class:`ShardedProxyAnchorLoss`: the same loss with the proxies split by class over the ranks;
- :func:`init_distributed`, :func:`is_main_process`, :func:`barrier`,
  :func:`check_config_consistency`: torchrun setup and helpers;
- samplers (:func:`distributed_sampler`, :class:`ShardedSampler`) and checkpoint helpers
  (:func:`full_loss_state_dict`, :func:`full_optimizer_state_dict`,
  :func:`load_full_optimizer_state_dict`).
"""

from __future__ import annotations

from torch import nn

from .checkpoint import (
    full_loss_state_dict,
    full_optimizer_state_dict,
    gather_rows,
    load_full_optimizer_state_dict,
    shard_rows,
)
from .errors import ConfigMismatchError, DistributedError, RankFailureError
from .gather import (
    all_gather_no_grad,
    all_gather_with_grad,
    gather_by_index,
    get_rank,
    get_world_size,
    is_distributed,
)
from .global_loss import GlobalBatchLoss
from .launch import (
    DistributedContext,
    barrier,
    broadcast_object,
    check_config_consistency,
    cleanup,
    init_distributed,
    is_main_process,
)
from .sampler import ShardedSampler, distributed_sampler, local_batch_size, set_epoch
from .sharded import ShardedProxyAnchorLoss, shard_bounds

PROXY_MODES = ("replicated", "sharded")


def distribute_loss(
    loss: nn.Module, proxies: str = "replicated", ddp_average: bool = True
) -> nn.Module:
    """Wrap a ``ProxyAnchorLoss`` for the current process group.

    ``proxies="replicated"`` -> :class:`GlobalBatchLoss` (any reducer/miner/regularizer);
    ``"sharded"`` -> :class:`ShardedProxyAnchorLoss.from_loss` (this rank's rows only; the full
    ``loss`` can be freed afterwards). Both compute the exact global-batch loss.
    """
    if proxies == "replicated":
        return GlobalBatchLoss(loss, ddp_average=ddp_average)
    if proxies == "sharded":
        return ShardedProxyAnchorLoss.from_loss(loss, ddp_average=ddp_average)
    raise ValueError(f"proxies must be one of {PROXY_MODES}; got {proxies!r}")


__all__ = [
    "PROXY_MODES",
    "ConfigMismatchError",
    "DistributedContext",
    "DistributedError",
    "GlobalBatchLoss",
    "RankFailureError",
    "ShardedProxyAnchorLoss",
    "ShardedSampler",
    "all_gather_no_grad",
    "all_gather_with_grad",
    "barrier",
    "broadcast_object",
    "check_config_consistency",
    "cleanup",
    "distribute_loss",
    "distributed_sampler",
    "full_loss_state_dict",
    "full_optimizer_state_dict",
    "gather_by_index",
    "gather_rows",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "load_full_optimizer_state_dict",
    "local_batch_size",
    "set_epoch",
    "shard_bounds",
    "shard_rows",
]
