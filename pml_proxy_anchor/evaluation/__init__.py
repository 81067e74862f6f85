"""Recall@K evaluation with the paper's protocol (Kim et al., CVPR 2020, Sec. 4).

- :class:`RecallAtKCalculator`: a PML ``AccuracyCalculator`` with metrics ``recall_at_<K>``.
- :func:`compute_recall_at_k`: the same from arrays, self-retrieval or query/gallery.
- :mod:`.presets`: the paper's K lists per dataset; :mod:`.standalone`: files -> table + JSON.
"""

from __future__ import annotations

from . import presets
from .ranking import NO_POSITIVE, best_positive_ranks
from .recall import (
    RecallAtKCalculator,
    RecallAtKWarning,
    compute_recall_at_k,
    recall_metric_name,
    recall_ranks,
)
from .validation import RecallInputError

__all__ = [
    "NO_POSITIVE",
    "RecallAtKCalculator",
    "RecallAtKWarning",
    "RecallInputError",
    "best_positive_ranks",
    "compute_recall_at_k",
    "presets",
    "recall_metric_name",
    "recall_ranks",
]
