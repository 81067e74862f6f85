"""Recall@K (the metric of Kim et al., *Proxy Anchor Loss for Deep Metric Learning*, CVPR 2020).

Recall@K = (1 / |Q|) * sum_q 1[ one of the K nearest gallery items of q has q's class ],
nearest by cosine similarity. Self-retrieval (CUB-200, Cars-196, SOP): every embedding is a
query against all the others, itself excluded by index. Query/gallery (In-Shop): queries search
the gallery only. A query whose class has no other item in the gallery counts as a miss (a
:class:`RecallAtKWarning` gives their number). Ties: see :mod:`.ranking`.

:class:`RecallAtKCalculator` plugs this into PML's ``AccuracyCalculator`` (and so into PML's
testers and logging presets) as metrics ``recall_at_<K>``; PML's own metrics keep working.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from pytorch_metric_learning.utils.accuracy_calculator import (
    AccuracyCalculator,
    maybe_get_avg_of_avgs,
)

from pml_proxy_anchor.registry import choose

from .approximate import approximate_best_positive_ranks
from .ranking import NO_POSITIVE, best_positive_ranks
from .validation import (
    RecallInputError,
    as_float_matrix,
    as_label_vector,
    check_block_size,
    check_device,
    check_inner_products_fit,
    check_k_fits_gallery,
    check_k_values,
    check_nonzero_rows,
    normalize_rows,
)

DEFAULT_K_VALUES: tuple[int, ...] = (1, 2, 4, 8)


class RecallAtKWarning(UserWarning):
    """Some queries have no positive in the gallery; they count as misses."""


def recall_metric_name(k: int) -> str:
    return f"recall_at_{k}"


def recall_ranks(
    query: Any,
    query_labels: Any,
    gallery: Any = None,
    gallery_labels: Any = None,
    *,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    ref_includes_query: bool = False,
    normalize: bool = True,
    exact: bool = True,
    device: torch.device | str | None = None,
    block_size: int | None = None,
    approximate_index: str = "HNSW32",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the input and return (ranks of the best positives, query labels) on ``device``.

    ``ranks[i] < K`` iff query i is a hit at K; ``ranks[i] == NO_POSITIVE`` if its class is
    absent from the gallery (a :class:`RecallAtKWarning` reports how many). With
    ``normalize=True`` (cosine) an all-zero embedding row is refused: its similarities are
    undefined.
    """
    ks = check_k_values(k_values)
    block_size = check_block_size(block_size)
    dev = check_device(device)
    q = as_float_matrix(query, "query embeddings")
    ql = as_label_vector(query_labels, "query labels", len(q), "query embeddings")
    if gallery is None:
        if gallery_labels is not None:
            raise RecallInputError(
                "gallery_labels were given without gallery embeddings; "
                "fix: pass both (query/gallery) or neither (self-retrieval)"
            )
        g = gl = None
        n_retrievable = len(q) - 1
    else:
        if gallery_labels is None:
            raise RecallInputError(
                "gallery embeddings were given without gallery_labels; fix: pass both"
            )
        g = as_float_matrix(gallery, "gallery embeddings")
        gl = as_label_vector(gallery_labels, "gallery labels", len(g), "gallery embeddings")
        if g.shape[1] != q.shape[1]:
            raise RecallInputError(
                f"query embeddings have dimension {q.shape[1]} but gallery embeddings have "
                f"{g.shape[1]}; fix: embed both with the same model"
            )
        n_retrievable = len(g) - 1 if ref_includes_query else len(g)
        if ref_includes_query and (
            len(g) < len(q) or not torch.equal(g[: len(q)], q) or not torch.equal(gl[: len(q)], ql)
        ):
            raise RecallInputError(
                "ref_includes_query=True requires gallery[:len(query)] == query (PML's "
                "convention); fix: put the queries first in the gallery, or pass gallery=None "
                "for self-retrieval"
            )
    check_k_fits_gallery(ks, n_retrievable, self_retrieval=g is None or ref_includes_query)
    if normalize:
        check_nonzero_rows(q, "query embeddings")
        if g is not None:
            check_nonzero_rows(g, "gallery embeddings")
    else:
        check_inner_products_fit(q, q if g is None else g)
    dev = dev if dev is not None else q.device
    q, ql = q.to(dev), ql.to(dev)
    if normalize:
        q = normalize_rows(q)
    if g is not None and gl is not None:
        g, gl = g.to(dev), gl.to(dev)
        if ref_includes_query:
            g = torch.cat([q, normalize_rows(g[len(q) :])]) if normalize else g
        elif normalize:
            g = normalize_rows(g)
    if exact:
        ranks = best_positive_ranks(
            q,
            ql,
            g,
            gl,
            ref_includes_query=ref_includes_query,
            block_size=block_size,
            progress=progress,
        )
    else:
        ranks = approximate_best_positive_ranks(
            q,
            ql,
            g,
            gl,
            max(ks),
            ref_includes_query=ref_includes_query,
            index_factory=approximate_index,
        )
    missing = int((ranks == NO_POSITIVE).sum())
    if missing and exact:
        why = "a class with a single item" if g is None or ref_includes_query else "no gallery item"
        warnings.warn(
            f"{missing} of {len(q)} queries have no item of their class in the gallery "
            f"({why}); they count as misses at every K",
            RecallAtKWarning,
            stacklevel=3,
        )
    return ranks, ql


def compute_recall_at_k(
    query: Any,
    query_labels: Any,
    gallery: Any = None,
    gallery_labels: Any = None,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    *,
    normalize: bool = True,
    exact: bool = True,
    device: torch.device | str | None = None,
    block_size: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Recall@K for each K: ``{"recall_at_1": 0.63, ...}``.

    ``gallery=None`` is self-retrieval (each query against all other queries, itself excluded by
    index); otherwise queries search the gallery and nothing is excluded. Embeddings are
    L2-normalised first (cosine similarity) unless ``normalize=False`` (inner product). Inputs may
    be numpy arrays or tensors; labels are integer class ids.
    """
    ranks, _ = recall_ranks(
        query,
        query_labels,
        gallery,
        gallery_labels,
        k_values=k_values,
        normalize=normalize,
        exact=exact,
        device=device,
        block_size=block_size,
        progress=progress,
    )
    return {
        recall_metric_name(k): float((ranks < k).double().mean()) for k in check_k_values(k_values)
    }


def _same(a: Any, b: Any) -> bool:
    if b is None or len(a) != len(b):
        return False
    return bool(torch.equal(torch.as_tensor(a), torch.as_tensor(b)))


class RecallAtKCalculator(AccuracyCalculator):
    """PML ``AccuracyCalculator`` with Recall@K metrics ``recall_at_<K>`` (one per K).

    Args:
        k_values: the Ks (see :mod:`.presets` for the paper's per-dataset lists).
        include: metrics to compute. ``None`` (default): the recall metrics only (fast).
            Otherwise PML's semantics: ``()`` = every metric (PML's too), or a list of names such
            as ``("recall_at_1", "precision_at_1", "mean_average_precision_at_r")``.
        exclude: metrics to leave out.
        exact: exact search (default) or, if False, a faiss approximate index for very large
            galleries (``approximate_index``, a faiss factory string, default "HNSW32").
        normalize: L2-normalise before computing similarities (cosine; PML's testers already
            normalise by default).
        block_size: GEMM tile side for the exact search (a positive int; default 2048 on CPU,
            8192 on GPU).
        progress: tqdm bar over query blocks.
        **accuracy_calculator_kwargs: passed to PML's ``AccuracyCalculator`` (``k``, ``device``,
            ``avg_of_avgs``, ``return_per_class``, ``knn_func``...). ``k`` defaults to
            ``"max_bin_count"`` here, enough for PML's precision_at_1, r_precision and
            mean_average_precision_at_r without a full N x N neighbour list.

    In PML's testers a split evaluated against itself is self-retrieval (``ref_includes_query``,
    the query excluded by index); ``splits_to_eval=[("query", ["gallery"])]`` is query/gallery.
    PML's ``precision_at_1`` skips queries whose class is absent from the reference; Recall@K
    counts them as misses, so the two differ only when such queries exist (or on exact ties).
    """

    def __init__(
        self,
        k_values: Sequence[int] = DEFAULT_K_VALUES,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        exact: bool = True,
        normalize: bool = True,
        block_size: int | None = None,
        approximate_index: str = "HNSW32",
        progress: bool = False,
        **accuracy_calculator_kwargs: Any,
    ) -> None:
        self.k_values = check_k_values(k_values)
        self.exact = exact
        self.normalize = normalize
        self.block_size = check_block_size(block_size)
        self.approximate_index = approximate_index
        self.progress = progress
        self._recall_names = {recall_metric_name(k): k for k in self.k_values}
        for name, k in self._recall_names.items():
            setattr(self, f"calculate_{name}", functools.partial(self._recall_from_ranks, k=k))
        if include is None:
            include = tuple(self._recall_names)
        include = self._metric_names(include, "include")
        exclude = self._metric_names(exclude, "exclude")
        if accuracy_calculator_kwargs.get("device") is not None:
            accuracy_calculator_kwargs["device"] = check_device(
                accuracy_calculator_kwargs["device"]
            )
        accuracy_calculator_kwargs.setdefault("k", "max_bin_count")
        if accuracy_calculator_kwargs.get("label_comparison_fn") is not None:
            raise RecallInputError(
                "RecallAtKCalculator compares integer class ids; a custom label_comparison_fn "
                "is not supported; fix: use PML's AccuracyCalculator for custom label matching"
            )
        super().__init__(
            include=tuple(include), exclude=tuple(exclude), **accuracy_calculator_kwargs
        )

    def _metric_names(self, names: Sequence[str], argument: str) -> tuple[str, ...]:
        """``include`` / ``exclude`` as a tuple of known metric names, or a clear error."""
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise RecallInputError(
                f"{argument} must be a list of metric names, got {names!r}; "
                f"fix: e.g. {argument}=('recall_at_1',)"
            )
        known = {n.removeprefix("calculate_"): n for n in dir(self) if n.startswith("calculate_")}
        for name in names:
            if isinstance(name, str) and name.startswith("recall_at_") and name not in known:
                raise RecallInputError(
                    f"{argument} names {name!r}, but its K is not in k_values {self.k_values}; "
                    f"fix: add it to k_values (computed metrics: {', '.join(self._recall_names)})"
                )
            choose(name, known, f"metric in {argument}")  # raises with the closest names
        return tuple(names)

    def _recall_from_ranks(
        self, recall_ranks: torch.Tensor, recall_labels: torch.Tensor, k: int, **kwargs: Any
    ) -> float | list[float]:
        hits = (recall_ranks < k).to(torch.float64)
        return maybe_get_avg_of_avgs(hits, recall_labels, self.avg_of_avgs, self.return_per_class)

    def get_accuracy(
        self,
        query: Any,
        query_labels: Any,
        reference: Any = None,
        reference_labels: Any = None,
        ref_includes_query: bool = False,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> dict[str, Any]:
        """PML's signature; recall metrics from one exact pass, the others from PML."""
        function_dict = self.get_function_dict(include, exclude)
        recall = [m for m in function_dict if m in self._recall_names]
        others = [m for m in function_dict if m not in self._recall_names]
        results: dict[str, Any] = {}
        if recall:
            ks = [self._recall_names[m] for m in recall]
            self_mode = reference is None or ref_includes_query
            if (
                ref_includes_query
                and _same(query, reference)
                and _same(query_labels, reference_labels)
            ):
                reference = reference_labels = None  # one split against itself: symmetric path
            ranks, labels = recall_ranks(
                query,
                query_labels,
                reference,
                reference_labels,
                k_values=ks,
                ref_includes_query=self_mode and reference is not None,
                normalize=self.normalize,
                exact=self.exact,
                device=self.device,
                block_size=self.block_size,
                approximate_index=self.approximate_index,
                progress=self.progress,
            )
            for m in recall:
                results[m] = function_dict[m](recall_ranks=ranks, recall_labels=labels)
        if others:
            results.update(
                super().get_accuracy(
                    query,
                    query_labels,
                    reference,
                    reference_labels,
                    ref_includes_query,
                    include=tuple(others),
                )
            )
        self.curr_function_dict = function_dict
        return {m: results[m] for m in function_dict}

    def description(self) -> str:
        base = super().description()
        return base if self.exact else "_".join(x for x in (base, "approx") if x)
