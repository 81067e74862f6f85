"""Approximate rank of the best positive with a faiss approximate index (HNSW, IVF, ...).

For galleries too large for an exact pass: a faiss index built with ``faiss.index_factory``
(inner-product metric) returns the top-``k_max`` neighbours of each query; the rank of the best
positive is its position in that list (``NO_POSITIVE`` when no positive is in it). The result is
APPROXIMATE: the index may miss true neighbours, and ties follow faiss's order, not the exact
rule of :mod:`pml_proxy_anchor.evaluation.ranking`.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

from .ranking import NO_POSITIVE
from .validation import RecallInputError


def _faiss_reason(err: RuntimeError) -> str:
    """The last line of a faiss error (its first names the C++ function)."""
    text = str(err).strip()
    return text.split(": ", 2)[-1].splitlines()[0][:200] if text else "faiss error"


def approximate_best_positive_ranks(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor | None,
    gallery_labels: torch.Tensor | None,
    k_max: int,
    *,
    ref_includes_query: bool = False,
    index_factory: str = "HNSW32",
    search_params: dict[str, float] | None = None,
    batch_size: int = 8192,
) -> torch.Tensor:
    """Like :func:`ranking.best_positive_ranks`, but from an approximate top-``k_max`` search.

    ``index_factory`` is a faiss factory string ("HNSW32", "IVF1024,Flat", ...);
    ``search_params`` are set with ``faiss.ParameterSpace`` (default: efSearch = max(2 k_max, 64)
    for HNSW, nprobe = 32 for IVF).
    """
    self_retrieval = gallery is None or ref_includes_query
    if gallery is None:
        gallery, gallery_labels = query, query_labels
    assert gallery_labels is not None
    if not isinstance(index_factory, str) or not index_factory.strip():
        raise RecallInputError(
            f"approximate_index must be a faiss index factory string such as 'HNSW32' or "
            f"'IVF1024,Flat', got {index_factory!r}"
        )
    g_np = np.ascontiguousarray(gallery.detach().cpu().numpy(), dtype=np.float32)
    try:
        index = faiss.index_factory(g_np.shape[1], index_factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise RecallInputError(
            f"approximate_index={index_factory!r} is not a faiss index factory string "
            f"({_faiss_reason(err)}); fix: e.g. 'HNSW32' or 'IVF1024,Flat'"
        ) from None
    try:
        if not index.is_trained:
            index.train(g_np)
        index.add(g_np)
    except RuntimeError as err:
        raise RecallInputError(
            f"the approximate index {index_factory!r} cannot be built on {len(g_np)} gallery "
            f"items ({_faiss_reason(err)}); fix: use the exact search (exact=True, the default) "
            "or an index for fewer items (e.g. fewer IVF lists)"
        ) from None
    params = dict(search_params or {})
    if not params:
        if "HNSW" in index_factory:
            params["efSearch"] = max(2 * k_max, 64)
        if "IVF" in index_factory:
            params["nprobe"] = 32
    space = faiss.ParameterSpace()
    for name, value in params.items():
        try:
            space.set_index_parameter(index, name, value)
        except RuntimeError as err:
            raise RecallInputError(
                f"search parameter {name}={value!r} does not apply to the faiss index "
                f"{index_factory!r} ({_faiss_reason(err)}); fix: e.g. efSearch for HNSW, "
                "nprobe for IVF"
            ) from None
    k = min(k_max + int(self_retrieval), len(g_np))
    q_np = np.ascontiguousarray(query.detach().cpu().numpy(), dtype=np.float32)
    g_lab = gallery_labels.cpu().numpy()
    q_lab = query_labels.cpu().numpy()
    ranks = np.full(len(q_np), NO_POSITIVE, dtype=np.int64)
    for b0 in range(0, len(q_np), batch_size):
        b1 = min(b0 + batch_size, len(q_np))
        _, nn = index.search(q_np[b0:b1], k)
        if self_retrieval:
            keep = nn != np.arange(b0, b1)[:, None]
            nn = np.stack([row[m][:k_max] for row, m in zip(nn, keep, strict=True)])
        valid = nn >= 0
        hit = valid & (g_lab[np.where(valid, nn, 0)] == q_lab[b0:b1, None])
        first = np.where(hit.any(axis=1), hit.argmax(axis=1), NO_POSITIVE)
        ranks[b0:b1] = first
    return torch.from_numpy(ranks).to(query.device)
