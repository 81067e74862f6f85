"""Recall@K parity with an independent brute force (dense float64 + stable sort), both protocols."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from recall_reference import brute_force_hits, negatives_above_best_positive

from pml_proxy_anchor.evaluation import NO_POSITIVE, best_positive_ranks, compute_recall_at_k
from pml_proxy_anchor.evaluation import ranking as ranking_module


def _random(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centres = rng.standard_normal((classes, d))
    x = centres[labels] + 1.5 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels.astype(np.int64)


def _hits(ranks: torch.Tensor, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    return {k: (ranks < k).numpy() for k in ks}


def _assert_same(ours: dict[int, np.ndarray], ref: dict[int, np.ndarray]) -> None:
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k], err_msg=f"K={k}")


@pytest.mark.parametrize("block_size", [7, 64, 10_000])
def test_self_retrieval_random_matches_brute_force(block_size: int) -> None:
    x, y = _random(300, 16, 40, seed=0)
    ks = (1, 2, 4, 8, 16, 100, 299)
    ranks = best_positive_ranks(torch.from_numpy(x), torch.from_numpy(y), block_size=block_size)
    _assert_same(_hits(ranks, ks), brute_force_hits(x, y, None, None, ks))


@pytest.mark.parametrize("block_size", [13, 10_000])
def test_query_gallery_random_matches_brute_force(block_size: int) -> None:
    x, y = _random(420, 16, 30, seed=1)
    q, ql, g, gl = x[:150], y[:150], x[150:], y[150:]
    ks = (1, 10, 20, 30, 40, 270)
    ranks = best_positive_ranks(*map(torch.from_numpy, (q, ql, g, gl)), block_size=block_size)
    _assert_same(_hits(ranks, ks), brute_force_hits(q, ql, g, gl, ks))


def test_ref_includes_query_matches_brute_force() -> None:
    """PML's convention: reference = [query; more items], query i is reference item i."""
    x, y = _random(260, 8, 20, seed=2)
    q, ql = x[:100], y[:100]
    ks = (1, 2, 4, 8, 259)
    ranks = best_positive_ranks(
        torch.from_numpy(q),
        torch.from_numpy(ql),
        torch.from_numpy(x),
        torch.from_numpy(y),
        ref_includes_query=True,
        block_size=32,
    )
    _assert_same(_hits(ranks, ks), brute_force_hits(q, ql, x, y, ks, ref_includes_query=True))


def test_equals_negatives_above_best_positive_formulation() -> None:
    """Tie-free data: hit@K <=> #negatives more similar than the best positive < K."""
    x, y = _random(250, 12, 25, seed=3)
    ranks = best_positive_ranks(torch.from_numpy(x), torch.from_numpy(y), block_size=50).numpy()
    expected = negatives_above_best_positive(x, y, None, None)
    has_pos = np.isfinite(expected)
    np.testing.assert_array_equal(ranks[has_pos], expected[has_pos].astype(np.int64))
    np.testing.assert_array_equal(ranks[~has_pos], NO_POSITIVE)


def _lattice(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Small-integer vectors: every similarity is exact in float32, so ties are real ties."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, size=(n, 4)).astype(np.float32)
    x[x.sum(axis=1) == 0, 0] = 1.0  # no zero vectors needed, but keep some variety
    return x, rng.integers(0, 6, size=n).astype(np.int64)


@pytest.mark.parametrize("block_size", [5, 1000])
def test_exact_ties_and_duplicates_self_retrieval(block_size: int) -> None:
    x, y = _lattice(200, seed=4)  # 81 distinct vectors for 200 items: many exact duplicates
    ks = tuple(range(1, 200))
    ranks = best_positive_ranks(torch.from_numpy(x), torch.from_numpy(y), block_size=block_size)
    _assert_same(_hits(ranks, ks), brute_force_hits(x, y, None, None, ks))


def test_exact_ties_and_duplicates_query_gallery() -> None:
    x, y = _lattice(240, seed=5)
    q, ql, g, gl = x[:90], y[:90], x[90:], y[90:]
    ks = tuple(range(1, 151))
    ranks = best_positive_ranks(*map(torch.from_numpy, (q, ql, g, gl)), block_size=17)
    _assert_same(_hits(ranks, ks), brute_force_hits(q, ql, g, gl, ks))


def test_wide_band_and_large_class_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of exact duplicates (the dense float64 fallback) and a tiny memory budget."""
    monkeypatch.setattr(ranking_module, "_GRAM_BYTES", 4096)
    rng = np.random.default_rng(6)
    x = np.repeat(rng.integers(-2, 3, size=(3, 6)).astype(np.float32), 120, axis=0)
    y = rng.integers(0, 3, size=len(x)).astype(np.int64)
    ks = (1, 2, 50, 119, 120, 121, 359)
    ranks = best_positive_ranks(torch.from_numpy(x), torch.from_numpy(y), block_size=128)
    _assert_same(_hits(ranks, ks), brute_force_hits(x, y, None, None, ks))


def test_constructed_tie_rule_exact_values() -> None:
    """A negative tied with the best positive ranks above it iff its index is lower."""
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    tie_neg_first = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    labels = np.array([9, 7, 7])  # item 0: negative, item 1: positive (tied), item 2: positive
    got = compute_recall_at_k(q, [7], tie_neg_first, labels, (1, 2), normalize=False)
    assert got == {"recall_at_1": 0.0, "recall_at_2": 1.0}
    got = compute_recall_at_k(q, [7], tie_neg_first, [7, 9, 7], (1, 2), normalize=False)
    assert got == {"recall_at_1": 1.0, "recall_at_2": 1.0}


def test_self_excluded_by_index_not_by_distance() -> None:
    """Exact duplicates stay in the gallery: a same-class duplicate is a hit at K=1."""
    x = np.array([[1, 0], [1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    # item 0's best positive is its duplicate (sim 1), item 2's is item 3 (sim 0.8, first).
    assert compute_recall_at_k(x, y, k_values=(1,), normalize=False) == {"recall_at_1": 1.0}
    y_other = np.array([0, 1, 0, 1])  # now the duplicate of item 0 is a negative at sim 1
    ranks = best_positive_ranks(torch.from_numpy(x), torch.from_numpy(y_other))
    # q0: best positive 2 (sim 0); above: 1 (sim 1), 3 (0.6)                    -> 2
    # q1: best positive 3 (sim 0.6); above: 0 (sim 1)                            -> 1
    # q2: best positive 0 (sim 0, index 0); 1 ties at 0 with index 1 (below); 3 (0.8) -> 1
    # q3: best positive 1 (sim 0.6, index 1); 0 ties with index 0 (above); 2 (0.8)    -> 2
    assert ranks.tolist() == [2, 1, 1, 2]
