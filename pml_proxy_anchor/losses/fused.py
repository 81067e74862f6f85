"""Fused, class-chunked Proxy-Anchor kernel for dot-product-type similarities.

Kim, Kim, Cho, Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020 (arXiv 2003.13911).
For every proxy ``p`` the kernel computes the two per-proxy terms of the loss

    pos[p] = Softplus(LSE_{x in X+_p} (-alpha (s(x, p) - delta) + log w_x))     (p in P+)
    neg[p] = Softplus(LSE_{x in X-_p} ( alpha (s(x, p) + delta) + log w_x))     (all p)

where ``s`` is the cosine similarity (``normalize=True``) or the plain dot product, and ``w_x >= 0``
are per-sample weights (from a miner; ``w_x = 0`` removes ``x`` from both sums). With the usual
"add one" trick ``Softplus(LSE(l)) = m + log(exp(-m) + sum exp(l - m))``, ``m = max(0, max l)``,
which never overflows and is exact for empty sets (term 0).

The gradient of SPEC.md section 1 is closed form. Given upstream per-proxy weights ``g+``/``g-``
(the derivative of the reduced loss with respect to each term):

    dl/ds(x, p) = -g+_p alpha exp(l+_x - m+_p) / (exp(-m+_p) + sum exp(l+ - m+_p))   x in X+_p
    dl/ds(x, p) =  g-_p alpha exp(l-_x - m-_p) / (exp(-m-_p) + sum exp(l- - m-_p))   x in X-_p

Positives are sparse (one similarity per sample): their terms come from a gather of each
sample's own proxy and per-class scatters over ``B`` values, and their gradient coefficients are
written into the chunk block below at the (own proxy, sample) entries, which the negative sums
mask out, so the chunk GEMMs carry both. The negative term is dense ``B x C``: it is streamed
over chunks of proxies. For a chunk
``P_c`` (raw, un-normalised rows, inverse norms ``r_c``) the kernel forms
``L = r_c * (P_c (alpha X_n)^T)`` (the alpha-scaled cosines, transposed so that per-proxy
reductions are contiguous), the stable exponentials ``E``, the coefficient matrix
``G = E * coef`` with the proxy normalisation folded into ``coef``, and accumulates
``dX_n += G^T P_c`` and ``dP_c = G X_n - P_c r_c^2 rowdot(G X_n, P_c)`` (the Jacobian of the
row normalisation). That is exactly three GEMMs per chunk and memory bounded by the chunk; no
normalised ``C x D`` copy of the proxies is ever made.

When the reduction is linear in the terms (PML's MeanReducer, SumReducer, DivisorReducer) the
upstream weights are known at forward time: :class:`FusedProxyAnchorFunction` then computes the
gradients eagerly during its single forward pass and ``backward`` only rescales them (checked:
if the upstream gradient turns out not to be a multiple of the predicted weights, ``backward``
recomputes exactly, chunk by chunk). Everything is computed in float32 (or float64 for float64
inputs) with autocast disabled; gradients are returned in the input dtypes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_CHUNK_BYTES = 4 * 2**20
_NORM_EPS = 1e-12


@dataclass
class KernelConfig:
    """Static settings of one kernel call."""

    alpha: float
    margin: float
    normalize: bool
    chunk_size: int


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half precision is computed in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def auto_chunk_size(
    batch_size: int, num_classes: int, embedding_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> int:
    """Proxies per chunk so that a chunk's float32 working set, the ``chunk x batch`` block plus
    the ``chunk x embedding_size`` rows, is about ``chunk_bytes`` (cache-sized by default)."""
    rows = chunk_bytes // (4 * max(batch_size + embedding_size, 1))
    return int(max(1, min(num_classes, max(rows, 64))))


def _inv_norms(rows: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(rows, dim=1).clamp_min(_NORM_EPS).reciprocal()


def _normalize_backward(grad_n: torch.Tensor, raw: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. ``raw`` of ``raw * inv`` (row L2 normalisation), given ``grad_n``."""
    dot = (grad_n * raw).sum(dim=1, keepdim=True)
    return (grad_n - raw * (dot * inv[:, None] ** 2)) * inv[:, None]


def proxy_anchor_terms(
    embeddings: torch.Tensor,
    proxies: torch.Tensor,
    labels: torch.Tensor,
    log_weights: torch.Tensor | None,
    cfg: KernelConfig,
    pos_grad_weights: torch.Tensor | None = None,
    neg_grad_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The per-proxy terms ``(pos, neg)`` (each ``(C,)``, ``pos`` is 0 outside P+) and, when the
    upstream weights ``g+``/``g-`` are given, the gradients ``(dX, dP)`` of
    ``sum(g+ * pos) + sum(g- * neg)``. Runs without autograd; autocast must be off.
    """
    dtype = compute_dtype(embeddings, proxies)
    device = embeddings.device
    num_classes = proxies.shape[0]
    alpha, delta = float(cfg.alpha), float(cfg.margin)
    want_grad = pos_grad_weights is not None and neg_grad_weights is not None
    x = embeddings.to(dtype)
    inv_x = _inv_norms(x) if cfg.normalize else None
    xn = x * inv_x[:, None] if inv_x is not None else x
    xa = xn * alpha
    logw = log_weights.to(dtype) if log_weights is not None else None

    # ---- positive term: one similarity per sample (with its own proxy), scattered per class ----
    p_own = proxies[labels].to(dtype)
    inv_own = _inv_norms(p_own) if cfg.normalize else None
    pn_own = p_own * inv_own[:, None] if inv_own is not None else p_own
    l_pos = alpha * (delta - (xn * pn_own).sum(dim=1))
    if logw is not None:
        l_pos = l_pos + logw
    m_pos = torch.zeros(num_classes, dtype=dtype, device=device)  # max(0, max l): the "1"
    m_pos.scatter_reduce_(0, labels, l_pos, reduce="amax", include_self=True)
    e_pos = torch.exp(l_pos - m_pos[labels])
    denom_pos = torch.exp(-m_pos).index_add_(0, labels, e_pos)
    pos_terms = m_pos + torch.log(denom_pos)

    g_pos = None
    if want_grad and pos_grad_weights is not None:
        # dl/ds(x_i, p_{y_i}) of the positive term; scattered into each chunk's G block below so
        # that the chunk GEMMs also carry the positive-term gradients (no separate scatter).
        g_pos = pos_grad_weights.to(dtype)[labels].mul_(-alpha).mul_(e_pos).div_(denom_pos[labels])
        if inv_own is not None:
            g_pos = g_pos * inv_own

    # ---- negative term: dense, streamed over chunks of proxies ----
    # Logits are kept without the constant a*d: l' = l - a*d, so the virtual "1" has logit -a*d.
    shift = alpha * delta
    neg_terms = torch.empty(num_classes, dtype=dtype, device=device)
    grad_xn = torch.zeros_like(xn) if want_grad else None
    grad_p = torch.empty(proxies.shape, dtype=dtype, device=device) if want_grad else None
    chunk = max(1, min(int(cfg.chunk_size), num_classes))
    # Preallocated workspaces: fresh multi-MB allocations cost page faults on every chunk.
    work = torch.empty((chunk, xa.shape[0]), dtype=dtype, device=device)
    work_rows = torch.empty((chunk, xa.shape[1]), dtype=dtype, device=device) if want_grad else None
    for start in range(0, num_classes, chunk):
        stop = min(start + chunk, num_classes)
        p_c = proxies[start:stop].to(dtype)
        logits = torch.mm(p_c, xa.T, out=work[: stop - start])  # (k, B) = alpha * <p_c, x_n>
        inv_c = _inv_norms(p_c) if cfg.normalize else None
        if inv_c is not None:
            logits.mul_(inv_c[:, None])
        if logw is not None:
            logits.add_(logw[None, :])
        own = torch.nonzero((labels >= start) & (labels < stop)).squeeze(1)
        own_rows = labels[own] - start
        if own.numel():
            logits[own_rows, own] = -math.inf
        if logits.shape[1]:
            m_c = logits.amax(dim=1).clamp_min_(-shift)
        else:
            m_c = torch.full((stop - start,), -shift, dtype=dtype, device=device)
        exps = logits.sub_(m_c[:, None]).exp_()
        denom_c = exps.sum(dim=1).add_(torch.exp(-shift - m_c))
        neg_terms[start:stop] = torch.log(denom_c).add_(m_c).add_(shift)
        if grad_xn is None or grad_p is None or neg_grad_weights is None or g_pos is None:
            continue
        coef = neg_grad_weights[start:stop].to(dtype) * alpha / denom_c
        if inv_c is not None:
            coef.mul_(inv_c)
        g = exps.mul_(coef[:, None])  # (k, B): dl/ds, with the proxy normalisation folded in
        if own.numel():
            g[own_rows, own] = g_pos[own]
        grad_xn.addmm_(g.T, p_c)
        q = torch.mm(g, xn, out=grad_p[start:stop])  # (k, D) = inv_c * dl/dp_n
        if inv_c is not None and work_rows is not None:
            dot = torch.mul(q, p_c, out=work_rows[: stop - start]).sum(dim=1)
            q.addcmul_(p_c, dot.mul_(inv_c).mul_(inv_c)[:, None], value=-1.0)
    if grad_xn is None or grad_p is None:
        return pos_terms, neg_terms, None, None
    grad_x = _normalize_backward(grad_xn, x, inv_x) if inv_x is not None else grad_xn
    return pos_terms, neg_terms, grad_x, grad_p


def _no_autocast(device: torch.device) -> Any:
    return torch.autocast(device_type=device.type, enabled=False)


class FusedProxyAnchorFunction(torch.autograd.Function):
    """Autograd Function ``(X, P) -> (pos_terms, neg_terms)`` for dot-product-type similarities.

    Forward: one chunked pass. If ``pos_grad_weights``/``neg_grad_weights`` (the predicted
    derivative of the reduced loss w.r.t. each term) are given, the gradients are computed in the
    same pass and ``backward`` just scales them by the observed factor ``k`` (when
    ``grad_pos = k * g+`` and ``grad_neg = k * g-``, e.g. MeanReducer/SumReducer/DivisorReducer:
    3 GEMMs in total). Otherwise (or when the check fails, or on a second backward) ``backward``
    recomputes chunk by chunk with the actual upstream gradients: exact for any reducer.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        embeddings: torch.Tensor,
        proxies: torch.Tensor,
        labels: torch.Tensor,
        log_weights: torch.Tensor | None,
        cfg: KernelConfig,
        pos_grad_weights: torch.Tensor | None,
        neg_grad_weights: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        eager = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        eager = eager and pos_grad_weights is not None and neg_grad_weights is not None
        with _no_autocast(embeddings.device):
            pos, neg, gx, gp = proxy_anchor_terms(
                embeddings,
                proxies,
                labels,
                log_weights,
                cfg,
                pos_grad_weights if eager else None,
                neg_grad_weights if eager else None,
            )
        ctx.cfg = cfg
        ctx.dtypes = (embeddings.dtype, proxies.dtype)
        ctx.saved_grads = (gx, gp) if eager else None
        ctx.predicted = (pos_grad_weights, neg_grad_weights) if eager else None
        ctx.save_for_backward(embeddings, proxies, labels, log_weights)
        return pos, neg

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_pos: torch.Tensor, grad_neg: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        embeddings, proxies, labels, log_weights = ctx.saved_tensors
        grad_pos = grad_pos if grad_pos is not None else torch.zeros_like(proxies[:, 0])
        grad_neg = grad_neg if grad_neg is not None else torch.zeros_like(proxies[:, 0])
        gx = gp = None
        scale = _common_scale(grad_pos, grad_neg, ctx.predicted) if ctx.saved_grads else None
        if scale is not None:
            gx, gp = ctx.saved_grads
            ctx.saved_grads = None  # consumed in place: a second backward recomputes
            if scale != 1.0:
                gx.mul_(scale)
                gp.mul_(scale)
        else:
            with _no_autocast(embeddings.device):
                _, _, gx, gp = proxy_anchor_terms(
                    embeddings, proxies, labels, log_weights, ctx.cfg, grad_pos, grad_neg
                )
        assert gx is not None and gp is not None
        dx = gx.to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        dp = gp.to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        return dx, dp, None, None, None, None, None


def _common_scale(
    grad_pos: torch.Tensor,
    grad_neg: torch.Tensor,
    predicted: tuple[torch.Tensor, torch.Tensor] | None,
    rtol: float = 1e-5,
) -> float | None:
    """``k`` if ``(grad_pos, grad_neg) == k * predicted`` (within ``rtol``), else None."""
    if predicted is None:
        return None
    actual = torch.cat([grad_pos.reshape(-1), grad_neg.reshape(-1)]).double()
    expected = torch.cat([predicted[0].reshape(-1), predicted[1].reshape(-1)]).double()
    norm = float(expected.dot(expected))
    if norm == 0.0:
        return None
    k = float(actual.dot(expected)) / norm
    err = float((actual - k * expected).abs().max())
    if err > rtol * float(actual.abs().max().clamp_min(1e-30)):
        return None
    return k


def fused_proxy_anchor_terms(
    embeddings: torch.Tensor,
    proxies: torch.Tensor,
    labels: torch.Tensor,
    log_weights: torch.Tensor | None,
    cfg: KernelConfig,
    pos_grad_weights: torch.Tensor | None = None,
    neg_grad_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable per-proxy terms via :class:`FusedProxyAnchorFunction`."""
    return FusedProxyAnchorFunction.apply(
        embeddings, proxies, labels, log_weights, cfg, pos_grad_weights, neg_grad_weights
    )
