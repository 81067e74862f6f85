"""Reading a state_dict file and loading it strictly, with errors that list what does not match.

``torch.nn.Module.load_state_dict(strict=True)`` already refuses a mismatching state_dict, but its
message does not say which file was wrong or how to fix it; :func:`load_state_dict_checked`
compares keys and shapes first and raises :class:`~.errors.WeightsMismatchError` with the lists.
Files are read with ``torch.load(weights_only=True)`` (tensors only, no arbitrary pickles).
"""

from __future__ import annotations

import os
import pickle
import zipfile
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
        WeightsFileError: the path is a directory, or the file is empty, truncated, damaged, not a
            PyTorch file, holds other objects than tensors, holds no plain state_dict, or has
            non-finite values; the message names the file and the fix.
    """
    file = Path(path).expanduser()
    shown = os.fspath(file)
    if file.is_dir():
        raise WeightsFileError(
            f"{architecture} weight file {shown!r} is a directory; expected the weight file "
            f"itself. Fix: pass the path of the file inside it. {how_to_get}"
        )
    if not file.is_file():
        raise weights_not_found(file, architecture=architecture, how_to_get=how_to_get)
    try:
        size = file.stat().st_size
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except PermissionError as exc:
        raise WeightsFileError(
            f"{architecture} weight file {shown!r} cannot be read: permission denied. Fix: make "
            "it readable (chmod u+r) or copy it somewhere readable."
        ) from exc
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise WeightsFileError(
            f"{architecture} weight file {shown!r} cannot be read: {_why_unreadable(file, exc)} "
            f"{how_to_get}"
        ) from exc
    if size == 0:  # torch.load raises EOFError for an empty file; kept for other loaders
        raise WeightsFileError(f"{architecture} weight file {shown!r} is empty. {how_to_get}")
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        found = sorted(map(str, loaded))[:10] if isinstance(loaded, Mapping) else type(loaded)
        raise WeightsFileError(
            f"{architecture} weight file {shown!r} does not hold a plain state_dict "
            f"(a mapping of parameter names to tensors); found {found}. If it is a training "
            "checkpoint, save its model state_dict on its own (e.g. torch.save(ckpt['state_dict'], "
            f"path)). {how_to_get}"
        )
    not_finite = [
        str(key)
        for key, value in loaded.items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if not_finite:
        raise WeightsFileError(
            f"{architecture} weight file {shown!r} holds NaN or infinite values in "
            f"{len(not_finite)} tensor(s): {', '.join(not_finite[:10])}. Fix: download the file "
            f"again. {how_to_get}"
        )
    return dict(loaded)


def _why_unreadable(file: Path, exc: BaseException) -> str:
    """Why ``torch.load`` failed on ``file`` and the fix, in words (no torch/miniz internals)."""
    size = file.stat().st_size
    download_again = "Fix: download the file again."
    if size == 0:
        return f"the file is empty (0 bytes; an interrupted download?). {download_again}"
    if zipfile.is_zipfile(file):
        if isinstance(exc, pickle.UnpicklingError):
            return (
                f"the file ({size:,} bytes) holds Python objects other than tensors (for example "
                "a whole pickled model), which are not loaded for safety. Fix: save the state_dict "
                "alone (torch.save(model.state_dict(), path)) and pass that file."
            )
        return f"the PyTorch file ({size:,} bytes) is damaged. {download_again}"
    return (
        f"the file ({size:,} bytes) is not a PyTorch weight file, or is truncated or damaged (an "
        f"interrupted download?); expected a state_dict saved with torch.save. {download_again}"
    )


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
