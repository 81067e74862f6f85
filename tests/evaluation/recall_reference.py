"""Independent brute-force Recall@K written from docs/paper.md section 4 (for the tests only).

Dense float64 similarities of the float32 embeddings, a stable descending sort (ties: lower
gallery index first), the query removed by index in self-retrieval, then the top-K definition:
hit iff one of the first K retrieved items has the query's class.
"""

from __future__ import annotations

import numpy as np


def brute_force_hits(
    query: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray | None,
    gallery_labels: np.ndarray | None,
    k_values: tuple[int, ...],
    ref_includes_query: bool = False,
) -> dict[int, np.ndarray]:
    """Per-query hit (bool) at each K by the top-K definition.

    ``gallery=None``: self-retrieval; ``ref_includes_query``: query i is gallery item i, removed.
    """
    self_retrieval = gallery is None or ref_includes_query
    g = query if gallery is None else gallery
    gl = query_labels if gallery is None else gallery_labels
    q64 = np.asarray(query, dtype=np.float32).astype(np.float64)
    g64 = np.asarray(g, dtype=np.float32).astype(np.float64)
    sims = q64 @ g64.T
    hits = {k: np.zeros(len(q64), dtype=bool) for k in k_values}
    for i in range(len(q64)):
        order = np.argsort(-sims[i], kind="stable")
        if self_retrieval:
            order = order[order != i]
        retrieved = np.asarray(gl)[order]
        for k in k_values:
            hits[k][i] = bool((retrieved[:k] == query_labels[i]).any())
    return hits


def negatives_above_best_positive(
    query: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray | None,
    gallery_labels: np.ndarray | None,
) -> np.ndarray:
    """#negatives strictly more similar than the best positive (inf if no positive)."""
    self_retrieval = gallery is None
    g = query if self_retrieval else gallery
    gl = np.asarray(query_labels if self_retrieval else gallery_labels)
    sims = np.asarray(query, np.float32).astype(np.float64) @ np.asarray(g, np.float32).T.astype(
        np.float64
    )
    out = np.full(len(sims), np.inf)
    for i in range(len(sims)):
        pos = gl == query_labels[i]
        if self_retrieval:
            pos[i] = False
        neg = gl != query_labels[i]
        if pos.any():
            out[i] = float((sims[i][neg] > sims[i][pos].max()).sum())
    return out
