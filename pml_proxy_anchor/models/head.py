"""The Proxy-Anchor paper's embedding head (Kim et al., CVPR 2020, authors' code).

For a feature map ``F`` of shape ``(B, C, H, W)``::

    e = normalize(W (GAP(F) + GMP(F)) + b)

GAP/GMP are global average/max pooling (summed, not concatenated), ``W`` is a Linear layer from
``C`` to the embedding size initialised with Kaiming normal in ``fan_out`` mode
(std ``sqrt(2 / embedding_size)``) and ``b`` starts at zero; ``normalize`` is L2 normalisation.
This Linear layer is the "embedding layer" that warm-up epochs train alone with the proxies.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class EmbeddingHead(nn.Module):
    """GAP + GMP summed, Linear, L2 normalisation.

    Args:
        in_channels: channels of the trunk's feature map.
        embedding_size: output dimension (512 in the paper).
        normalize: L2-normalise the output (the paper does).
    """

    def __init__(self, in_channels: int, embedding_size: int = 512, normalize: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or embedding_size < 1:
            raise ValueError(
                "in_channels and embedding_size must be positive, "
                f"got in_channels={in_channels}, embedding_size={embedding_size}."
            )
        self.in_channels = in_channels
        self.embedding_size = embedding_size
        self.normalize = normalize
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.gmp = nn.AdaptiveMaxPool2d(1)
        self.embedding = nn.Linear(in_channels, embedding_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming normal (fan_out) weight and zero bias, as in the paper's code."""
        nn.init.kaiming_normal_(self.embedding.weight, mode="fan_out")
        nn.init.zeros_(self.embedding.bias)

    def forward(self, features: Tensor) -> Tensor:
        """``(B, in_channels, H, W)`` feature map -> ``(B, embedding_size)`` embeddings."""
        if features.dim() != 4 or features.shape[1] != self.in_channels:
            raise ValueError(
                f"EmbeddingHead expects a feature map (B, {self.in_channels}, H, W), got shape "
                f"{tuple(features.shape)}. Fix: build the head with in_channels equal to the "
                "trunk's output channels."
            )
        pooled = (self.gap(features) + self.gmp(features)).flatten(1)
        embeddings = self.embedding(pooled)
        return F.normalize(embeddings, p=2, dim=1) if self.normalize else embeddings

    def extra_repr(self) -> str:
        return f"pooling=GAP+GMP, normalize={self.normalize}"
