"""Input checks for Recall@K: clear errors that name the problem, the expected input and the fix.

Everything a user passes to a Recall@K computation goes through here before any arithmetic:
embeddings (2-D, numeric, finite, non-zero rows when cosine is asked for), labels (1-D integer
class ids), the K list, the GEMM block size and the device. Nothing reaches numpy or torch in a
form that would give a raw error from deep inside them, or a silently wrong number.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from pml_proxy_anchor.errors import UserError

_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
# row norms that torch's float32 normalisation handles exactly enough: no float32 over- or
# underflow of the squares, and above its eps (1e-12), below which it does not normalise
_SAFE_NORM = (1e-10, 1e15)


class RecallInputError(UserError, ValueError):
    """Bad input to a Recall@K computation (shapes, values, dtypes, K list, block size)."""


def _as_tensor(x: Any, name: str, what: str) -> torch.Tensor:
    """``x`` as a tensor; non-numeric input (strings, objects, ragged lists) is refused."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise RecallInputError(
                f"{name} cannot be read as an array ({err}); expected {what}; "
                "fix: pass a numpy array or a torch tensor"
            ) from err
        if arr.dtype.kind not in "biuf":
            raise RecallInputError(
                f"{name} have dtype {arr.dtype} ({_kind_name(arr.dtype)}); expected {what}"
                + (
                    "; fix: map class names to integers, e.g. "
                    "ids = np.unique(names, return_inverse=True)[1] (over query and gallery "
                    "labels together, so that equal names get equal ids)"
                    if "label" in name
                    else "; fix: pass the numeric embeddings (np.float32)"
                )
            )
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise RecallInputError(
            f"{name} have dtype {t.dtype} (complex); expected {what}; fix: pass real-valued input"
        )
    return t


def _kind_name(dtype: np.dtype) -> str:
    return {
        "U": "strings",
        "S": "bytes",
        "O": "python objects",
        "c": "complex",
        "M": "datetimes",
        "m": "timedeltas",
        "V": "structured",
    }.get(dtype.kind, dtype.kind)


def as_float_matrix(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as a 2-D float32 tensor, rejecting empty, non-2-D and non-finite input."""
    t = _as_tensor(x, name, "a numeric (N, D) array of embeddings")
    if t.ndim != 2:
        raise RecallInputError(
            f"{name} must be a 2-D array (num_items, embedding_dim), got shape {tuple(t.shape)}; "
            "fix: stack the embeddings into one (N, D) array"
        )
    if t.shape[0] == 0:
        raise RecallInputError(
            f"{name} is empty (shape {tuple(t.shape)}): at least one embedding is needed; "
            "fix: check the split / file that produced it"
        )
    if t.shape[1] == 0:
        raise RecallInputError(
            f"{name} have embedding dimension 0 (shape {tuple(t.shape)}); expected (N, D) with "
            "D >= 1; fix: check the model / file that produced them"
        )
    was_finite = bool(torch.isfinite(t).all()) if t.is_floating_point() else True
    t = t.to(torch.float32)
    bad_rows = (~torch.isfinite(t)).any(dim=1)
    n_bad = int(bad_rows.sum())
    if n_bad:
        first = bad_rows.nonzero()[:5].flatten().tolist()
        cause = (
            "NaN or Inf values"
            if not was_finite
            else f"values beyond the float32 range (|x| > {_FLOAT32_MAX:.3g})"
        )
        raise RecallInputError(
            f"{name} has {n_bad} row(s) with {cause} (first rows: {first}); "
            "expected finite embeddings; fix: check the model for diverged training or "
            "normalisation of all-zero features, and drop or recompute those rows"
        )
    return t


def check_nonzero_rows(t: torch.Tensor, name: str) -> None:
    """Cosine similarity is undefined for an all-zero row: refuse, naming the rows."""
    zero = ~(t != 0).any(dim=1)
    n_zero = int(zero.sum())
    if n_zero:
        rows = zero.nonzero().flatten()
        shown = rows[:10].tolist()
        more = f" and {n_zero - len(shown)} more" if n_zero > len(shown) else ""
        raise RecallInputError(
            f"{name} has {n_zero} all-zero row(s) (rows {shown}{more}): cosine similarity is "
            "undefined for them, so their ranks would be arbitrary; fix: drop those rows (and "
            "their labels) or re-embed those items (a zero embedding usually means a dead or "
            "diverged model, or a blank input)"
        )


def normalize_rows(t: torch.Tensor) -> torch.Tensor:
    """L2-normalise the rows of a float32 matrix without float32 over- or underflow.

    Rows whose norm a float32 sum of squares handles exactly enough are normalised in float32
    (``torch.nn.functional.normalize``); the others (very large or very small values) in float64,
    divided by their float64 norm and rounded to float32. Rows must be non-zero (see
    :func:`check_nonzero_rows`).
    """
    out = torch.nn.functional.normalize(t, dim=1)
    norms = torch.linalg.vector_norm(t.double(), dim=1)
    extreme = (norms < _SAFE_NORM[0]) | (norms > _SAFE_NORM[1])
    if bool(extreme.any()):
        rows = t[extreme].double()
        out[extreme] = (rows / norms[extreme, None]).to(t.dtype)
    return out


def check_inner_products_fit(query: torch.Tensor, gallery: torch.Tensor) -> None:
    """Without normalisation, float32 inner products must stay finite."""
    bound = float(
        torch.linalg.vector_norm(query.double(), dim=1).max()
        * torch.linalg.vector_norm(gallery.double(), dim=1).max()
    )
    if bound > 1e37:
        raise RecallInputError(
            f"with normalize=False the inner products of these embeddings reach {bound:.3g}, "
            f"beyond what float32 holds ({_FLOAT32_MAX:.3g}); the ranks would be wrong; "
            "fix: use normalize=True (cosine) or scale the embeddings down"
        )


def as_label_vector(y: Any, name: str, length: int, emb_name: str) -> torch.Tensor:
    """Return labels as a 1-D int64 tensor of the given length (float labels must be integral)."""
    t = _as_tensor(y, name, "integer class ids (one per embedding)")
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise RecallInputError(
            f"{name} must be 1-D (one integer class id per item), got shape {tuple(t.shape)}; "
            "fix: pass a single label level, e.g. labels[:, 0]"
        )
    if len(t) != length:
        raise RecallInputError(
            f"length mismatch: {emb_name} has {length} rows but {name} has {len(t)} labels; "
            "expected one label per embedding; fix: pass labels from the same split and order"
        )
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or not bool((t == torch.round(t)).all()):
            raise RecallInputError(
                f"{name} contains non-integer or non-finite values; expected integer class ids; "
                "fix: map classes to integers"
            )
    elif t.dtype == torch.bool:
        raise RecallInputError(
            f"{name} has dtype {t.dtype}; expected integer class ids; "
            "fix: convert them, e.g. labels.astype(np.int64)"
        )
    return t.to(torch.int64)


def _positive_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer (not a bool, not a float) >= 1, else None."""
    if isinstance(value, bool):
        return None
    try:
        k = operator.index(value)
    except TypeError:
        return None
    return k if k >= 1 else None


def check_k_values(k_values: Iterable[int]) -> tuple[int, ...]:
    """Return the K list as a sorted tuple of unique positive ints."""
    example = "fix: e.g. k_values=(1, 2, 4, 8)"
    if isinstance(k_values, (str, bytes)) or not isinstance(k_values, Iterable):
        raise RecallInputError(
            f"k_values must be a sequence of positive integers, got {k_values!r}; {example}"
        )
    given = list(k_values)
    if not given:
        raise RecallInputError(
            f"k_values is empty; expected one or more positive integers; {example}"
        )
    bad = [k for k in given if _positive_int(k) is None]
    if bad:
        raise RecallInputError(
            f"k_values must be positive integers, got {tuple(given)!r} (not a positive integer: "
            f"{', '.join(repr(k) for k in bad)}); {example}"
        )
    return tuple(sorted({operator.index(k) for k in given}))


def check_block_size(block_size: Any) -> int | None:
    """``None`` (the default tile side) or a positive int; anything else is refused."""
    if block_size is None:
        return None
    size = _positive_int(block_size)
    if size is None:
        raise RecallInputError(
            f"block_size must be a positive integer (the side of the similarity tiles) or None "
            f"for the default, got {block_size!r}; fix: omit it, or pass e.g. block_size=2048"
        )
    return size


def check_device(device: Any, what: str = "device") -> torch.device | None:
    """``None`` stays None; otherwise the device must exist on this machine.

    Uses the package's one device check (:func:`pml_proxy_anchor.training.device.resolve_device`,
    which also understands ``"auto"``); its message is phrased for the ``what`` argument.
    """
    if device is None:
        return None
    if isinstance(device, torch.device):
        spec = str(device)
    elif isinstance(device, str):
        spec = device
    else:
        raise RecallInputError(
            f"{what} must be a device name such as 'cpu', 'cuda' or 'cuda:0', got {device!r}"
        )
    from pml_proxy_anchor.training.device import resolve_device

    return resolve_device(spec, what)


def check_k_fits_gallery(k_values: Sequence[int], gallery_size: int, self_retrieval: bool) -> None:
    """K may not exceed the number of items a query can retrieve."""
    k_max = max(k_values)
    if k_max > gallery_size:
        what = (
            f"the gallery has {gallery_size} retrievable items per query "
            f"(self-retrieval: N - 1 = {gallery_size})"
            if self_retrieval
            else f"the gallery has only {gallery_size} items"
        )
        raise RecallInputError(
            f"K={k_max} is larger than the gallery: {what}; Recall@{k_max} would be "
            f"trivially 1 for every query with a positive; fix: drop K > {gallery_size} from "
            "k_values (or evaluate on the full split)"
        )
