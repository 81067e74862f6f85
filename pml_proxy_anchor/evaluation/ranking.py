"""Exact rank of each query's best positive: the quantity behind Recall@K.

Recall@K (Jegou et al., PAMI 2011; the protocol of Kim et al., *Proxy Anchor Loss for Deep Metric
Learning*, CVPR 2020, Sec. 4): a query is a hit at K iff one of its K nearest gallery items has
the query's class. With

    r(q) = #{ gallery items ranked above q's best (highest-ranked) positive },

hit@K(q) <=> r(q) < K, for every K at once. No top-K list (and no top-1000 heap) is needed.

Ranking rule (deterministic, documented in the README):

- items are ordered by similarity s(q, g) = <q, g> descending (cosine on L2-normalised input);
- ties are broken by gallery index ascending: an item tied with the best positive ranks above
  it iff its index is lower;
- in self-retrieval the query itself is removed *by index* (exact duplicates stay in the gallery);
- s(q, g) is the inner product of the float32 embeddings evaluated in float64 (products exact,
  one fixed summation order, ~1e-16 relative), so exact duplicates tie exactly and the result
  does not depend on the BLAS, the block sizes or the device.

Algorithm (two passes, memory O(block^2)):

1. Best positive per query: per class, the (queries x gallery items) similarities in float64
   (batched over classes of equal size), max with the query masked out; p*(q) = lowest gallery
   index at the max.
2. Counting: float32 GEMM tiles S = Q_blk @ G_blk^T. With e(q) a rigorous bound on the float32
   rounding error of s(q, .), an item with S > s+ + e is above, one with S < s+ - e is below, and
   only the rare items in the band |S - s+| <= e are re-evaluated in float64 and compared with the
   tie rule. A per-tile row max (one read pass) skips the rows with nothing >= s+ - e.
   In self-retrieval only tiles on or above the diagonal are computed (S is symmetric),
   and each tile counts for its rows and, transposed, for its columns: half the GEMM of a kNN.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import torch

from .validation import check_block_size

NO_POSITIVE = torch.iinfo(torch.int64).max
"""Rank given to a query whose class has no other item in the gallery: a miss at every K."""

_PAIR_CHUNK = 4096  # (query, item) pairs re-evaluated in float64 at a time
_GRAM_BYTES = 8 * 2**20  # float64 temporaries per step (small: cache- and allocator-friendly)


def default_block_size(num_gallery: int, device: torch.device) -> int:
    """Tile side for the float32 GEMM: 2048 on CPU (a 16 MB tile), 8192 on GPU."""
    size = 8192 if device.type == "cuda" else 2048
    return max(1, min(size, num_gallery))


def _blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _float32_error_bound(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """Per-query bound on |float32 GEMM value - exact inner product| (float64).

    Any summation order of a D-term float32 dot product errs by at most gamma_{D}*sum|q_i g_i|
    <= gamma_D ||q|| ||g|| (Higham, Accuracy and Stability of Numerical Algorithms, 3.1), with
    gamma_n = n u / (1 - n u), u = 2^-24. Reduced-precision matmul modes (TF32 / bf16, set with
    torch.set_float32_matmul_precision) round the inputs first; their bound is added. The result
    is doubled as a safety margin (it costs only a slightly wider band).
    """
    d = query.shape[1]
    u = 2.0**-24
    n_u = (d + 2) * u
    gamma = n_u / (1.0 - n_u)
    precision = torch.get_float32_matmul_precision()
    input_rounding = {"highest": 0.0, "high": 2.0 * 2.0**-11, "medium": 2.0 * 2.0**-8}[precision]
    if query.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        input_rounding = max(input_rounding, 2.0 * 2.0**-11)
    q_norm = torch.linalg.vector_norm(query.double(), dim=1)
    g_norm_max = torch.linalg.vector_norm(gallery.double(), dim=1).max()
    return 2.0 * (gamma + input_rounding) * q_norm * g_norm_max + 1e-300


def _round_down32(x: torch.Tensor) -> torch.Tensor:
    y = x.float()
    return torch.where(y.double() > x, torch.nextafter(y, torch.full_like(y, -float("inf"))), y)


def _round_up32(x: torch.Tensor) -> torch.Tensor:
    y = x.float()
    return torch.where(y.double() < x, torch.nextafter(y, torch.full_like(y, float("inf"))), y)


def _dot64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The one float64 inner product used for every exact decision (CPU, last dim).

    Every product of two float32 values is exact in float64; the sum over the contiguous last
    dimension follows the same order in every call, so equal vectors give bit-equal similarities
    (exact duplicates tie exactly) and the result does not depend on the device or on a BLAS.
    """
    return (a.double() * b.double()).sum(dim=-1)


def _count(mask: torch.Tensor) -> torch.Tensor:
    """Row sums of a bool matrix (the uint8 view sums several times faster than bool)."""
    return mask.view(torch.uint8).sum(dim=1, dtype=torch.int32).long()


class _BestPositive:
    """Pass 1: best-positive similarity s+ (float64) and its gallery index p* for each query.

    Runs on CPU copies of the embeddings. A float64 GEMM per class finds the candidates (within
    its rounding error of the max; nearly always one); :func:`_dot64` decides among them, so s+
    and p* are bit-consistent with the band re-evaluation of pass 2.
    """

    def __init__(
        self,
        query: torch.Tensor,
        query_labels: torch.Tensor,
        gallery: torch.Tensor,
        gallery_labels: torch.Tensor,
        self_retrieval: bool,
    ) -> None:
        self.query, self.gallery = query, gallery
        self.self_retrieval = self_retrieval
        n_q = len(query)
        self.sim = torch.full((n_q,), -float("inf"), dtype=torch.float64)
        self.index = torch.full((n_q,), -1, dtype=torch.int64)
        d = query.shape[1]
        n_u = (d + 2) * 2.0**-53
        g_max = torch.linalg.vector_norm(gallery.double(), dim=1).max()
        self._tol = (
            2.0 * n_u / (1.0 - n_u) * torch.linalg.vector_norm(query.double(), dim=1) * g_max
        )
        self._cand_q: list[torch.Tensor] = []
        self._cand_g: list[torch.Tensor] = []
        self._run(query_labels.cpu(), gallery_labels.cpu())

    def _run(self, query_labels: torch.Tensor, gallery_labels: torch.Tensor) -> None:
        q_order = torch.argsort(query_labels, stable=True)
        g_order = torch.argsort(gallery_labels, stable=True)
        q_cls, q_cnt = torch.unique_consecutive(query_labels[q_order], return_counts=True)
        g_cls, g_cnt = torch.unique_consecutive(gallery_labels[g_order], return_counts=True)
        q_start = torch.cumsum(q_cnt, 0) - q_cnt
        g_start = torch.cumsum(g_cnt, 0) - g_cnt
        pos = torch.searchsorted(g_cls, q_cls).clamp(max=len(g_cls) - 1)
        present = g_cls[pos] == q_cls
        groups: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        rows = zip(
            q_start[present].tolist(),
            q_cnt[present].tolist(),
            g_start[pos[present]].tolist(),
            g_cnt[pos[present]].tolist(),
            strict=True,
        )
        for qs, qn, gs, gn in rows:
            groups[(qn, gn)].append((qs, gs))
        d = self.query.shape[1]
        for (qn, gn), starts in groups.items():
            per_class = 8 * (qn * gn + (qn + gn) * d)
            if per_class > _GRAM_BYTES:
                for qs, gs in starts:
                    self._one_large_class(q_order[qs : qs + qn], g_order[gs : gs + gn])
                continue
            st = torch.tensor(starts, dtype=torch.int64)
            ar_q, ar_g = torch.arange(qn), torch.arange(gn)
            for b0, b1 in _blocks(len(starts), max(1, _GRAM_BYTES // per_class)):
                q_idx = q_order[st[b0:b1, 0, None] + ar_q]  # (C, qn) original query indices
                g_idx = g_order[st[b0:b1, 1, None] + ar_g]  # (C, gn)
                sims = torch.bmm(self.query[q_idx].double(), self.gallery[g_idx].double().mT)
                if self.self_retrieval:
                    sims.masked_fill_(q_idx[:, :, None] == g_idx[:, None, :], -float("inf"))
                c, i, j = self._near_max(sims, q_idx, dim=2).nonzero(as_tuple=True)
                self._cand_q.append(q_idx[c, i])
                self._cand_g.append(g_idx[c, j])
        self._resolve()

    def _near_max(self, sims: torch.Tensor, q_idx: torch.Tensor, dim: int) -> torch.Tensor:
        """Entries within the float64 GEMM error of the max (candidates for the best positive)."""
        best = sims.amax(dim=dim, keepdim=True)
        return (sims >= best - 2.0 * self._tol[q_idx].unsqueeze(dim)) & (best > -float("inf"))

    def _one_large_class(self, q_idx: torch.Tensor, g_idx: torch.Tensor) -> None:
        d = self.query.shape[1]
        cols = max(1, min(len(g_idx), _GRAM_BYTES // (8 * (d + 1))))
        step = max(1, _GRAM_BYTES // (8 * (d + cols)))
        for r0, r1 in _blocks(len(q_idx), step):
            rows = q_idx[r0:r1]
            qv = self.query[rows].double()
            sims = torch.cat(
                [
                    qv @ self.gallery[g_idx[c0:c1]].double().T
                    for c0, c1 in _blocks(len(g_idx), cols)
                ],
                1,
            )
            if self.self_retrieval:
                sims.masked_fill_(rows[:, None] == g_idx[None, :], -float("inf"))
            i, j = self._near_max(sims, rows, dim=1).nonzero(as_tuple=True)
            self._cand_q.append(rows[i])
            self._cand_g.append(g_idx[j])

    def _resolve(self) -> None:
        """s+ = max of the canonical float64 similarity over the candidates, p* = lowest index."""
        if not self._cand_q:
            return
        q, g = torch.cat(self._cand_q), torch.cat(self._cand_g)
        if not len(q):
            return  # no query has another item of its class: every rank is NO_POSITIVE
        s = torch.cat(
            [
                _dot64(self.query[q[a:b]], self.gallery[g[a:b]])
                for a, b in _blocks(len(q), _PAIR_CHUNK)
            ]
        )
        self.sim.scatter_reduce_(0, q, s, reduce="amax")
        at_max = s == self.sim[q]
        big = torch.full_like(self.index, torch.iinfo(torch.int64).max)
        big.scatter_reduce_(0, q[at_max], g[at_max], reduce="amin")
        found = self.sim > -float("inf")
        self.index[found] = big[found]


class _Counter:
    """Pass 2: count, per query, the gallery items ranked above its best positive.

    ``query``/``gallery`` live on the compute device (float32 GEMM tiles); ``query_cpu``/
    ``gallery_cpu`` serve the float64 re-evaluation of the band with :func:`_dot64`.
    """

    def __init__(
        self,
        query: torch.Tensor,
        gallery: torch.Tensor,
        query_cpu: torch.Tensor,
        gallery_cpu: torch.Tensor,
        query_labels: torch.Tensor,
        gallery_labels: torch.Tensor,
        best: _BestPositive,
        self_retrieval: bool,
    ) -> None:
        self.query_cpu, self.gallery_cpu = query_cpu, gallery_cpu
        self.query_labels, self.gallery_labels = query_labels.cpu(), gallery_labels.cpu()
        self.self_retrieval = self_retrieval
        self.sp, self.pstar = best.sim, best.index
        err = _float32_error_bound(query, gallery).cpu()
        has_pos = self.sp > -float("inf")
        inf32 = torch.full_like(self.sp, float("inf"), dtype=torch.float32)
        # queries without a positive never count anything (their rank is NO_POSITIVE anyway)
        self.lo = torch.where(has_pos, _round_down32(self.sp - err), inf32).to(query.device)
        self.hi = torch.where(has_pos, _round_up32(self.sp + err), inf32).to(query.device)
        self.counts = torch.zeros(len(query), dtype=torch.int64, device=query.device)
        self.refined_pairs = 0

    def add_tile(
        self, sims: torch.Tensor, rows: torch.Tensor, cols: tuple[int, int], dim: int = 1
    ) -> None:
        """Add counts for the queries of tile ``sims`` against gallery items ``c0:c1``.

        ``dim=1``: queries ``rows`` are the tile's rows; ``dim=0``: they are its columns (the
        transposed use of a symmetric tile). A row-max prefilter (one read pass) skips the
        queries with no item near or above their best positive in this tile (the vast majority).
        """
        c0, c1 = cols
        tile_max = sims.amax(dim=dim)
        hot = (tile_max >= self.lo[rows]).nonzero().flatten()
        if not len(hot):
            return
        sub = sims[hot] if dim == 1 else sims[:, hot].T  # (len(hot), c1 - c0)
        q = rows[hot]
        lo, hi = self.lo[q, None], self.hi[q, None]
        above = _count(sub > hi)
        band = _count(sub >= lo) - above
        banded = band.nonzero().flatten()
        if len(banded):
            heavy = band[banded] > max(64, (c1 - c0) // 32)
            light_rows, heavy_rows = banded[~heavy], banded[heavy]
            if len(light_rows):
                part = sub[light_rows]
                in_band = (part >= lo[light_rows]) & (part <= hi[light_rows])
                r_loc, c_loc = in_band.nonzero(as_tuple=True)
                beats = self._refine_pairs(q[light_rows[r_loc]].cpu(), (c_loc + c0).cpu())
                above.index_add_(0, light_rows[r_loc], beats.to(above.device))
            if len(heavy_rows):
                exact = self._exact_rows(q[heavy_rows].cpu(), c0, c1)
                above[heavy_rows] = exact.to(above.device)
        self.counts.index_add_(0, q, above)

    def _refine_pairs(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """1 where gallery item g ranks above query q's best positive (float64, tie rule).

        Positives never do (p* is the first maximum of the same float64 values), so only the
        negatives in the band are evaluated.
        """
        beats = torch.zeros(len(q), dtype=torch.int64)
        neg = (self.gallery_labels[g] != self.query_labels[q]).nonzero().flatten()
        self.refined_pairs += len(neg)
        for p0, p1 in _blocks(len(neg), _PAIR_CHUNK):
            idx = neg[p0:p1]
            qq, gg = q[idx], g[idx]
            pstar = self.pstar[qq]
            # s(q, g) and s(q, p*) in ONE reduction call: bit-consistent with each other
            s = _dot64(self.query_cpu[qq][None], self.gallery_cpu[torch.stack([gg, pstar])])
            beats[idx] = ((s[0] > s[1]) | ((s[0] == s[1]) & (gg < pstar))).long()
        return beats

    def _exact_rows(self, q: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
        """Float64 count for rows with a wide band (e.g. many exact duplicates)."""
        d = self.query_cpu.shape[1]
        tile = self.gallery_cpu[c0:c1]
        g = torch.arange(c0, c1)
        out = torch.empty(len(q), dtype=torch.int64)
        for r0, r1 in _blocks(len(q), max(1, _GRAM_BYTES // (8 * (c1 - c0 + 1) * (d + 1)))):
            qq = q[r0:r1]
            cand = torch.cat(
                [tile.expand(len(qq), -1, -1), self.gallery_cpu[self.pstar[qq]][:, None, :]], 1
            )
            s = _dot64(self.query_cpu[qq][:, None, :], cand)
            s_g, s_p = s[:, :-1], s[:, -1:]
            pstar = self.pstar[qq, None]
            beats = (s_g > s_p) | ((s_g == s_p) & (g[None, :] < pstar))
            if self.self_retrieval:
                beats &= qq[:, None] != g[None, :]
            out[r0:r1] = beats.sum(dim=1)
        return out


def best_positive_ranks(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor | None = None,
    gallery_labels: torch.Tensor | None = None,
    *,
    ref_includes_query: bool = False,
    block_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Rank r(q) of each query's best positive (``NO_POSITIVE`` if it has none); hit@K iff r < K.

    Args:
        query: (Nq, D) float32 embeddings (already validated and, for cosine, normalised).
        query_labels: (Nq,) int64 class ids.
        gallery, gallery_labels: the gallery; ``None`` means self-retrieval (gallery = query).
        ref_includes_query: PML's convention: ``gallery[:Nq]`` is the query set, query i is
            gallery item i and is excluded from its own ranking.
        block_size: side of the float32 GEMM tiles, a positive int (default:
            :func:`default_block_size`).
        progress: show a tqdm bar over query blocks.
    """
    block_size = check_block_size(block_size)
    symmetric = gallery is None
    if symmetric:
        gallery, gallery_labels = query, query_labels
    assert gallery is not None and gallery_labels is not None
    self_retrieval = symmetric or ref_includes_query
    n_q, n_g = len(query), len(gallery)
    bs = block_size or default_block_size(n_g, query.device)
    query_cpu = query.cpu()
    gallery_cpu = query_cpu if symmetric else gallery.cpu()
    best = _BestPositive(query_cpu, query_labels, gallery_cpu, gallery_labels, self_retrieval)
    counter = _Counter(
        query, gallery, query_cpu, gallery_cpu, query_labels, gallery_labels, best, self_retrieval
    )
    row_blocks = list(_blocks(n_q, bs))
    col_blocks = list(_blocks(n_g, bs))
    iterator = enumerate(row_blocks)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(row_blocks), desc="recall@k", unit="block")
    for i, (r0, r1) in iterator:
        rows = torch.arange(r0, r1, device=query.device)
        for j, (c0, c1) in enumerate(col_blocks):
            if symmetric and j < i:
                continue  # counted from tile (j, i), transposed
            sims = query[r0:r1] @ gallery[c0:c1].T
            if self_retrieval and c0 < r1 and r0 < c1:
                own = rows[(rows >= c0) & (rows < c1)]
                sims[own - r0, own - c0] = -float("inf")
            counter.add_tile(sims, rows, (c0, c1))
            if symmetric and j > i:
                counter.add_tile(sims, torch.arange(c0, c1, device=query.device), (r0, r1), dim=0)
    ranks = counter.counts
    ranks[(best.index < 0).to(ranks.device)] = NO_POSITIVE
    return ranks
