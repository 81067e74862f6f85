"""Independent float64 reference of the Proxy-Anchor loss, written directly from
docs/paper.md section 1 (the exp form, which float64 holds without overflow for
alpha * (1 + delta) up to ~700).

Shared by the loss tests; no code of the package is used here.
"""

from __future__ import annotations

import torch


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``; every random tensor of the loss tests uses one."""
    return torch.Generator().manual_seed(seed)


def similarities(x: torch.Tensor, p: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """s(x, p) for all pairs; "cosine", "dot", or "neg_l2" (minus the Euclidean distance)."""
    x, p = x.double(), p.double()
    if kind == "cosine":
        x = x / x.norm(dim=1, keepdim=True)
        p = p / p.norm(dim=1, keepdim=True)
        return x @ p.T
    if kind == "dot":
        return x @ p.T
    if kind == "neg_l2":  # PML's LpDistance on normalised embeddings: closer = smaller distance
        x = x / x.norm(dim=1, keepdim=True)
        p = p / p.norm(dim=1, keepdim=True)
        return -torch.cdist(x, p)
    raise ValueError(kind)


def reference_terms(
    x: torch.Tensor,
    p: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    delta: float,
    weights: torch.Tensor | None = None,
    kind: str = "cosine",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-proxy terms (pos over P+, neg over P) and the P+ ids, one proxy at a time.

    pos_p = log(1 + sum_{x in X+_p} w_x exp(-alpha (s(x,p) - delta)))
    neg_p = log(1 + sum_{x in X-_p} w_x exp( alpha (s(x,p) + delta)))
    ``weights`` (per sample, >= 0) multiply each exponential; a sample of weight 0 is absent.
    For "neg_l2", s = -d and the margin moves the same way as PML's LpDistance does:
    positives use exp(alpha (d - delta)), negatives exp(alpha (-d - delta)).
    """
    s = similarities(x, p, kind)
    w = torch.ones(len(labels), dtype=torch.float64) if weights is None else weights.double()
    pos_terms, neg_terms, pos_ids = [], [], []
    for c in range(p.shape[0]):
        is_pos = labels == c
        if kind == "neg_l2":
            d = -s[:, c]
            h_pos = torch.exp(alpha * (d - delta))
            h_neg = torch.exp(alpha * (-d - delta))
        else:
            h_pos = torch.exp(-alpha * (s[:, c] - delta))
            h_neg = torch.exp(alpha * (s[:, c] + delta))
        if bool((is_pos & (w > 0)).any()):
            pos_ids.append(c)
            pos_terms.append(torch.log(1 + (w * h_pos)[is_pos].sum()))
        neg_terms.append(torch.log(1 + (w * h_neg)[~is_pos].sum()))
    pos = torch.stack(pos_terms) if pos_terms else torch.zeros(0, dtype=torch.float64)
    return pos, torch.stack(neg_terms), torch.tensor(pos_ids, dtype=torch.long)


def reference_loss(
    x: torch.Tensor,
    p: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 32.0,
    delta: float = 0.1,
    weights: torch.Tensor | None = None,
    kind: str = "cosine",
) -> torch.Tensor:
    """l(X) = 1/|P+| sum pos_p + 1/|P| sum neg_p (docs/paper.md section 1)."""
    pos, neg, _ = reference_terms(x, p, labels, alpha, delta, weights, kind)
    pos_part = pos.sum() / len(pos) if len(pos) else pos.sum()
    return pos_part + neg.sum() / p.shape[0]


def reference_grads(
    x: torch.Tensor, p: torch.Tensor, labels: torch.Tensor, **kw: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, dl/dx, dl/dp) of :func:`reference_loss` in float64, by autograd on the reference."""
    x64 = x.detach().double().requires_grad_(True)
    p64 = p.detach().double().requires_grad_(True)
    loss = reference_loss(x64, p64, labels, **kw)  # type: ignore[arg-type]
    gx, gp = torch.autograd.grad(loss, (x64, p64))
    return loss.detach(), gx, gp


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / max(||b||, tiny), in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))
