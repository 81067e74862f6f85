"""Class-sharded Proxy-Anchor loss: each rank holds and trains only its slice of the proxies.

Kim et al., CVPR 2020 (docs/paper.md section 1). The loss is a sum over proxies,

    l(X) = 1/|P+| sum_{p in P+} pos_p(X) + 1/|P| sum_{p in P} neg_p(X),

and each term ``pos_p``/``neg_p`` reads only proxy ``p`` and the (gathered) batch ``X``. So, like
Partial-FC for softmax losses, the proxies can be split by class: rank r holds the contiguous rows
``[lo_r, hi_r)`` (:func:`shard_bounds`; uneven when N does not divide C, possibly empty when C < N)
and computes, over the whole gathered batch, only the terms of its own proxies. A sample whose
label is outside the slice is a negative for every local proxy. Every rank has the gathered labels,
so |P+| (classes present in the global batch, after mining) is known on every rank without
communication; only the scalar partial sum ``l_r = sum_{p in shard} (pos_p/|P+| + neg_p/|P|)`` is
all-reduced, for the reported value ``l = sum_r l_r``.

Gradients: ``dl/dP_r = dl_r/dP_r`` is computed where the shard lives and never leaves the rank (no
C x D all-reduce; proxy memory, gradient and optimizer state per rank fall as 1/N). The embeddings
get ``dl/dx = sum_r dl_r/dx`` from the gather's backward (a sum over ranks); under DDP, which
averages the model's gradients, the gather multiplies them by N (``ddp_average=True``) so that the
averaged parameter gradients equal the single-process gradients of the global-batch loss.

The two weighted sums and their closed-form gradients come from the loss's chunked kernel
(:func:`pml_proxy_anchor.losses.fused.fused_proxy_anchor_sums`): out-of-slice samples get the
local label ``C_r``, which the kernel reads as "own proxy on another rank" (a negative of every
local proxy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity
from pytorch_metric_learning.reducers import DivisorReducer, MeanReducer, MultipleReducers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from torch import nn

from pml_proxy_anchor.losses.fused import (
    DEFAULT_CHUNK_BYTES,
    KernelConfig,
    auto_chunk_size,
    compute_dtype,
    fused_proxy_anchor_sums,
)
from pml_proxy_anchor.losses.validation import (
    check_flag,
    validate_hyperparameters,
    validate_inputs,
)

from .gather import (
    all_gather_no_grad,
    all_gather_with_grad,
    all_reduce_sum,
    gather_indices_tuple,
    get_rank,
    get_world_size,
)


def shard_bounds(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of the proxies held by ``rank``: contiguous, sizes differ by at most one
    (the first ``C mod N`` ranks hold one more)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank {rank} is not in [0, world_size={world_size}); expected 0 <= rank < world_size"
        )
    base, extra = divmod(int(num_classes), int(world_size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class ShardedProxyAnchorLoss(nn.Module):
    """Proxy-Anchor loss whose proxies are split by class over the ranks (see module docstring).

    Args:
        num_classes: total number of classes C (all ranks).
        embedding_size: D.
        margin, alpha: delta and alpha of the paper (0.1, 32).
        normalize: True = cosine similarity (the paper), False = plain dot product.
        rank, world_size: the shard to hold; default: the current process group (1 process
            when not distributed).
        ddp_average: True (default) when DDP averages the model's gradients over ranks.
        chunk_size, chunk_bytes: chunking of the fused kernel (as in ``ProxyAnchorLoss``).
        validate: check labels/embeddings of the local batch on every call.

    ``self.proxies`` is this rank's (hi - lo, D) slice, initialised like the full matrix would be
    (Kaiming normal, fan_out = C). ``load_state_dict`` accepts this slice or the full (C, D)
    matrix (re-sharded for this rank); :func:`pml_proxy_anchor.distributed.checkpoint.
    full_loss_state_dict` gathers the full matrix for saving.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margin: float = 0.1,
        alpha: float = 32,
        *,
        normalize: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        ddp_average: bool = True,
        chunk_size: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        validate: bool = True,
    ) -> None:
        super().__init__()
        validate_hyperparameters(
            num_classes,
            embedding_size,
            alpha,
            margin=margin,
            chunk_size=chunk_size,
            chunk_bytes=chunk_bytes,
        )
        check_flag("normalize", normalize)
        check_flag("ddp_average", ddp_average)
        check_flag("validate", validate)
        self.num_classes = int(num_classes)
        self.embedding_size = int(embedding_size)
        self.margin = float(margin)
        self.alpha = float(alpha)
        self.normalize = bool(normalize)
        self.world_size = int(get_world_size() if world_size is None else world_size)
        self.rank = int(get_rank() if rank is None else rank)
        self.lo, self.hi = shard_bounds(self.num_classes, self.world_size, self.rank)
        self.ddp_average = bool(ddp_average)
        self.chunk_size = chunk_size
        self.chunk_bytes = int(chunk_bytes)
        self.validate = validate
        self.num_pos_proxies = 0
        self.proxies = nn.Parameter(torch.empty(self.hi - self.lo, self.embedding_size))
        with torch.no_grad():  # kaiming_normal_(mode="fan_out") of the full (C, D) matrix
            self.proxies.normal_(0.0, math.sqrt(2.0 / self.num_classes))

    @classmethod
    def from_loss(
        cls,
        loss: nn.Module,
        rank: int | None = None,
        world_size: int | None = None,
        ddp_average: bool = True,
    ) -> ShardedProxyAnchorLoss:
        """The shard of an existing ``ProxyAnchorLoss`` (same C, D, alpha, margin, similarity and
        proxies). Only what sharding can compute exactly is accepted: cosine or dot-product
        similarity, the default mean reduction, no regularizers."""
        dist_obj = getattr(loss, "distance", None)
        if type(dist_obj) is CosineSimilarity or (
            type(dist_obj) is DotProductSimilarity and not dist_obj.normalize_embeddings
        ):
            normalize = type(dist_obj) is CosineSimilarity
        else:
            raise ValueError(
                f"sharded proxies need CosineSimilarity or DotProductSimilarity; the loss uses "
                f"{dist_obj!r}. Fix: use one of those, or replicated proxies (GlobalBatchLoss)."
            )
        if getattr(dist_obj, "power", 1) != 1:
            raise ValueError(f"sharded proxies need distance power 1; got {dist_obj.power}")
        _check_reducer(getattr(loss, "reducer", None))
        for name in ("weight_regularizer", "embedding_regularizer"):
            if getattr(loss, name, None) is not None:
                raise ValueError(
                    f"sharded proxies do not support a {name} (it would be computed per shard); "
                    "Fix: remove it from the config or use replicated proxies (GlobalBatchLoss)."
                )
        out = cls(
            loss.num_classes,
            loss.embedding_size,
            margin=loss.margin,
            alpha=loss.alpha,
            normalize=normalize,
            rank=rank,
            world_size=world_size,
            ddp_average=ddp_average,
            chunk_size=getattr(loss, "chunk_size", None),
            chunk_bytes=getattr(loss, "chunk_bytes", DEFAULT_CHUNK_BYTES),
        )
        with torch.no_grad():
            out.proxies.data = loss.proxies.detach()[out.lo : out.hi].clone()
        return out

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
            f"shard=[{self.lo}, {self.hi}) of rank {self.rank}/{self.world_size}, "
            f"alpha={self.alpha}, margin={self.margin}, normalize={self.normalize}"
        )

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        """The global-batch loss (same value on every rank); gradients: see the module docstring."""
        if self.validate:
            labels = validate_inputs(embeddings, labels, self.num_classes, self.embedding_size)
        world = get_world_size()
        if world != self.world_size:
            raise ValueError(
                f"this shard was built for world_size={self.world_size} but the process group "
                f"has {world} ranks. Fix: build the loss after init_distributed(), or re-shard "
                "with load_state_dict(full_state)."
            )
        scale = float(world) if self.ddp_average else 1.0
        x = all_gather_with_grad(embeddings, grad_scale=scale)  # (B, D)
        y = all_gather_no_grad(labels.to(embeddings.device).long())  # (B,)
        tuples = gather_indices_tuple(indices_tuple, embeddings.shape[0], embeddings.device)
        dtype = compute_dtype(x, self.proxies)
        weights = lmu.convert_to_weights(tuples, y, dtype=torch.float32)
        kept = weights > 0
        log_weights = None if bool((weights == 1).all()) else weights.log()
        pos_classes = torch.unique(y[kept])
        num_pos = int(pos_classes.numel())
        self.num_pos_proxies = num_pos

        rows = self.hi - self.lo
        in_shard = (y >= self.lo) & (y < self.hi)
        local_labels = torch.where(in_shard, y - self.lo, torch.full_like(y, rows))
        pos_w = torch.zeros(rows, dtype=dtype, device=x.device)
        local_pos = pos_classes[(pos_classes >= self.lo) & (pos_classes < self.hi)] - self.lo
        if num_pos:
            pos_w[local_pos] = 1.0 / num_pos
        neg_w = torch.full((rows,), 1.0 / self.num_classes, dtype=dtype, device=x.device)
        if x.shape[0] == 0:
            local = x.sum() * 0 + self.proxies.sum() * 0
        else:
            chunk = self.chunk_size or auto_chunk_size(x.shape[0], rows, self.chunk_bytes)
            cfg = KernelConfig(self.alpha, self.margin, self.normalize, int(chunk))
            pos_sum, neg_sum = fused_proxy_anchor_sums(
                x, self.proxies, local_labels, log_weights, cfg, pos_w, neg_w
            )
            local = pos_sum + neg_sum
        total = all_reduce_sum(local.detach())
        return local + (total - local).detach()

    # ---- checkpoints ----
    def load_state_dict(  # type: ignore[override]
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Accepts this rank's slice or the full (C, D) matrix (re-sharded for this rank)."""
        state = dict(state_dict)
        full = state.get("proxies")
        if torch.is_tensor(full) and full.ndim == 2 and full.shape[0] != self.hi - self.lo:
            if full.shape[0] != self.num_classes:
                raise ValueError(
                    f"the proxies in the state have {full.shape[0]} rows; expected the full "
                    f"matrix ({self.num_classes} rows) or this rank's shard ({self.hi - self.lo} "
                    "rows). Fix: load a checkpoint written for the same number of classes."
                )
            state["proxies"] = full[self.lo : self.hi].clone()
        return super().load_state_dict(state, strict=strict, assign=assign)


def _check_reducer(reducer: Any) -> None:
    """Sharding computes the mean reduction (1/|P+|, 1/|P|) of the paper; reject the others."""
    subs = [reducer]
    if isinstance(reducer, MultipleReducers):
        subs = [reducer.default_reducer, *reducer.reducers.values()]
    for sub in subs:
        if sub is not None and type(sub) not in (MeanReducer, DivisorReducer):
            raise ValueError(
                f"sharded proxies compute the paper's mean reduction only; the loss uses "
                f"{type(sub).__name__}. Fix: use the default MeanReducer, or replicated proxies."
            )
