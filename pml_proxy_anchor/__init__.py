"""pml-proxy-anchor: the Proxy-Anchor loss (Kim et al., CVPR 2020) for pytorch-metric-learning.

Public API (imported lazily, so ``import pml_proxy_anchor`` stays cheap):

- :class:`ProxyAnchorLoss` - the loss, a PML ``BaseMetricLossFunction``.
- :class:`RecallAtKCalculator` - Recall@K as a PML ``AccuracyCalculator``.
- :mod:`registry` - names to classes (ours and PML's), ``build(spec)``.
- :func:`load_embedder` - a trained run as a model in eval mode with its test transform.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ProxyAnchorLoss": ("pml_proxy_anchor.losses", "ProxyAnchorLoss"),
    "RecallAtKCalculator": ("pml_proxy_anchor.evaluation", "RecallAtKCalculator"),
    "load_embedder": ("pml_proxy_anchor.inference", "load_embedder"),
    "registry": ("pml_proxy_anchor.registry", None),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pml_proxy_anchor' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
