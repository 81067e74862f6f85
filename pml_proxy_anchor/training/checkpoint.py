"""Atomic checkpoints: the full training state every epoch, the best model by Recall@1.

``checkpoints/last.pt`` (rewritten at the end of every epoch) holds everything ``--resume`` needs:
the models (trunk, embedder), the loss state (the proxies), optimizers, lr schedulers, the fp16
loss scaler (``scaler``: its scale and growth tracker, ``{}`` in the other precisions; absent in
checkpoints written before it was saved, which still load), the epoch, the RNG states of
python/numpy/torch, the per-epoch history and the best epoch so far.
``checkpoints/best.pt`` holds the model and loss weights of the epoch with the best Recall@1.
Files are written with :func:`~.record.write_atomic` (a temporary file in the same folder,
flushed to disk, moved into place with ``os.replace``), so a run killed at any moment, a full disk
or a folder without write permission leaves either the old or the new file, never a torn one. All
content is tensors and plain python types: the files load with ``torch.load(weights_only=True)``.
:func:`load` turns an empty, truncated or foreign file into a :class:`CorruptCheckpointError`
naming the file and the fix, never a raw unpickling or zip-reader error.

The files do not depend on the number of processes that wrote them: a torchrun job stores the
full (C, D) proxy matrix and full optimizer moments even with class-sharded proxies (gathered by
``pml_proxy_anchor.distributed.full_loss_state_dict`` / ``full_optimizer_state_dict``), so a run
resumes on any number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.registry import choose
from pml_proxy_anchor.training.errors import CheckpointNotFoundError
from pml_proxy_anchor.training.record import write_atomic

FORMAT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"


class CorruptCheckpointError(UserError, ValueError):
    """A checkpoint file is empty, truncated, corrupted or not one written by this package."""


def save_atomic(obj: Mapping[str, Any], path: str | Path) -> Path:
    """``torch.save`` to ``path`` through :func:`~.record.write_atomic` (all or nothing)."""
    return write_atomic(path, lambda handle: torch.save(dict(obj), handle))


def state_dicts(objects: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: obj.state_dict()}`` for a dict of modules / optimizers / schedulers."""
    return {name: obj.state_dict() for name, obj in objects.items()}


def _load_state_dict(obj: Any, state: Any) -> None:
    obj.load_state_dict(state)


def load_state_dicts(
    objects: Mapping[str, Any],
    states: Mapping[str, Any],
    what: str,
    loader: Callable[[Any, Any], None] = _load_state_dict,
) -> None:
    """Load ``states`` into ``objects`` by name (``loader(obj, state)``, default
    ``obj.load_state_dict(state)``); both must have the same names."""
    if set(objects) != set(states):
        raise ValueError(
            f"the checkpoint's {what} are {sorted(states)}, the run has {sorted(objects)}; "
            "the checkpoint was written by a different config. Fix: resume with the run's own "
            "config.yaml, or start a new run."
        )
    for name, obj in objects.items():
        loader(obj, states[name])


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint {path} does not exist. Expected a run directory written by "
            "`pml-proxy-anchor train` (with checkpoints/last.pt and checkpoints/best.pt). "
            "Fix: point to the run directory or to one of those files."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # EOFError, UnpicklingError, miniz RuntimeError, KeyError, ...
        size = path.stat().st_size
        what = "empty (0 bytes)" if size == 0 else f"not a readable checkpoint ({size} bytes)"
        raise CorruptCheckpointError(
            f"checkpoint {path} is {what}: it is truncated or corrupted (a run killed while "
            "copying, a full disk, an incomplete download) or not a PyTorch file "
            f"({type(err).__name__}: {_first_line(err)}). {_fix_for(path)}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CorruptCheckpointError(
            f"{path} is not a pml-proxy-anchor checkpoint of format {FORMAT_VERSION}; expected "
            "a file written by `pml-proxy-anchor train` (checkpoints/last.pt or best.pt). "
            + _fix_for(path)
        )
    return state


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else "no message"


def _fix_for(path: Path) -> str:
    """What to do about an unreadable checkpoint, by which file it is."""
    if path.name == LAST:
        return (
            "Fix: start the run over with --overwrite (the model of the best epoch may still be "
            "in best.pt: `pml-proxy-anchor eval RUN_DIR --which best`), or copy the run "
            "directory again from where it came from."
        )
    if path.name == BEST:
        return (
            "Fix: use the last epoch's model instead (`--which last`), or copy the run directory "
            "again from where it came from."
        )
    return "Fix: copy or download the file again, or point to a run directory's checkpoint."


def find_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A checkpoint file from a run directory (``which`` = "best" or "last") or a file path."""
    path = Path(path)
    if path.is_file():
        return path
    candidate = path / "checkpoints" / choose(which, {"best": BEST, "last": LAST}, "which")
    if not candidate.is_file():
        raise CheckpointNotFoundError(
            f"no checkpoint at {candidate}. Expected a run directory written by "
            "`pml-proxy-anchor train` (config.yaml, checkpoints/last.pt, checkpoints/best.pt) or "
            "a checkpoint file. Fix: check the path, or finish the run (--resume) first."
        )
    return candidate
