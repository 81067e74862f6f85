"""Exact global-batch Proxy-Anchor loss under data parallelism (replicated proxies).

Kim et al., CVPR 2020: the loss of docs/paper.md section 1,

    l(X) = 1/|P+| sum_{p in P+} Softplus(LSE_{x in X+_p} -alpha (s(x,p) - delta))
         + 1/|P|  sum_{p in P}  Softplus(LSE_{x in X-_p}  alpha (s(x,p) + delta)),

is not a sum over samples: every proxy's term is a log-sum-exp over the whole batch and |P+|
depends on the whole batch. Computing it on each rank's slice and averaging (naive DDP) changes the
objective. :class:`GlobalBatchLoss` gathers the embeddings (with autograd), the labels and the
miner's tuples of all N ranks, and evaluates the wrapped loss on the global batch ``X`` (B = sum of
the local batches) on every rank, so the value, |P+| and |P| are those of one process with ``X``.

Gradients and DDP. Each rank computes the same ``l(X)``; the gather's backward sums the gradient
of ``X`` over ranks, so rank r's embeddings receive ``N * dl/dx_r``. DDP then *averages* the model
parameter gradients over the N ranks: ``(1/N) sum_r N dl/dx_r dx_r/dtheta = dl/dtheta``, exactly
the single-process gradient of the global-batch loss. The proxies are not in DDP (do not wrap the
loss in DDP): every rank computes the identical exact ``dl/dP`` itself. Without DDP (a model whose
gradients are *summed*, or no model), pass ``ddp_average=False``: then ``x_r.grad = dl/dx_r``.

Use it in place of PML's ``DistributedLossWrapper`` (same call signature). PML's wrapper also
gathers, but multiplies the loss by N; around this loss the value and the proxies' gradients are
then N times the global-batch loss's on every rank (tests/distributed/test_pml_wrapper_factor.py),
and it needs equal local batch sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .gather import all_gather_no_grad, all_gather_with_grad, gather_indices_tuple, get_world_size


class GlobalBatchLoss(nn.Module):
    """Evaluate ``loss`` (e.g. ``ProxyAnchorLoss``) on the batch gathered from all ranks.

    Args:
        loss: a PML-style loss ``loss(embeddings, labels, indices_tuple)``; its parameters (the
            proxies) stay replicated on every rank and must start identical (same seed, or load
            the same checkpoint).
        ddp_average: True (default) when the model's gradients are averaged over ranks by DDP
            (the embeddings' gradient is then ``N * dl/dx``, see the module docstring); False
            for exact per-rank ``dl/dx``.

    The wrapper is transparent for checkpoints: ``state_dict()``/``load_state_dict()`` are those of
    ``loss`` (keys ``proxies``...), so files are interchangeable with single-process runs.
    """

    def __init__(self, loss: nn.Module, ddp_average: bool = True) -> None:
        super().__init__()
        self.loss = loss
        self.ddp_average = bool(ddp_average)

    @property
    def proxies(self) -> torch.Tensor:
        """The wrapped loss's (C, D) proxies (replicated)."""
        return self.loss.proxies

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, ...] | None = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss of the global batch (same value on every rank).

        ``indices_tuple`` (optional) holds tuples mined on this rank's local batch; they are
        re-indexed and gathered, so the loss sees the union of all ranks' tuples.
        """
        if ref_emb is not None or ref_labels is not None:
            raise ValueError(
                "GlobalBatchLoss does not take ref_emb/ref_labels: the reference set of the "
                "Proxy-Anchor loss is the proxies. Fix: call it with (embeddings, labels)."
            )
        if not torch.is_tensor(labels):
            labels = torch.as_tensor(labels, device=embeddings.device)
        world = get_world_size()
        scale = 1.0 if self.ddp_average else 1.0 / world
        all_embeddings = all_gather_with_grad(embeddings, grad_scale=scale)
        all_labels = all_gather_no_grad(labels.to(embeddings.device))
        all_tuples = gather_indices_tuple(indices_tuple, embeddings.shape[0], embeddings.device)
        return self.loss(all_embeddings, all_labels, all_tuples)

    # ---- checkpoints: the wrapped loss's own format ----
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return self.loss.state_dict(*args, **kwargs)

    def load_state_dict(  # type: ignore[override]
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        return self.loss.load_state_dict(state_dict, strict=strict, assign=assign)
