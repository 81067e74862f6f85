"""DataLoader workers for training: how many (:func:`default_num_workers`) and the loader's
other settings (:func:`loader_kwargs`).

The rule, from the measurement of ``reproduce/benchmarks/loader_speed.py`` (recorded in
``reproduce/results/benchmarks/loader_speed.json``): one worker reads a CUB-sized JPEG (500 x 375,
quality 90, ~50 KB) and applies the paper's train transform (RandomResizedCrop(224), flip,
ToTensor, BN-Inception normalisation) at 178 images/s (5.6 ms per image; the decode alone 2.1 ms)
on one core of a 2-core AMD EPYC, measured while the machine was busy with other jobs (load
average 6.7), so a lower bound. A GPU step at 224 px is expected to consume far more than one
core produces (not measured yet: ``reproduce/gpu_check.sh`` measures it), so the loader gets every
core the training process does not need:

    workers = min(MAX_WORKERS, cpus_per_process - 1), at least 0

``cpus_per_process`` is the CPUs this process may run on (its affinity mask, as a scheduler such
as SLURM sets it) divided by the GPUs sharing them (one training process per GPU); one CPU is left
to the training process itself (the optimizer step, CUDA launches, pinning). With one CPU the
main process loads the data itself (0 workers). With 2 or more CPUs at least one worker: in the
same measurement the main process loading its own batches (0 workers, two torch threads
contending for busy cores) managed 24 images/s, one worker 154 and two 200.
:data:`MAX_WORKERS` = 8 caps the worker processes: 8 x 178 = about 1,400 images/s at this CPU's
speed, and each worker holds a copy of the data set's path list and its prefetched batches.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .errors import DataConfigError

MAX_WORKERS = 8
#: Batches each worker prepares ahead (PyTorch's default, named here): with 8 workers, 16
#: batches of 180 x 3 x 224 x 224 float32 (108 MiB each, 1.7 GiB) wait in shared memory.
PREFETCH_FACTOR = 2


def _count(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataConfigError(
            f"{name} must be an integer >= {minimum}, got {value!r}. Fix: pass a whole number "
            f"(or None to detect it)."
        )
    return value


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one, else the count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def default_num_workers(cpu_count: int | None = None, gpus: int | None = None) -> int:
    """DataLoader workers per training process: ``min(8, cpu_count // max(gpus, 1) - 1)``, at
    least 0 (the rule and the measurement behind it are in the module docstring).

    Args:
        cpu_count: CPUs of the machine (or of the job); None: :func:`available_cpus`.
        gpus: training processes sharing those CPUs, one per GPU (under torchrun: the local
            world size); None: ``torch.cuda.device_count()``. 0 (CPU training) counts as one
            process.

    Raises:
        DataConfigError: ``cpu_count`` is not an integer >= 1 or ``gpus`` not an integer >= 0.
    """
    cpus = available_cpus() if cpu_count is None else _count(cpu_count, "cpu_count", 1)
    gpus = torch.cuda.device_count() if gpus is None else _count(gpus, "gpus", 0)
    per_process = cpus // max(gpus, 1)
    return max(0, min(MAX_WORKERS, per_process - 1))


def loader_kwargs(
    num_workers: int, device: str | torch.device, *, persistent_workers: bool = True
) -> dict[str, Any]:
    """The ``torch.utils.data.DataLoader`` keyword arguments for ``num_workers`` feeding ``device``.

    - ``pin_memory`` when ``device`` is a CUDA device (page-locked batches copy to the GPU
      asynchronously, with ``tensor.to(device, non_blocking=True)``);
    - with workers: ``persistent_workers`` (the workers survive the end of an epoch instead of
      being started again: no start-up pause per epoch; their random generators then continue
      from one epoch to the next instead of being seeded anew) and ``prefetch_factor``
      (:data:`PREFETCH_FACTOR`). Without workers neither is allowed by PyTorch, so neither is
      given.

    Raises:
        DataConfigError: ``num_workers`` is not an integer >= 0, or ``device`` is not a device.
    """
    workers = _count(num_workers, "num_workers", 0)
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as err:
        raise DataConfigError(
            f"device {device!r} is not a torch device; expected e.g. 'cpu', 'cuda' or 'cuda:1'."
        ) from err
    kwargs: dict[str, Any] = {"num_workers": workers, "pin_memory": kind == "cuda"}
    if workers > 0:
        kwargs["persistent_workers"] = bool(persistent_workers)
        kwargs["prefetch_factor"] = PREFETCH_FACTOR
    return kwargs
