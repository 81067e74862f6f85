"""Losses of pml-proxy-anchor: Proxy-Anchor (Kim et al., CVPR 2020) and its fused kernel."""

from __future__ import annotations

from .fused import FusedProxyAnchorFunction, KernelConfig, fused_proxy_anchor_terms
from .proxy_anchor import ProxyAnchorLoss

__all__ = [
    "FusedProxyAnchorFunction",
    "KernelConfig",
    "ProxyAnchorLoss",
    "fused_proxy_anchor_terms",
]
