"""Seeding and RNG state for reproducible, resumable runs.

Every epoch starts by reseeding python's ``random``, numpy and torch from ``(seed, epoch)``
(:func:`seed_epoch`), and the epoch's DataLoader iterator (shuffling, worker seeds, samplers such as
PML's ``MPerClassSampler`` that draw from numpy) is created right after. So epoch ``e`` of a resumed
run sees exactly the batches and augmentations of epoch ``e`` of an uninterrupted run. Random
train batches come from a ``DistributedSampler`` (its own generator, seeded with ``seed + epoch``),
so a run on N processes sees the global batches of a single-process run. The full RNG state is
also captured in each checkpoint (:func:`rng_state` / :func:`set_rng_state`).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 32-bit seed from ``seed`` and integer keys (e.g. the epoch)."""
    sequence = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(int(k) for k in keys)])
    return int(sequence.generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Reseed every global RNG from ``(seed, epoch)``; call at the start of each epoch.

    ``rank`` > 0 mixes the process's rank in (different augmentations on every process of a
    torchrun job); rank 0 uses the seeds of a single-process run.
    """
    seed_everything(derive_seed(seed, epoch) if rank == 0 else derive_seed(seed, epoch, rank))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive python/numpy seeds from the worker's torch seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain types (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    random.setstate(_as_tuple(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
