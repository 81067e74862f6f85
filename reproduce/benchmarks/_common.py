"""Helpers shared by the benchmark scripts of this folder: the machine's description, device
checks and synchronisation, the CPU peak-memory probe, the alternated timing loop, the common
command-line flag and the result file.

The scripts are files, not a package: each puts this folder on ``sys.path`` before
``from _common import ...``, so that this works however it is started (``python
reproduce/benchmarks/X.py``, ``python -m``, ``importlib`` from a file path, spawned children).
Nothing here imports torch at module level (``eval_speed.py`` keeps torch out of its parent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
PROC_STATUS = Path("/proc/self/status")


# ---------------------------------------------------------------- machine
def _cpuinfo_model_name() -> str | None:
    """The first ``model name`` of /proc/cpuinfo; None when it has none; OSError if unreadable."""
    match = re.search(r"model name\s*:\s*(.*)", CPUINFO.read_text())
    return match.group(1).strip() if match else None


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else the platform's processor string)."""
    try:
        name = _cpuinfo_model_name()
    except OSError:
        name = None
    if name is not None:
        return name
    return platform.processor() or platform.machine() or "unknown"


def cpu_name() -> str:
    """``"MODEL xCORES"`` from /proc/cpuinfo (``unknown`` for a model it cannot tell, or for the
    whole when /proc/cpuinfo cannot be read)."""
    try:
        name = _cpuinfo_model_name()
    except OSError:
        return "unknown"
    return f"{name if name is not None else 'unknown'} x{os.cpu_count()}"


# ---------------------------------------------------------------- device
def check_device(device: str) -> None:
    """Exit with a message when ``device`` is ``cuda`` and torch sees no GPU."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")


def sync(device: Any) -> None:
    """Wait for the GPU when ``device`` (a name or a ``torch.device``) is of type ``cuda``."""
    if getattr(device, "type", device) == "cuda":
        import torch

        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- CPU memory
def status_kb(field: str, missing: int = -1) -> int:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``); ``missing`` when absent."""
    match = re.search(rf"^{field}:\s+(\d+)", PROC_STATUS.read_text(), re.M)
    return int(match.group(1)) if match else missing


def reset_peak_rss() -> tuple[int, str]:
    """Reset the resident-set high-water mark (``VmHWM``, through /proc/self/clear_refs) to the
    current RSS; the RSS now in kB and the method, ``VmHWM`` (or ``ru_maxrss``, which cannot be
    reset, where that is unavailable)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        return status_kb("VmRSS"), "VmHWM"
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"


def peak_rss_kb(method: str) -> int:
    """The high-water mark in kB read with ``method`` (from :func:`reset_peak_rss`)."""
    if method == "VmHWM":
        return status_kb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---------------------------------------------------------------- timing
def time_in_rounds(
    runs: dict[str, Callable[[], Any]], device: str, warmup: int, repeats: int, rounds: int
) -> dict[str, list[float]]:
    """Times every contender ``repeats`` times in total, split over ``rounds`` rounds
    (A A A B B B C C C, A A A B B B ...): each block starts with ``warmup`` untimed calls, so a
    contender is timed in its steady state, while a slow or fast spell of a shared machine falls
    on every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    per_round = [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]
    for count in per_round:
        for name, run in runs.items():
            for _ in range(warmup):
                run()
            sync(device)
            for _ in range(count):
                start = time.perf_counter()
                run()
                sync(device)
                times[name].append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------- command line and results
def benchmark_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the ``--device cpu|cuda`` flag (default ``cpu``) every script has."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return parser


def write_json(path: Path | str, data: Any, *, final_newline: bool = True) -> Path:
    """Write ``data`` as JSON indented by 2 to ``path`` (its folders made); the path written."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + ("\n" if final_newline else ""))
    return out
