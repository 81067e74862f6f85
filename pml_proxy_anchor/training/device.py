"""Resolve ``train.device`` ("auto", "cpu", "cuda", "cuda:N", "mps") to a ``torch.device``."""

from __future__ import annotations

import torch

from pml_proxy_anchor.training.errors import DeviceNotAvailableError


def resolve_device(spec: str | None) -> torch.device:
    """``"auto"`` (or None) picks CUDA when available, else the CPU; anything else must exist."""
    name = "auto" if spec is None else str(spec).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceNotAvailableError(
            f"train.device={spec!r} is not a device name; expected one of auto, cpu, cuda, "
            "cuda:N, mps. Fix: pass train.device=auto."
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceNotAvailableError(
                f"train.device={spec!r} asks for CUDA, but this machine has no usable CUDA "
                f"device (torch {torch.__version__}, CUDA build: {torch.version.cuda}). "
                "Fix: pass train.device=cpu (or auto), or install a CUDA build of PyTorch."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceNotAvailableError(
                f"train.device={spec!r} asks for GPU {device.index}, but only {count} "
                f"GPU(s) are visible (cuda:0..cuda:{count - 1}). Fix: pass train.device=cuda:0."
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceNotAvailableError(
            f"train.device={spec!r} asks for Apple MPS, which is not available here. "
            "Fix: pass train.device=cpu (or auto)."
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceNotAvailableError(
            f"train.device={spec!r} is not supported; expected auto, cpu, cuda, cuda:N or mps."
        )
    return device
