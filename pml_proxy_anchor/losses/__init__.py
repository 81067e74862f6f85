"""Losses of pml-proxy-anchor: Proxy-Anchor (Kim et al., CVPR 2020) and its fused kernel."""

from __future__ import annotations

from .fused import (
    FusedProxyAnchorFunction,
    FusedProxyAnchorSums,
    KernelConfig,
    fused_proxy_anchor_sums,
    fused_proxy_anchor_terms,
)
from .proxy_anchor import ProxyAnchorLoss

__all__ = [
    "FusedProxyAnchorFunction",
    "FusedProxyAnchorSums",
    "KernelConfig",
    "ProxyAnchorLoss",
    "fused_proxy_anchor_sums",
    "fused_proxy_anchor_terms",
]
