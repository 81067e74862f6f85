"""Process-group setup for ``torchrun`` (single- and multi-node), rank-0 helpers, config check.

``torchrun --nproc_per_node=K [--nnodes=M --rdzv-endpoint=HOST:PORT] -m pml_proxy_anchor train CFG``
starts K*M processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. :func:`init_distributed` reads them and joins the default process group: backend
``gloo`` on CPU, ``nccl`` on CUDA (one GPU per process, ``cuda:LOCAL_RANK``). Without ``WORLD_SIZE``
(or with 1) nothing is initialised and every helper behaves as a single process (rank 0 of 1).

The group's ``timeout`` bounds every wait: when a rank dies or hangs, the other ranks' next
collective fails within it and :class:`~pml_proxy_anchor.distributed.errors.RankFailureError` says
so (a rank that *exits* usually closes its sockets, so the others fail at once).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .errors import ConfigMismatchError, DistributedError
from .gather import get_rank, get_world_size, guarded, is_distributed

DEFAULT_TIMEOUT_S = 600.0
_REQUIRED_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank, the world size, its device and the backend."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise DistributedError(
            f"environment variable {name}={value!r} is not an integer; torchrun sets it. Fix: "
            "launch with torchrun, or unset it for a single-process run."
        ) from err


def init_distributed(
    device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S, backend: str | None = None
) -> DistributedContext:
    """Join the process group described by torchrun's environment variables.

    Args:
        device: "cpu", "cuda" or "auto" (cuda if available). With cuda each process uses
            ``cuda:LOCAL_RANK``.
        timeout_s: how long any collective (and the start-up rendezvous) may wait for the other
            ranks before failing with :class:`RankFailureError`.
        backend: override the backend (default gloo on CPU, nccl on CUDA).

    Returns:
        The :class:`DistributedContext`; a single-process context when ``WORLD_SIZE`` is unset or 1.
    """
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda'; got {device!r}")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise DistributedError(
            "device 'cuda' was asked for but torch.cuda.is_available() is False. Fix: run on a "
            "machine with a GPU or pass device='cpu' (train.device: cpu)."
        )
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", _env_int("RANK", 0))
    if use_cuda:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedError(
                f"LOCAL_RANK={local_rank} but this node has {count} GPU(s). Fix: use "
                f"torchrun --nproc_per_node={count} (at most one process per GPU)."
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if is_distributed():
        return DistributedContext(
            get_rank(), get_world_size(), local_rank, dev, str(dist.get_backend())
        )
    if world <= 1:
        return DistributedContext(0, 1, 0, dev, None)
    missing = [name for name in _REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set: expected the environment of "
            "torchrun. Fix: launch with `torchrun --nproc_per_node=N -m pml_proxy_anchor ...`."
        )
    backend = backend or ("nccl" if use_cuda else "gloo")
    guarded(
        f"init_process_group({backend}, rendezvous at {os.environ['MASTER_ADDR']}:"
        f"{os.environ['MASTER_PORT']})",
        dist.init_process_group,
        backend=backend,
        init_method="env://",
        timeout=datetime.timedelta(seconds=float(timeout_s)),
    )
    return DistributedContext(get_rank(), get_world_size(), local_rank, dev, backend)


def cleanup() -> None:
    """Leave the process group (no-op when not distributed)."""
    if is_distributed():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the rank that logs, evaluates and saves."""
    return get_rank() == 0


def barrier(what: str = "barrier") -> None:
    """Wait for every rank (no-op when not distributed); fails within the group timeout."""
    if is_distributed() and get_world_size() > 1:
        guarded(what, dist.barrier)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (e.g. the run directory rank 0 chose)."""
    if not is_distributed() or get_world_size() == 1:
        return obj
    box = [obj]
    guarded("broadcast_object", dist.broadcast_object_list, box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not is_distributed() or get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    guarded("all_gather_object", dist.all_gather_object, out, obj)
    return out


def _flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(tree, Mapping):
        out: dict[str, str] = {}
        for key in sorted(tree, key=str):
            out.update(_flatten(tree[key], f"{prefix}{key}."))
        return out
    if isinstance(tree, (list, tuple)):
        return {prefix[:-1]: json.dumps([_flatten(v).get("", repr(v)) for v in tree])}
    return {prefix[:-1]: repr(tree)}


def _plain_config(config: Any) -> Any:
    if type(config).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(config, resolve=True)
    return config


def config_hash(config: Any, ignore: tuple[str, ...] = ()) -> str:
    """sha256 of the resolved config (dotted keys in ``ignore`` and below them left out)."""
    flat = _flatten(_plain_config(config))
    kept = {
        k: v for k, v in flat.items() if not any(k == i or k.startswith(i + ".") for i in ignore)
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def check_config_consistency(config: Any, ignore: tuple[str, ...] = ()) -> str:
    """Stop with :class:`ConfigMismatchError` unless every rank resolved the same config.

    Each rank hashes its resolved config; the hashes are all-gathered. On a mismatch the configs
    are gathered too and the error names the ranks and the differing keys with their values.
    Returns the common hash. ``ignore``: dotted keys allowed to differ (e.g. ``("train.device",)``).
    """
    digest = config_hash(config, ignore)
    hashes = all_gather_object(digest)
    if len(set(hashes)) == 1:
        return digest
    flats = all_gather_object(_flatten(_plain_config(config)))
    lines = []
    for rank, (other, flat) in enumerate(zip(hashes, flats)):
        if other == hashes[0]:
            continue
        keys = sorted(set(flat) | set(flats[0]))
        diff = [
            f"{k}: {flats[0].get(k, '<missing>')} (rank 0) vs {flat.get(k, '<missing>')} "
            f"(rank {rank})"
            for k in keys
            if flat.get(k) != flats[0].get(k) and not any(k.startswith(i) for i in ignore)
        ]
        lines.append(f"rank {rank}: " + "; ".join(diff[:10]))
    raise ConfigMismatchError(
        "the ranks resolved different configs: "
        + " | ".join(lines)
        + ". Expected one config for the whole job. Fix: give every process the same config "
        "file and overrides (and the same files on every node)."
    )
