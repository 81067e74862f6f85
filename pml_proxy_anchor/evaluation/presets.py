"""The paper's Recall@K lists per dataset (Kim et al., CVPR 2020, Tables 1-3).

CUB-200-2011 and Cars-196: K = 1, 2, 4, 8; Stanford Online Products: K = 1, 10, 100, 1000;
In-Shop Clothes Retrieval: K = 1, 10, 20, 30, 40; anything else: 1, 2, 4, 8
(:data:`~pml_proxy_anchor.evaluation.recall.DEFAULT_K_VALUES`).

The lists and the accepted spellings of each name live in the data set records
(:data:`pml_proxy_anchor.data.DATASETS`); this module reads them.
"""

from __future__ import annotations

from typing import Any

from pml_proxy_anchor.data.datasets import DATASETS, find

from .recall import DEFAULT_K_VALUES, RecallAtKCalculator

__all__ = [
    "DEFAULT_K_VALUES",
    "PAPER_K_VALUES",
    "calculator_for",
    "canonical_dataset_name",
    "recall_k_values",
]

#: ``dataset -> the paper's K list`` (a view of the data set records).
PAPER_K_VALUES: dict[str, tuple[int, ...]] = {
    name: record.k_values for name, record in DATASETS.items() if record.k_values is not None
}


def canonical_dataset_name(dataset_name: str) -> str | None:
    """ "CUB_200_2011" -> "cub200", "In-Shop" -> "inshop"; None for names of no data set."""
    record = find(str(dataset_name))
    return record.name if record is not None else None


def recall_k_values(dataset_name: str) -> tuple[int, ...]:
    """The paper's K list for ``dataset_name`` (case and punctuation ignored); else 1, 2, 4, 8."""
    record = find(str(dataset_name))
    if record is None or record.k_values is None:
        return tuple(DEFAULT_K_VALUES)
    return record.k_values


def calculator_for(dataset_name: str, **kwargs: Any) -> RecallAtKCalculator:
    """A :class:`RecallAtKCalculator` with the paper's Ks for ``dataset_name``.

    ``kwargs`` go to the calculator (``k_values`` there overrides the preset).
    """
    kwargs.setdefault("k_values", recall_k_values(dataset_name))
    return RecallAtKCalculator(**kwargs)
