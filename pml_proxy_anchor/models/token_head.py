"""The embedding head of the ViT metric-learning papers, for trunks returning one vector per image.

For a ViT the trunk's output is the CLS token ``t`` of shape ``(B, C)`` (after the ViT's final
LayerNorm); the head is that of HIER (Kim et al., CVPR 2023, code ``hier/models/model.py``, the
settings its ViT scripts use)::

    e = normalize(W LN(t) + b)

``LN`` is a LayerNorm without learnable parameters (HIER's ``use_lastnorm``), ``W`` a Linear layer
from ``C`` to the embedding size initialised orthogonally and ``b`` starts at zero; ``normalize`` is
L2 normalisation. Hyp-ViT (Ermolov et al., CVPR 2022, code ``model.py``) uses the same orthogonal
Linear on the CLS token without the LayerNorm and the bias. The Linear layer is the "embedding
layer" that warm-up epochs train alone with the proxies, as for :class:`~.head.EmbeddingHead`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TokenHead(nn.Module):
    """LayerNorm (no affine), Linear, L2 normalisation of a ``(B, C)`` feature vector.

    Args:
        in_features: size of the trunk's vector (384 for ViT-S).
        embedding_size: output dimension.
        normalize: L2-normalise the output.
    """

    def __init__(self, in_features: int, embedding_size: int = 512, normalize: bool = True) -> None:
        super().__init__()
        if in_features < 1 or embedding_size < 1:
            raise ValueError(
                "in_features and embedding_size must be positive, "
                f"got in_features={in_features}, embedding_size={embedding_size}."
            )
        self.in_features = in_features
        self.embedding_size = embedding_size
        self.normalize = normalize
        self.norm = nn.LayerNorm(in_features, elementwise_affine=False)
        self.embedding = nn.Linear(in_features, embedding_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Orthogonal weight and zero bias, as in HIER's and Hyp-ViT's code."""
        nn.init.orthogonal_(self.embedding.weight)
        nn.init.zeros_(self.embedding.bias)

    def forward(self, features: Tensor) -> Tensor:
        """``(B, in_features)`` -> ``(B, embedding_size)`` embeddings."""
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"TokenHead expects one feature vector per image (B, {self.in_features}), got "
                f"shape {tuple(features.shape)}. Fix: build the head with in_features equal to "
                "the trunk's output size."
            )
        embeddings = self.embedding(self.norm(features))
        return F.normalize(embeddings, p=2, dim=1) if self.normalize else embeddings

    def extra_repr(self) -> str:
        return f"input=token, normalize={self.normalize}"
