"""Reading a state_dict file and loading it strictly, with errors that list what does not match.

``torch.nn.Module.load_state_dict(strict=True)`` already refuses a mismatching state_dict, but its
message does not say which file was wrong or how to fix it; :func:`load_state_dict_checked`
compares keys and shapes first and raises :class:`~.errors.WeightsMismatchError` with the lists.
Files are read with ``torch.load(weights_only=True)`` (tensors only, no arbitrary pickles).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import WeightsFileError, WeightsMismatchError, weights_not_found

_OPTIONAL_SUFFIX = "num_batches_tracked"


def read_state_dict(
    path: str | os.PathLike[str], *, architecture: str, how_to_get: str
) -> dict[str, Tensor]:
    """Read a state_dict (a mapping of names to tensors) from a local file onto the CPU.

    Raises:
        WeightsNotFoundError: the file does not exist (the message says where to get it).
        WeightsFileError: the file is not a readable PyTorch file or holds no plain state_dict.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise weights_not_found(file, architecture=architecture, how_to_get=how_to_get)
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise WeightsFileError(
            f"cannot read {architecture} weight file {os.fspath(file)!r} as a PyTorch file "
            f"({type(exc).__name__}: {exc}). Expected a state_dict saved with torch.save. "
            f"Fix: download the file again. {how_to_get}"
        ) from exc
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        found = sorted(map(str, loaded))[:10] if isinstance(loaded, Mapping) else type(loaded)
        raise WeightsFileError(
            f"{architecture} weight file {os.fspath(file)!r} does not hold a plain state_dict "
            f"(a mapping of parameter names to tensors); found {found}. If it is a training "
            "checkpoint, save its model state_dict on its own (e.g. torch.save(ckpt['state_dict'], "
            f"path)). {how_to_get}"
        )
    return dict(loaded)


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    source: str,
    architecture: str,
    how_to_get: str,
) -> None:
    """Load ``state_dict`` into ``model`` with ``strict=True`` after checking keys and shapes.

    Missing ``num_batches_tracked`` buffers are allowed: files written before PyTorch 0.4.1 lack
    them and BatchNorm fills them in itself when loading.

    Raises:
        WeightsMismatchError: listing missing keys, unexpected keys and shape mismatches.
    """
    expected = model.state_dict()
    missing = [
        key for key in expected if key not in state_dict and not key.endswith(_OPTIONAL_SUFFIX)
    ]
    unexpected = [key for key in state_dict if key not in expected]
    shape_mismatches = [
        (key, tuple(value.shape), tuple(expected[key].shape))
        for key, value in state_dict.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if missing or unexpected or shape_mismatches:
        hint = how_to_get
        if unexpected and all(key.startswith("module.") for key in unexpected):
            hint = (
                "the keys start with 'module.' (saved from a DataParallel/DDP wrapper): save "
                "model.module.state_dict() instead, or strip the prefix. " + how_to_get
            )
        raise WeightsMismatchError(
            source, architecture, missing, unexpected, shape_mismatches, hint=hint
        )
    # A plain dict (no ``_metadata``) lets BatchNorm add missing num_batches_tracked buffers.
    model.load_state_dict(dict(state_dict), strict=True)
