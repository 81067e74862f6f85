"""Fused, class-chunked Proxy-Anchor kernel for dot-product-type similarities.

Kim, Kim, Cho, Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020 (arXiv 2003.13911).
For every proxy ``p`` the kernel computes the two per-proxy terms of the loss

    pos[p] = Softplus(LSE_{x in X+_p} (-alpha (s(x, p) - delta) + log w_x))     (p in P+)
    neg[p] = Softplus(LSE_{x in X-_p} ( alpha (s(x, p) + delta) + log w_x))     (all p)

where ``s`` is the cosine similarity (``normalize=True``) or the plain dot product, and ``w_x >= 0``
are per-sample weights (from a miner; ``w_x = 0`` removes ``x`` from both sums). With the usual
"add one" trick ``Softplus(LSE(l)) = m + log(exp(-m) + sum exp(l - m))``, ``m = max(0, max l)``,
which never overflows and is exact for empty sets (term 0).

The gradient of docs/paper.md section 1 is closed form. Given upstream per-proxy weights
``g+``/``g-`` (the derivative of the reduced loss with respect to each term):

    dl/ds(x, p) = -g+_p alpha exp(l+_x - m+_p) / (exp(-m+_p) + sum exp(l+ - m+_p))   x in X+_p
    dl/ds(x, p) =  g-_p alpha exp(l-_x - m-_p) / (exp(-m-_p) + sum exp(l- - m-_p))   x in X-_p

The logits are ``z = alpha * s``. The kernel streams over chunks of proxies ``P_c`` (raw rows,
column scale ``c = alpha / |p|`` for the cosine, ``alpha`` for the dot product) and forms one
``(B, k)`` block ``Z = c * (X_n P_c^T)`` per chunk (batch-major, so that per-proxy scales are
row broadcasts and per-proxy reductions run down the columns). Positives are one logit per sample
(its own proxy, always in the same chunk as the rest of its class): the positive terms come from
those entries of ``Z`` by per-class scatters. The negative term is dense: ``E = exp(Z)`` with the
own entries zeroed. For the cosine with ``alpha <= 40`` (the paper's 32) ``|z| <= alpha``, so
``exp(z)`` can neither overflow nor become subnormal in float32 and no per-proxy max is needed;
otherwise (the dot product, larger ``alpha``, weights above 1) the usual max-subtraction is used.
The gradient block ``G = dl/d<x_n, p>`` is ``E`` times a per-proxy coefficient, with the positive
coefficients written at the own entries, so three GEMMs per chunk carry everything:
``Z``, ``dX_n += G P_c`` and ``dP_c = G^T X_n - p rowdot / |p|^2``, where
``rowdot_p = sum_b dl/dz * z`` (a column sum of the ``(B, k)`` block, cheaper than the equivalent
``(k, D)`` row dot since ``B < D`` in practice) is the Jacobian of the proxy normalisation. The
correction term is written first and the GEMM accumulates onto it. Memory is bounded by the chunk;
no normalised ``C x D`` copy of the proxies is ever made.

Two autograd Functions wrap the kernel. When the reduction is a fixed weighting of the terms
(PML's MeanReducer, SumReducer, DivisorReducer), :class:`FusedProxyAnchorSums` returns the two
weighted sums and computes the gradients eagerly during its single forward pass; ``backward``
only scales them. :class:`FusedProxyAnchorFunction` returns the per-proxy terms for any other
reducer and recomputes the gradients in ``backward`` with the actual upstream gradient (or, given
predicted upstream weights, computes them eagerly and checks the prediction in ``backward``).
Everything is computed in float32 (or float64 for float64 inputs) with autocast disabled;
gradients are returned in the input dtypes.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch

DEFAULT_CHUNK_BYTES = 16 * 2**20
_FIXED_SHIFT_MAX_ALPHA = 40.0
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
    batch_size: int, num_classes: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> int:
    """Proxies per chunk so that the kernel's two float32 ``batch x chunk`` workspaces (the
    logits and their exponentials) take about ``chunk_bytes`` together."""
    rows = chunk_bytes // (2 * 4 * max(batch_size, 1))
    return int(max(1, min(num_classes, max(rows, 64))))


def _fixed_shift_is_safe(cfg: KernelConfig, alpha: float, weights: torch.Tensor | None) -> bool:
    """True when ``exp(alpha * cos)`` needs no max-subtraction: cosines lie in [-1, 1], so for
    ``alpha <= 40`` every ``exp`` is within [e^-40, e^40], far from float32 overflow and from
    subnormals, and the per-proxy max pass can be skipped. Weights above 1 or larger ``alpha``
    (and the unbounded dot product) take the max-subtracted path."""
    if not cfg.normalize or alpha > _FIXED_SHIFT_MAX_ALPHA:
        return False
    return weights is None or weights.numel() == 0 or float(weights.max()) <= 1.0


def _inv_norms(rows: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(rows, dim=1).clamp_min(_NORM_EPS).reciprocal()


def _normalize_backward_(
    grad_n: torch.Tensor, normed: torch.Tensor, inv: torch.Tensor
) -> torch.Tensor:
    """Gradient w.r.t. ``raw`` of ``normed = raw * inv`` (row L2 normalisation), given
    ``grad_n``; computed in place in ``grad_n``."""
    dot = (grad_n * normed).sum(dim=1, keepdim=True)
    return grad_n.addcmul_(normed, dot, value=-1.0).mul_(inv[:, None])


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

    ``labels`` lie in ``[0, C]``; the label ``C`` marks a sample whose own proxy is not among
    ``proxies`` (a class-sharded loss: it is then a negative of every proxy here).
    """
    dtype = compute_dtype(embeddings, proxies)
    device = embeddings.device
    num_classes = proxies.shape[0]
    alpha, delta = float(cfg.alpha), float(cfg.margin)
    shift = alpha * delta  # logits are z = alpha * s; the margin and the virtual "1" go in here
    want_grad = pos_grad_weights is not None and neg_grad_weights is not None
    x_all = embeddings.to(dtype)
    # Samples of weight 0 (removed by a miner) take no part in either sum: drop them here.
    kept = logw = weights = None
    if log_weights is not None:
        logw = log_weights.to(device=device, dtype=dtype)
        finite = logw > -math.inf
        if not bool(finite.all()):
            kept = torch.nonzero(finite).squeeze(1)
            logw = logw[kept]
        weights = logw.exp()
    x = x_all if kept is None else x_all[kept]
    labels = labels if kept is None else labels[kept]
    batch = x.shape[0]
    inv_x = _inv_norms(x) if cfg.normalize else None
    xn = x * inv_x[:, None] if inv_x is not None else x
    proxies = proxies.to(dtype)
    # Column scale of the chunk logits: alpha / |p| (cosine) or alpha (dot product).
    col_scale = _inv_norms(proxies).mul_(alpha) if cfg.normalize else None
    fixed = _fixed_shift_is_safe(cfg, alpha, weights)

    pos_terms = torch.empty(num_classes, dtype=dtype, device=device)
    neg_terms = torch.empty(num_classes, dtype=dtype, device=device)
    if want_grad:
        assert pos_grad_weights is not None and neg_grad_weights is not None
        pos_w = pos_grad_weights.to(dtype)
        neg_w = neg_grad_weights.to(dtype)
        grad_xn = torch.zeros_like(xn)
        grad_p = torch.empty(proxies.shape, dtype=dtype, device=device)
    chunk = max(1, min(int(cfg.chunk_size), num_classes))
    # Two (batch, chunk) workspaces, allocated once: the logits and their exponentials.
    work_l = torch.empty(batch * chunk, dtype=dtype, device=device)
    work_e = torch.empty(batch * chunk, dtype=dtype, device=device)
    # One chunk holding every sample's own proxy takes them all in order; otherwise the samples
    # are grouped by the chunk their own proxy is in (label C: in none).
    whole = chunk >= num_classes and (batch == 0 or int(labels.max()) < num_classes)
    if not whole:
        order = torch.argsort(labels)
        edges = torch.arange(0, num_classes + chunk, chunk, device=device).clamp_max_(num_classes)
        own_bounds = torch.searchsorted(labels[order], edges).tolist()
    for i, start in enumerate(range(0, num_classes, chunk)):
        stop = min(start + chunk, num_classes)
        k = stop - start
        p_c = proxies[start:stop]
        logits = torch.mm(xn, p_c.T, out=work_l[: batch * k].view(batch, k))
        if col_scale is not None:
            logits.mul_(col_scale[start:stop])  # z = alpha * cos, (B, k)
        else:
            logits.mul_(alpha)
        if whole:
            own, cols = torch.arange(batch, device=device), labels
        else:
            own = order[own_bounds[i] : own_bounds[i + 1]]  # samples whose proxy is in the chunk
            cols = labels[own] - start

        # positive term, from the own-proxy logits (classes are whole within a chunk)
        z_own = logits[own, cols]
        l_pos = torch.sub(shift, z_own) if logw is None else logw[own] - z_own + shift
        m_pos = l_pos.new_zeros(k)  # max(0, max l): the "1" of the softplus
        m_pos.scatter_reduce_(0, cols, l_pos, reduce="amax", include_self=True)
        e_pos = torch.exp(l_pos - m_pos[cols])
        denom_pos = torch.exp(-m_pos).index_add_(0, cols, e_pos)
        torch.add(m_pos, torch.log(denom_pos), out=pos_terms[start:stop])

        # negative term: every other sample
        exps = work_e[: batch * k].view(batch, k)
        if fixed:  # |z| <= alpha <= 40: exp(z) can neither overflow nor underflow
            torch.exp(logits, out=exps)
            if weights is not None:
                exps.mul_(weights[:, None])
            exps[own, cols] = 0.0
            denom = exps.sum(dim=0).add_(math.exp(-shift))
            torch.add(torch.log(denom), shift, out=neg_terms[start:stop])
        else:
            logits[own, cols] = -math.inf
            if logw is not None:
                torch.add(logits, logw[:, None], out=exps)
            else:
                exps.copy_(logits)
            m_neg = exps.amax(dim=0).clamp_min_(-shift) if batch else logits.new_full((k,), -shift)
            exps.sub_(m_neg).exp_()
            denom = exps.sum(dim=0).add_(torch.exp(-shift - m_neg))
            torch.log(denom, out=neg_terms[start:stop]).add_(m_neg).add_(shift)
            logits[own, cols] = z_own  # finite again for the row dot below
        if not want_grad:
            continue

        # dl/dz: coef * exps for the negatives, z_pos_grad at the (sample, own proxy) entries
        coef = neg_w[start:stop] / denom
        z_pos_grad = pos_w[start:stop][cols].neg_().mul_(e_pos).div_(denom_pos[cols])
        if col_scale is not None:
            # The proxy normalisation's Jacobian needs sum_b dl/dz * z per proxy.
            rowdot = logits.mul_(exps).sum(dim=0).mul_(coef)
            rowdot.index_add_(0, cols, z_pos_grad * z_own)
            scale = col_scale[start:stop]
            coef.mul_(scale)
            z_pos_grad.mul_(scale[cols])
        else:
            coef.mul_(alpha)
            z_pos_grad.mul_(alpha)
        g = exps.mul_(coef)  # (B, k) = dl/d<x_n, p>: alpha / |p| folded in
        g[own, cols] = z_pos_grad
        grad_xn.addmm_(g, p_c)
        grad_pc = grad_p[start:stop]
        if col_scale is not None:  # dl/dp = G^T X_n - p * rowdot / |p|^2
            torch.mul(
                p_c, rowdot.mul_(scale).mul_(scale).div_(-alpha * alpha)[:, None], out=grad_pc
            )
            grad_pc.addmm_(g.T, xn)
        else:
            torch.mm(g.T, xn, out=grad_pc)
    if not want_grad:
        return pos_terms, neg_terms, None, None
    grad_x = _normalize_backward_(grad_xn, xn, inv_x) if inv_x is not None else grad_xn
    if kept is not None:
        grad_x = torch.zeros_like(x_all).index_copy_(0, kept, grad_x)
    return pos_terms, neg_terms, grad_x, grad_p


def _no_autocast(device: torch.device) -> Any:
    """A context that turns autocast off (a no-op context when it is off already)."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _forward_kernel(
    ctx: Any,
    embeddings: torch.Tensor,
    proxies: torch.Tensor,
    labels: torch.Tensor,
    log_weights: torch.Tensor | None,
    cfg: KernelConfig,
    grad_weights: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward of both Functions: the per-proxy terms and, with ``grad_weights`` (and an input
    that needs a gradient), the eager gradients, kept in ``ctx.saved_grads``."""
    eager = grad_weights is not None and (ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
    weights = grad_weights if eager and grad_weights is not None else (None, None)
    with _no_autocast(embeddings.device):
        pos, neg, gx, gp = proxy_anchor_terms(
            embeddings, proxies, labels, log_weights, cfg, weights[0], weights[1]
        )
    ctx.cfg = cfg
    ctx.dtypes = (embeddings.dtype, proxies.dtype)
    ctx.saved_grads = (gx, gp) if eager else None
    return pos, neg


def _eager_grads(ctx: Any, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward's gradients times ``scale``, consumed in place (a second backward
    recomputes)."""
    gx, gp = ctx.saved_grads
    ctx.saved_grads = None
    if scale != 1.0:
        gx.mul_(scale)
        gp.mul_(scale)
    return gx, gp


def _recomputed_grads(
    ctx: Any,
    embeddings: torch.Tensor,
    proxies: torch.Tensor,
    labels: torch.Tensor,
    log_weights: torch.Tensor | None,
    pos_grad_weights: torch.Tensor,
    neg_grad_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients for the given upstream weights of the terms, recomputed chunk by chunk."""
    with _no_autocast(embeddings.device):
        _, _, gx, gp = proxy_anchor_terms(
            embeddings, proxies, labels, log_weights, ctx.cfg, pos_grad_weights, neg_grad_weights
        )
    assert gx is not None and gp is not None
    return gx, gp


def _input_grads(ctx: Any, gx: torch.Tensor, gp: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """What ``backward`` returns: the gradients in the input dtypes, None for the rest."""
    dx = gx.to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
    dp = gp.to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
    return dx, dp, None, None, None, None, None


class FusedProxyAnchorFunction(torch.autograd.Function):
    """Autograd Function ``(X, P) -> (pos_terms, neg_terms)`` for dot-product-type similarities.

    Forward: one chunked pass. If ``pos_grad_weights``/``neg_grad_weights`` (the predicted
    derivative of the reduced loss w.r.t. each term) are given, the gradients are computed in the
    same pass and ``backward`` just scales them by the observed factor ``k`` (when
    ``grad_pos = k * g+`` and ``grad_neg = k * g-``). Otherwise (or when the check fails, or on a
    second backward) ``backward`` recomputes chunk by chunk with the actual upstream gradients:
    exact for any reducer.
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
        predicted = None
        if pos_grad_weights is not None and neg_grad_weights is not None:
            predicted = (pos_grad_weights, neg_grad_weights)
        pos, neg = _forward_kernel(ctx, embeddings, proxies, labels, log_weights, cfg, predicted)
        ctx.predicted = predicted
        ctx.save_for_backward(embeddings, proxies, labels, log_weights)
        return pos, neg

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_pos: torch.Tensor | None, grad_neg: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        embeddings, proxies, labels, log_weights = ctx.saved_tensors
        grad_pos = grad_pos if grad_pos is not None else torch.zeros_like(proxies[:, 0])
        grad_neg = grad_neg if grad_neg is not None else torch.zeros_like(proxies[:, 0])
        scale = _common_scale(grad_pos, grad_neg, ctx.predicted) if ctx.saved_grads else None
        if scale is not None:
            gx, gp = _eager_grads(ctx, scale)
        else:
            gx, gp = _recomputed_grads(
                ctx, embeddings, proxies, labels, log_weights, grad_pos, grad_neg
            )
        return _input_grads(ctx, gx, gp)


class FusedProxyAnchorSums(torch.autograd.Function):
    """Autograd Function ``(X, P) -> (sum_p a_p pos_p, sum_p b_p neg_p)`` for fixed per-proxy
    weights ``a``, ``b``: the loss under a reducer linear in the terms (PML's MeanReducer gives
    ``a = 1/|P+|`` on P+ and ``b = 1/|P|``).

    Forward computes the gradients in the same chunked pass (three GEMMs in all); ``backward``
    scales them by the upstream gradient, one scalar per output. Unequal scalars (the two parts
    weighted differently downstream) or a second backward recompute exactly, chunk by chunk.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        embeddings: torch.Tensor,
        proxies: torch.Tensor,
        labels: torch.Tensor,
        log_weights: torch.Tensor | None,
        cfg: KernelConfig,
        pos_weights: torch.Tensor,
        neg_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pos, neg = _forward_kernel(
            ctx, embeddings, proxies, labels, log_weights, cfg, (pos_weights, neg_weights)
        )
        sums = torch.stack([pos.dot(pos_weights.to(pos.dtype)), neg.dot(neg_weights.to(neg.dtype))])
        ctx.save_for_backward(embeddings, proxies, labels, log_weights, pos_weights, neg_weights)
        return sums[0], sums[1]

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_pos: torch.Tensor | None, grad_neg: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        embeddings, proxies, labels, log_weights, pos_weights, neg_weights = ctx.saved_tensors
        k_pos, k_neg = torch.stack(
            [g if g is not None else pos_weights.new_zeros(()) for g in (grad_pos, grad_neg)]
        ).tolist()
        if ctx.saved_grads is not None and k_pos == k_neg:
            gx, gp = _eager_grads(ctx, k_pos)
        else:
            gx, gp = _recomputed_grads(
                ctx,
                embeddings,
                proxies,
                labels,
                log_weights,
                pos_weights * k_pos,
                neg_weights * k_neg,
            )
        return _input_grads(ctx, gx, gp)


def _common_scale(
    grad_pos: torch.Tensor,
    grad_neg: torch.Tensor,
    predicted: tuple[torch.Tensor, torch.Tensor] | None,
    rtol: float = 1e-5,
) -> float | None:
    """``k`` if ``(grad_pos, grad_neg) == k * predicted`` (within ``rtol``), else None."""
    if predicted is None:
        return None
    actual = torch.stack([grad_pos.reshape(-1), grad_neg.reshape(-1)]).to(predicted[0].dtype)
    expected = torch.stack([predicted[0].reshape(-1), predicted[1].reshape(-1)])
    dots = torch.stack([torch.vdot(actual.view(-1), expected.view(-1)), expected.square().sum()])
    num, norm = dots.tolist()
    if norm == 0.0:
        return None
    k = num / norm
    if abs(k - 1.0) <= 8 * torch.finfo(actual.dtype).eps:
        k = 1.0  # the reducer's own backward: equal up to its rounding; no rescaling pass
    bounds = torch.stack([torch.sub(actual, expected, alpha=k).abs_().amax(), actual.abs().amax()])
    err, scale = bounds.tolist()
    if err > rtol * max(scale, 1e-30):
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


def fused_proxy_anchor_sums(
    embeddings: torch.Tensor,
    proxies: torch.Tensor,
    labels: torch.Tensor,
    log_weights: torch.Tensor | None,
    cfg: KernelConfig,
    pos_weights: torch.Tensor,
    neg_weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable ``(sum(pos_weights * pos), sum(neg_weights * neg))`` via
    :class:`FusedProxyAnchorSums`."""
    return FusedProxyAnchorSums.apply(
        embeddings, proxies, labels, log_weights, cfg, pos_weights, neg_weights
    )
