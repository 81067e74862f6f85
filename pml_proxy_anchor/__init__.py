"""pml-proxy-anchor: the Proxy-Anchor loss (Kim et al., CVPR 2020) for pytorch-metric-learning.

Public API (imported lazily, so ``import pml_proxy_anchor`` stays cheap):

- :class:`ProxyAnchorLoss` - the loss, a PML ``BaseMetricLossFunction``.
- :class:`RecallAtKCalculator` - Recall@K as a PML ``AccuracyCalculator``.
- :mod:`registry` - names to classes (ours and PML's), ``build(spec)``.
- :func:`load_embedder` - a trained run as a model in eval mode with its test transform.

Needs pytorch-metric-learning 2.x (checked on import, without importing it): PML 3 removed the
trainers, testers and ``InferenceModel`` this plugin builds on.
"""

from __future__ import annotations

import importlib
from typing import Any

from pml_proxy_anchor.errors import UserError

__version__ = "0.1.0"

PML_REQUIREMENT = "pytorch-metric-learning>=2.5,<3"
_PML_SUPPORTED = ((2, 5), (3, 0))  # [lowest, first unsupported)


class PMLVersionError(UserError, ImportError):
    """The installed pytorch-metric-learning is not a 2.x release from 2.5 on."""


def check_pml_version(version: str | None = None) -> str:
    """The installed (or given) pytorch-metric-learning version; :class:`PMLVersionError` with
    the install command unless it is 2.5 or later and below 3."""
    from importlib import metadata

    if version is None:
        try:
            version = metadata.version("pytorch-metric-learning")
        except metadata.PackageNotFoundError:
            raise PMLVersionError(
                "pml-proxy-anchor needs pytorch-metric-learning 2.x, which is not installed. "
                f"Fix: pip install '{PML_REQUIREMENT}'"
            ) from None
    release = _release(version)
    if release is None or not _PML_SUPPORTED[0] <= release < _PML_SUPPORTED[1]:
        needs = (
            "2.x (PML 3 removed the trainers/testers this plugin builds on)"
            if release is not None and release >= _PML_SUPPORTED[1]
            else "2.5 or a later 2.x"
        )
        raise PMLVersionError(
            f"pml-proxy-anchor needs pytorch-metric-learning {needs}; found {version}. "
            f"Fix: pip install '{PML_REQUIREMENT}'"
        )
    return version


def _release(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a version string such as ``2.9.0`` or ``3.0.0rc1``."""
    parts = version.split(".")
    try:
        major = int(parts[0])
        minor = int("".join(c for c in (parts[1] if len(parts) > 1 else "0") if c.isdigit()) or 0)
    except ValueError:
        return None
    return major, minor


check_pml_version()

_LAZY = {
    "ProxyAnchorLoss": ("pml_proxy_anchor.losses", "ProxyAnchorLoss"),
    "RecallAtKCalculator": ("pml_proxy_anchor.evaluation", "RecallAtKCalculator"),
    "load_embedder": ("pml_proxy_anchor.inference", "load_embedder"),
    "registry": ("pml_proxy_anchor.registry", None),
}

__all__ = ["PML_REQUIREMENT", "PMLVersionError", "__version__", "check_pml_version", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pml_proxy_anchor' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
