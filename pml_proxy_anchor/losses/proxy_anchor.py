"""The Proxy-Anchor loss as a pytorch-metric-learning loss function.

Kim, Kim, Cho, Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020 (arXiv 2003.13911):

    l(X) = 1/|P+| sum_{p in P+} Softplus(LSE_{x in X+_p} -alpha (s(x, p) - delta))
         + 1/|P|  sum_{p in P}  Softplus(LSE_{x in X-_p}  alpha (s(x, p) + delta))

The loss emits one term per proxy ("pos_loss": the proxies in P+, "neg_loss": all proxies) as
PML "element" losses, so that PML's reducers apply per proxy: the default ``MeanReducer`` gives
exactly the paper's 1/|P+| and 1/|P| normalisation (``DivisorReducer`` gives the same, as both
dicts carry their ``divisor``). Miner output (pairs or triplets) becomes per-sample weights
``w`` (``lmu.convert_to_weights``) that multiply each sample's exponential inside both sums:
weight 0 removes the sample exactly, and a proxy whose positives are all removed leaves P+.

Cosine and dot-product similarities go through the fused, class-chunked kernel of
:mod:`pml_proxy_anchor.losses.fused`; any other ``BaseDistance`` goes through a dense generic
path that uses the distance's own notion of "closer" (``distance.margin``), like PML's built-in.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pytorch_metric_learning.distances import (
    BaseDistance,
    CosineSimilarity,
    DotProductSimilarity,
)
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.losses.mixins import WeightRegularizerMixin
from pytorch_metric_learning.reducers import (
    DivisorReducer,
    MeanReducer,
    MultipleReducers,
    SumReducer,
)
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from .fused import (
    DEFAULT_CHUNK_BYTES,
    KernelConfig,
    auto_chunk_size,
    compute_dtype,
    fused_proxy_anchor_sums,
    fused_proxy_anchor_terms,
)
from .validation import (
    LossInputError,
    check_flag,
    validate_hyperparameters,
    validate_indices_tuple,
    validate_inputs,
)

LossDict = dict[str, dict[str, Any]]


class ProxyAnchorLoss(WeightRegularizerMixin, BaseMetricLossFunction):
    """Proxy-Anchor loss with one learnable proxy per class (``self.proxies``, shape (C, D)).

    Args:
        num_classes: number of classes C (labels must lie in [0, C)).
        embedding_size: embedding dimension D.
        margin: delta of the paper (default 0.1); any finite number (0 and negative values are
            accepted as ablations).
        alpha: scale of the paper (default 32); a finite number > 0.
        fused: ``None`` (default) uses the fused kernel whenever the distance allows it
            (CosineSimilarity / DotProductSimilarity with power 1); ``False`` forces the dense
            generic path; ``True`` requires the fused kernel (error otherwise).
        chunk_size: proxies per chunk of the fused kernel; ``None`` picks it from
            ``chunk_bytes``.
        chunk_bytes: memory of the fused kernel's two float32 ``batch x chunk`` workspaces
            together (default 16 MiB); sets the automatic chunk size.
        validate: check labels, embeddings and the miner's ``indices_tuple`` on every call
            (cheap; default True).
        **kwargs: PML's own arguments (``distance``, ``reducer``, ``embedding_regularizer``,
            ``weight_regularizer``, ``weight_init_func``, ``collect_stats``, ...).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margin: float = 0.1,
        alpha: float = 32,
        *,
        fused: bool | None = None,
        chunk_size: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        validate: bool = True,
        **kwargs: Any,
    ) -> None:
        validate_hyperparameters(
            num_classes,
            embedding_size,
            alpha,
            margin=margin,
            chunk_size=chunk_size,
            chunk_bytes=chunk_bytes,
        )
        check_flag("fused", fused, allow_none=True)
        check_flag("validate", validate)
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.embedding_size = int(embedding_size)
        self.margin = float(margin)
        self.alpha = float(alpha)
        self.fused = fused
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.chunk_bytes = int(chunk_bytes)
        self.validate = validate
        self.proxies = torch.nn.Parameter(torch.empty(self.num_classes, self.embedding_size))
        self.weight_init_func(self.proxies)
        self.add_to_recordable_attributes(
            list_of_names=["num_classes", "embedding_size", "alpha", "margin"], is_stat=False
        )
        self.add_to_recordable_attributes(
            list_of_names=["num_pos_proxies", "num_excluded_samples"], is_stat=True
        )
        if fused and self._fused_normalize() is None:
            raise LossInputError(
                f"fused=True needs CosineSimilarity or DotProductSimilarity (power=1); got "
                f"{self.distance!r}. Use fused=None to fall back to the generic path."
            )

    # ---- PML hooks ----
    def get_default_reducer(self) -> MeanReducer:
        return MeanReducer()

    def get_default_distance(self) -> BaseDistance:
        return CosineSimilarity()

    def get_default_weight_init_func(self) -> c_f.TorchInitWrapper:
        return c_f.TorchInitWrapper(torch.nn.init.kaiming_normal_, mode="fan_out")

    def _sub_loss_names(self) -> list[str]:
        return ["pos_loss", "neg_loss"]

    def cast_types(self, dtype: torch.dtype | None, device: torch.device) -> None:
        """Move the proxies to ``device``. Their dtype is kept (float32 master weights): half
        precision inputs are computed in float32 and get their gradients in their own dtype."""
        if self.proxies.device != torch.device(device):
            self.proxies.data = self.proxies.data.to(device)

    def get_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The (B, C) matrix ``distance(embeddings, proxies)`` (cosine similarities by default)."""
        return self.distance(embeddings, self.proxies.to(embeddings.dtype))

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        indices_tuple: tuple[torch.Tensor, ...] | None = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.validate:
            labels = validate_inputs(embeddings, labels, self.num_classes, self.embedding_size)
            indices_tuple = validate_indices_tuple(
                indices_tuple, embeddings.shape[0], embeddings.device
            )
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, ...] | None,
        ref_emb: torch.Tensor,
        ref_labels: torch.Tensor,
    ) -> LossDict:
        c_f.labels_required(labels)
        c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        self.cast_types(None, embeddings.device)
        labels = labels.long()
        if embeddings.shape[0] == 0:
            return self._empty_batch_losses(embeddings)

        log_weights, kept_labels = self._sample_log_weights(indices_tuple, labels)
        has_pos = torch.zeros(self.num_classes, dtype=torch.bool, device=labels.device)
        has_pos[kept_labels] = True
        pos_ids = torch.nonzero(has_pos).squeeze(1)
        if self.collect_stats:
            self.num_pos_proxies = int(pos_ids.numel())
            self.num_excluded_samples = int(labels.numel() - kept_labels.numel())

        normalize = self._fused_normalize() if self.fused is not False else None
        linear = self._linear_term_weights(len(pos_ids)) if normalize is not None else None
        if normalize is not None and linear is not None:
            # The reducer is a fixed weighting of the terms: the kernel returns the two reduced
            # parts with their gradients computed in the same pass.
            dtype = compute_dtype(embeddings, self.proxies)
            pos_w = has_pos.to(dtype).mul_(linear[0])
            pos_loss, neg_loss = fused_proxy_anchor_sums(
                embeddings,
                self.proxies,
                labels,
                log_weights,
                self._kernel_config(embeddings, normalize),
                pos_w,
                torch.full_like(pos_w, linear[1]),
            )
            loss_dict = {
                name: {"losses": value, "indices": None, "reduction_type": "already_reduced"}
                for name, value in (("pos_loss", pos_loss), ("neg_loss", neg_loss))
            }
            self.add_weight_regularization_to_loss_dict(loss_dict, self.proxies)
            return loss_dict
        if normalize is not None:
            pos_terms, neg_terms = fused_proxy_anchor_terms(
                embeddings,
                self.proxies,
                labels,
                log_weights,
                self._kernel_config(embeddings, normalize),
            )
        else:
            pos_terms, neg_terms = self._generic_terms(embeddings, labels, log_weights)

        all_ids = c_f.torch_arange_from_size(self.proxies)
        loss_dict: LossDict = {
            "pos_loss": {
                "losses": pos_terms[pos_ids],
                "indices": pos_ids,
                "reduction_type": "element",
                "divisor": len(pos_ids),
            },
            "neg_loss": {
                "losses": neg_terms,
                "indices": all_ids,
                "reduction_type": "element",
                "divisor": self.num_classes,
            },
        }
        if len(pos_ids) == 0:  # every sample removed by the miner: nothing to pull
            loss_dict["pos_loss"] = self._zero_entry(embeddings)
        self.add_weight_regularization_to_loss_dict(loss_dict, self.proxies)
        return loss_dict

    @staticmethod
    def _sample_log_weights(
        indices_tuple: tuple[torch.Tensor, ...] | None, labels: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``log w`` per sample from the miner's tuples (None when every weight is 1) and the
        labels of the samples kept (``w > 0``)."""
        if indices_tuple is None:
            return None, labels
        weights = lmu.convert_to_weights(indices_tuple, labels, dtype=torch.float32)
        kept = weights > 0
        if bool(kept.all()) and bool((weights == 1).all()):
            return None, labels
        return weights.log(), labels[kept]

    # ---- the two paths ----
    def _fused_normalize(self) -> bool | None:
        """True/False (normalise or not) if the fused kernel computes this distance, else None."""
        dist = self.distance
        if type(dist) not in (CosineSimilarity, DotProductSimilarity):
            return None
        if dist.power != 1 or not dist.is_inverted:
            return None
        if dist.normalize_embeddings and dist.p != 2:
            return None
        return bool(dist.normalize_embeddings)

    def _kernel_config(self, embeddings: torch.Tensor, normalize: bool) -> KernelConfig:
        chunk = self.chunk_size or auto_chunk_size(
            embeddings.shape[0], self.num_classes, self.chunk_bytes
        )
        return KernelConfig(self.alpha, self.margin, normalize, chunk)

    def _linear_term_weights(self, num_pos: int) -> tuple[float, float] | None:
        """The weights ``(a, b)`` of ``loss = a * sum(pos terms) + b * sum(neg terms)`` when the
        reducer is such a fixed weighting (Mean, Divisor, Sum; without recorded stats, which
        need the per-proxy terms), else None."""
        reducer = self.reducer
        if type(reducer) is not MultipleReducers or num_pos == 0:
            return None
        out = []
        for name, count in (("pos_loss", num_pos), ("neg_loss", self.num_classes)):
            sub = reducer.reducers[name] if name in reducer.reducers else reducer.default_reducer
            if sub.collect_stats:
                return None
            if type(sub) in (MeanReducer, DivisorReducer):
                out.append(1.0 / count)
            elif type(sub) is SumReducer:
                out.append(1.0)
            else:
                return None
        return out[0], out[1]

    def _generic_terms(
        self, embeddings: torch.Tensor, labels: torch.Tensor, log_weights: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense path for any ``BaseDistance``; ``distance.margin`` defines "closer"."""
        dtype = compute_dtype(embeddings, self.proxies)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            mat = self.distance(embeddings.to(dtype), self.proxies.to(dtype))
            pos_mask = torch.nn.functional.one_hot(labels, self.num_classes).bool()
            pos_logits = self.alpha * self.distance.margin(mat, self.margin)
            neg_logits = self.alpha * self.distance.margin(-self.margin, mat)
            if log_weights is not None:
                pos_logits = pos_logits + log_weights.to(dtype)[:, None]
                neg_logits = neg_logits + log_weights.to(dtype)[:, None]
            pos = _softplus_lse(pos_logits.masked_fill(~pos_mask, -math.inf))
            neg = _softplus_lse(neg_logits.masked_fill(pos_mask, -math.inf))
        return pos, neg

    # ---- helpers ----
    def _zero_entry(self, embeddings: torch.Tensor) -> dict[str, Any]:
        zero = embeddings.sum() * 0 + self.proxies.sum() * 0
        return {"losses": zero, "indices": None, "reduction_type": "already_reduced"}

    def _empty_batch_losses(self, embeddings: torch.Tensor) -> LossDict:
        """Zero loss that still backpropagates (zero gradients) for an empty batch."""
        if self.collect_stats:
            self.num_pos_proxies = 0
            self.num_excluded_samples = 0
        loss_dict = {name: self._zero_entry(embeddings) for name in self._sub_loss_names()}
        self.add_weight_regularization_to_loss_dict(loss_dict, self.proxies)
        return loss_dict


def _softplus_lse(logits: torch.Tensor) -> torch.Tensor:
    """Softplus(LSE over dim 0) = log(1 + sum exp(logits)), per column; 0 for an empty column."""
    zero_row = logits.new_zeros((1, logits.shape[1]))
    return torch.logsumexp(torch.cat([logits, zero_row], dim=0), dim=0)
