"""Data sharding over ranks: ``DistributedSampler`` with per-epoch seeding, and a wrapper for
any other sampler (e.g. PML's ``MPerClassSampler``).

With ``DistributedSampler(shuffle=True, seed=s)`` epoch ``e`` uses the permutation of
``torch.Generator().manual_seed(s + e)``; rank r reads positions ``r, r + N, r + 2N, ...`` of it.
With a local batch b, the k-th batches of the N ranks together are exactly the positions
``[k N b, (k + 1) N b)`` of the permutation: the global batches of an N-process run are those of
a 1-process run with batch ``N b`` and the same sampler (the Proxy-Anchor loss does not depend on
the order of the samples within a batch). Call :func:`set_epoch` at the start of every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import DistributedSampler, Sampler

from .gather import get_rank, get_world_size


def local_batch_size(global_batch_size: int, world_size: int | None = None) -> int:
    """Per-rank batch for a global batch (the config's ``train.batch_size``); must divide."""
    world = get_world_size() if world_size is None else int(world_size)
    if global_batch_size < world or global_batch_size % world:
        raise ValueError(
            f"train.batch_size={global_batch_size} (the global batch) is not a multiple of the "
            f"{world} processes; expected batch_size = N * per-process batch. Fix: use "
            f"batch_size={max(world, global_batch_size - global_batch_size % world)} or change "
            "--nproc_per_node."
        )
    return global_batch_size // world


def distributed_sampler(
    dataset: Sized, shuffle: bool = True, seed: int = 0, drop_last: bool = False
) -> DistributedSampler:
    """torch's ``DistributedSampler`` for the current process group (1 replica when not
    distributed, so the same code path gives the same batches in a single process)."""
    return DistributedSampler(
        dataset,
        num_replicas=get_world_size(),
        rank=get_rank(),
        shuffle=shuffle,
        seed=int(seed),
        drop_last=drop_last,
    )


class ShardedSampler(Sampler[int]):
    """Rank r's share ``order[r::N]`` of another sampler's order (padded by wrapping to a
    multiple of N so every rank gets the same number of indices).

    The wrapped sampler must produce the same order on every rank: seed its RNG identically per
    epoch (the trainer reseeds every RNG from ``(seed, epoch)``), or give it ``set_epoch``.
    """

    def __init__(self, sampler: Any, rank: int | None = None, world_size: int | None = None):
        self.sampler = sampler
        self.rank = get_rank() if rank is None else int(rank)
        self.world_size = get_world_size() if world_size is None else int(world_size)

    def __iter__(self) -> Iterator[int]:
        order = [int(i) for i in self.sampler]
        if not order:
            return iter(())
        padded = order + order[: (-len(order)) % self.world_size]
        return iter(padded[self.rank :: self.world_size])

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        set_epoch(self.sampler, epoch)


def set_epoch(sampler: Any, epoch: int) -> None:
    """``sampler.set_epoch(epoch)`` when it has one (DistributedSampler, ShardedSampler)."""
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(int(epoch))
