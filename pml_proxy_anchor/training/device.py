"""Resolve a device name ("auto", "cpu", "cuda", "cuda:N", "mps") to a ``torch.device``.

One check for every place that takes a device (``train.device``, ``eval --device``, ``embed``,
``recall --device``); its errors name the argument as the user wrote it.
"""

from __future__ import annotations

import torch

from pml_proxy_anchor.training.errors import DeviceNotAvailableError


def _setting(what: str, value: object) -> str:
    """``train.device='cuda'`` or ``--device 'cuda'``: the value the user gave, quoted."""
    return f"{what} {value!r}" if what.startswith("--") else f"{what}={value!r}"


def _fix(what: str, value: str) -> str:
    """``train.device=cpu`` or ``--device cpu``: what to pass instead."""
    return f"{what} {value}" if what.startswith("--") else f"{what}={value}"


def resolve_device(spec: str | None, what: str = "train.device") -> torch.device:
    """``"auto"`` (or None) picks CUDA when available, else the CPU; anything else must exist.

    ``what`` names the argument in the error messages (default ``train.device``).
    """
    name = "auto" if spec is None else str(spec).strip().lower()
    fix_cpu = f"Fix: pass {_fix(what, 'cpu')} (or auto)"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceNotAvailableError(
            f"{_setting(what, spec)} is not a device name; expected one of auto, cpu, cuda, "
            f"cuda:N, mps. Fix: pass {_fix(what, 'auto')}."
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceNotAvailableError(
                f"{_setting(what, spec)} asks for CUDA, but this machine has no usable CUDA "
                f"device (torch {torch.__version__}, CUDA build: {torch.version.cuda}). "
                f"{fix_cpu}, or install a CUDA build of PyTorch."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceNotAvailableError(
                f"{_setting(what, spec)} asks for GPU {device.index}, but only {count} "
                f"GPU(s) are visible (cuda:0..cuda:{count - 1}). "
                f"Fix: pass {_fix(what, 'cuda:0')}."
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceNotAvailableError(
            f"{_setting(what, spec)} asks for Apple MPS, which is not available here. {fix_cpu}."
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceNotAvailableError(
            f"{_setting(what, spec)} is not supported; expected auto, cpu, cuda, cuda:N or mps."
        )
    return device
