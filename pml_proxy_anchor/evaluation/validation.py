"""Input checks for Recall@K: clear errors that name the problem, the expected input and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class RecallInputError(ValueError):
    """Bad input to a Recall@K computation (shapes, values, K list)."""


def as_float_matrix(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as a 2-D float32 tensor, rejecting empty, non-2-D and non-finite input."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
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
    if not t.is_floating_point():
        t = t.to(torch.float32)
    t = t.to(torch.float32)
    bad_rows = (~torch.isfinite(t)).any(dim=1)
    n_bad = int(bad_rows.sum())
    if n_bad:
        first = bad_rows.nonzero()[:5].flatten().tolist()
        raise RecallInputError(
            f"{name} has {n_bad} row(s) with NaN or Inf values (first rows: {first}); "
            "expected finite embeddings; fix: check the model for diverged training or "
            "normalisation of all-zero features, and drop or recompute those rows"
        )
    return t


def as_label_vector(y: Any, name: str, length: int, emb_name: str) -> torch.Tensor:
    """Return labels as a 1-D int64 tensor of the given length (float labels must be integral)."""
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
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
    elif t.dtype == torch.bool or t.is_complex():
        raise RecallInputError(f"{name} has dtype {t.dtype}; expected integer class ids")
    return t.to(torch.int64)


def check_k_values(k_values: Sequence[int]) -> tuple[int, ...]:
    """Return the K list as a sorted tuple of unique positive ints."""
    try:
        ks = tuple(sorted({int(k) for k in k_values}))
    except (TypeError, ValueError) as e:
        raise RecallInputError(
            f"k_values must be a sequence of positive integers, got {k_values!r}; "
            "fix: e.g. k_values=(1, 2, 4, 8)"
        ) from e
    if not ks or ks[0] < 1 or any(int(k) != k for k in k_values):
        raise RecallInputError(
            f"k_values must be non-empty positive integers, got {tuple(k_values)!r}; "
            "fix: e.g. k_values=(1, 2, 4, 8)"
        )
    return ks


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
