"""Input checks for the Proxy-Anchor loss: its hyperparameters, the embeddings and labels of a
call, and a miner's ``indices_tuple``. Each error derives from
:class:`pml_proxy_anchor.errors.UserError` and names the argument, the value, what was expected
and the fix."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from pml_proxy_anchor.errors import UserError

from .fused import DEFAULT_CHUNK_BYTES

_PREVIEW = 8


class LossInputError(UserError, ValueError):
    """A loss argument or input has a value the loss cannot use (range, shape, NaN/Inf)."""


class LossInputTypeError(UserError, TypeError):
    """A loss argument or input has the wrong type (a string for a number, a list for a
    tensor)."""


def _preview(values: torch.Tensor) -> str:
    items = values.flatten()[:_PREVIEW].tolist()
    more = f" ... ({values.numel()} in total)" if values.numel() > _PREVIEW else ""
    return f"{items}{more}"


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_positive_int(name: str, value: Any, or_none: bool = False) -> None:
    """``value`` must be a Python or NumPy integer (not bool) and >= 1 (or None if allowed)."""
    expected = "a positive integer" + (" or None (automatic)" if or_none else "")
    if or_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise LossInputTypeError(
            f"{name} must be {expected}; got {value!r} of type {_type_name(value)}. "
            f"Fix: pass a whole number, e.g. {name}=10 (not a float, bool or string)."
        )
    if value < 1:
        raise LossInputError(f"{name} must be {expected}; got {value!r}, which is < 1")


def _check_finite_real(name: str, value: Any, hint: str) -> float:
    """``value`` must be a finite Python or NumPy real number (not bool); returns it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LossInputTypeError(
            f"{name} must be a finite number ({hint}); got {value!r} of type "
            f"{_type_name(value)}. Fix: pass a float, e.g. {name}=float(value)."
        )
    number = float(value)
    if not math.isfinite(number):
        raise LossInputError(f"{name} must be a finite number ({hint}); got {value!r}")
    return number


def validate_hyperparameters(
    num_classes: int,
    embedding_size: int,
    alpha: float,
    *,
    margin: float = 0.1,
    chunk_size: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> None:
    """Check the hyperparameters of a Proxy-Anchor loss.

    ``num_classes``, ``embedding_size`` and ``chunk_bytes`` must be integers >= 1 (Python or
    NumPy integers; bools, floats and strings are refused, never rounded); ``chunk_size`` is
    ``None`` (automatic) or such an integer. ``alpha`` must be a finite number > 0 and ``margin``
    a finite number. The paper uses ``margin`` (its delta) = 0.1 > 0; zero and negative margins
    are accepted as ablations (docs/paper.md section 1). The defaults of the keyword arguments
    are the loss's own defaults, so omitting them checks nothing extra.

    Raises:
        LossInputTypeError: (also a ``TypeError``) an argument of the wrong type.
        LossInputError: (also a ``ValueError``) an argument out of range, NaN or Inf.
    """
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("embedding_size", embedding_size)
    alpha_value = _check_finite_real("alpha", alpha, "the scale of the paper, > 0; it uses 32")
    if not alpha_value > 0:
        raise LossInputError(f"alpha must be > 0 (the paper uses 32); got {alpha!r}")
    _check_finite_real("margin", margin, "delta of the paper, which uses 0.1")
    _check_positive_int("chunk_size", chunk_size, or_none=True)
    _check_positive_int("chunk_bytes", chunk_bytes)


def check_flag(name: str, value: Any, allow_none: bool = False) -> None:
    """``value`` must be ``True`` or ``False`` (or ``None`` if allowed): a string such as
    ``"false"`` would otherwise count as true."""
    if isinstance(value, bool) or (allow_none and value is None):
        return
    expected = "True, False or None" if allow_none else "True or False"
    raise LossInputTypeError(
        f"{name} must be {expected}; got {value!r} of type {_type_name(value)}"
    )


def validate_inputs(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None,
    num_classes: int,
    embedding_size: int,
) -> torch.Tensor:
    """Check ``embeddings`` (B, D) and ``labels`` (B,) for the loss; returns the labels as a tensor.

    Raises:
        LossInputError: (also a ``ValueError``) wrong shapes or embedding size, non-integer
            labels, labels outside [0, num_classes), label/embedding length mismatch, NaN/Inf
            embeddings.
    """
    if not torch.is_tensor(embeddings) or embeddings.ndim != 2:
        shape = tuple(embeddings.shape) if torch.is_tensor(embeddings) else type(embeddings)
        raise LossInputError(
            f"embeddings must be a 2-D tensor of shape (batch_size, {embedding_size}); got {shape}"
        )
    if not embeddings.is_floating_point():
        raise LossInputError(
            f"embeddings must be floating point; got dtype {embeddings.dtype}. "
            "Convert them with embeddings.float()."
        )
    if embeddings.shape[1] != embedding_size:
        raise LossInputError(
            f"embeddings have size {embeddings.shape[1]} but the loss was built with "
            f"embedding_size={embedding_size}: build the loss with "
            f"embedding_size={embeddings.shape[1]} or make the model output {embedding_size} values"
        )
    if labels is None:
        raise LossInputError("labels are required: pass one integer class id per embedding row")
    if not torch.is_tensor(labels):
        labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise LossInputError(
            f"labels must be a 1-D tensor of shape ({embeddings.shape[0]},); "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise LossInputError(
            f"labels must be integer class ids in [0, {num_classes}) (dtype torch.int64); got "
            f"dtype {labels.dtype} with values {_preview(labels)}. Convert whole-number labels "
            "with labels.long()."
        )
    if labels.shape[0] != embeddings.shape[0]:
        raise LossInputError(
            f"got {labels.shape[0]} labels for {embeddings.shape[0]} embeddings: expected exactly "
            "one label per embedding row"
        )
    if labels.numel():
        low, high = torch.stack(torch.aminmax(labels)).tolist()  # one device sync
        if low < 0 or high >= num_classes:
            bad = (labels < 0) | (labels >= num_classes)
            offending = torch.unique(labels[bad])
            raise LossInputError(
                f"labels {_preview(offending)} are outside [0, {num_classes}) "
                f"(num_classes={num_classes}); expected class ids 0..{num_classes - 1}: remap the "
                "labels or build the loss with a larger num_classes"
            )
    # One cheap reduction first: the sum is finite when every value is, unless it overflows; only
    # a non-finite sum needs the per-element check (which then names the values, or passes).
    if embeddings.numel():
        total = embeddings.sum(dtype=torch.float32 if embeddings.dtype.itemsize < 4 else None)
        if not bool(torch.isfinite(total)):
            _check_finite(embeddings)
    return labels


def _check_finite(embeddings: torch.Tensor) -> None:
    finite = torch.isfinite(embeddings)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite.all(dim=1)).squeeze(1)
        n_nan = int(torch.isnan(embeddings).sum())
        n_inf = int(torch.isinf(embeddings).sum())
        raise LossInputError(
            f"embeddings contain {n_nan} NaN and {n_inf} Inf values, in rows {_preview(rows)} of "
            f"{embeddings.shape[0]}; expected finite values. Check the model output "
            "(learning rate, gradient clipping, mixed-precision overflow)."
        )


_TUPLE_NAMES = {
    3: ("anchors", "positives", "negatives"),
    4: ("anchors1", "positives", "anchors2", "negatives"),
}


def _tuple_problem(problem: str, batch_size: int, error: type[UserError]) -> UserError:
    return error(
        f"indices_tuple {problem}; expected a miner's output: (anchors, positives, negatives) or "
        f"(anchors1, positives, anchors2, negatives), each a 1-D integer tensor of batch indices "
        f"in [0, {batch_size}), with equal lengths within each tuple of triplets or pairs. Fix: "
        "pass the miner's result unchanged (indices_tuple = miner(embeddings, labels)) or None."
    )


def validate_indices_tuple(
    indices_tuple: Sequence[torch.Tensor] | None, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, ...] | None:
    """Check a miner's ``indices_tuple`` against a batch of ``batch_size`` embeddings.

    Accepted: ``None``; a tuple (or list) of 3 tensors (anchors, positives, negatives) of equal
    length; or of 4 tensors (anchors1, positives, anchors2, negatives) with ``len(anchors1) ==
    len(positives)`` and ``len(anchors2) == len(negatives)``. Every tensor is 1-D with an integer
    dtype and values in ``[0, batch_size)`` (negative indices do not wrap around). Tensors of
    length 0 (a miner that found nothing) are accepted. The check costs one min/max reduction.

    Returns:
        The tuple as int64 tensors on ``device`` (None stays None).

    Raises:
        LossInputTypeError: (also a ``TypeError``) not a tuple of tensors, or non-integer dtype.
        LossInputError: (also a ``ValueError``) wrong number of tensors, not 1-D, unequal
            lengths, or indices outside ``[0, batch_size)``.
    """
    if indices_tuple is None:
        return None
    if not isinstance(indices_tuple, (tuple, list)):
        raise _tuple_problem(
            f"is a {_type_name(indices_tuple)}, not a tuple of tensors",
            batch_size,
            LossInputTypeError,
        )
    names = _TUPLE_NAMES.get(len(indices_tuple))
    if names is None:
        raise _tuple_problem(
            f"has {len(indices_tuple)} tensors, not 3 or 4", batch_size, LossInputError
        )
    for index, (name, item) in enumerate(zip(names, indices_tuple, strict=True)):
        if not torch.is_tensor(item):
            raise _tuple_problem(
                f"item {index} ({name}) is a {_type_name(item)}, not a tensor",
                batch_size,
                LossInputTypeError,
            )
        if item.ndim != 1:
            raise _tuple_problem(
                f"item {index} ({name}) has shape {tuple(item.shape)}, not 1-D",
                batch_size,
                LossInputError,
            )
        if item.is_floating_point() or item.is_complex() or item.dtype == torch.bool:
            raise _tuple_problem(
                f"item {index} ({name}) has dtype {item.dtype}, not an integer dtype",
                batch_size,
                LossInputTypeError,
            )
    groups = [names] if len(names) == 3 else [names[:2], names[2:]]
    lengths = dict(zip(names, (len(item) for item in indices_tuple), strict=True))
    for group in groups:
        if len({lengths[name] for name in group}) > 1:
            found = ", ".join(f"{name}={lengths[name]}" for name in group)
            raise _tuple_problem(f"has unequal lengths ({found})", batch_size, LossInputError)
    out = tuple(item.to(device=device, dtype=torch.long) for item in indices_tuple)
    every = torch.cat(out)
    if every.numel():
        low, high = torch.stack(torch.aminmax(every)).tolist()  # one device sync
        if low < 0 or high >= batch_size:
            bad = [
                f"{name} {_preview(torch.unique(item[(item < 0) | (item >= batch_size)]))}"
                for name, item in zip(names, out, strict=True)
                if bool(((item < 0) | (item >= batch_size)).any())
            ]
            raise _tuple_problem(
                f"has indices outside [0, {batch_size}) for a batch of {batch_size} embeddings: "
                + "; ".join(bad),
                batch_size,
                LossInputError,
            )
    return out
