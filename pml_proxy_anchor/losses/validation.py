"""Input checks for the Proxy-Anchor loss: clear ``ValueError`` messages naming the offending
values, what was expected, and the fix."""

from __future__ import annotations

import torch

_PREVIEW = 8


def _preview(values: torch.Tensor) -> str:
    items = values.flatten()[:_PREVIEW].tolist()
    more = f" ... ({values.numel()} in total)" if values.numel() > _PREVIEW else ""
    return f"{items}{more}"


def validate_hyperparameters(num_classes: int, embedding_size: int, alpha: float) -> None:
    """Raise ``ValueError`` unless ``num_classes`` and ``embedding_size`` are positive and
    ``alpha > 0``."""
    if int(num_classes) < 1 or int(embedding_size) < 1:
        raise ValueError(
            f"num_classes and embedding_size must be positive integers; got "
            f"num_classes={num_classes}, embedding_size={embedding_size}"
        )
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (the paper uses 32); got {alpha}")


def validate_inputs(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None,
    num_classes: int,
    embedding_size: int,
) -> torch.Tensor:
    """Check ``embeddings`` (B, D) and ``labels`` (B,) for the loss; returns the labels as a tensor.

    Raises:
        ValueError: wrong shapes or embedding size, non-integer labels, labels outside
            [0, num_classes), label/embedding length mismatch, NaN/Inf embeddings.
    """
    if not torch.is_tensor(embeddings) or embeddings.ndim != 2:
        shape = tuple(embeddings.shape) if torch.is_tensor(embeddings) else type(embeddings)
        raise ValueError(
            f"embeddings must be a 2-D tensor of shape (batch_size, {embedding_size}); got {shape}"
        )
    if not embeddings.is_floating_point():
        raise ValueError(
            f"embeddings must be floating point; got dtype {embeddings.dtype}. "
            "Convert them with embeddings.float()."
        )
    if embeddings.shape[1] != embedding_size:
        raise ValueError(
            f"embeddings have size {embeddings.shape[1]} but the loss was built with "
            f"embedding_size={embedding_size}: build the loss with "
            f"embedding_size={embeddings.shape[1]} or make the model output {embedding_size} values"
        )
    if labels is None:
        raise ValueError("labels are required: pass one integer class id per embedding row")
    if not torch.is_tensor(labels):
        labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D tensor of shape ({embeddings.shape[0]},); "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be integer class ids in [0, {num_classes}) (dtype torch.int64); got "
            f"dtype {labels.dtype} with values {_preview(labels)}. Convert whole-number labels "
            "with labels.long()."
        )
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"got {labels.shape[0]} labels for {embeddings.shape[0]} embeddings: expected exactly "
            "one label per embedding row"
        )
    if labels.numel():
        low, high = torch.stack(torch.aminmax(labels)).tolist()  # one device sync
        if low < 0 or high >= num_classes:
            bad = (labels < 0) | (labels >= num_classes)
            offending = torch.unique(labels[bad])
            raise ValueError(
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
        raise ValueError(
            f"embeddings contain {n_nan} NaN and {n_inf} Inf values, in rows {_preview(rows)} of "
            f"{embeddings.shape[0]}; expected finite values. Check the model output "
            "(learning rate, gradient clipping, mixed-precision overflow)."
        )
