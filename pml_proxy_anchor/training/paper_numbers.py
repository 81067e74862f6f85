"""Recall@K (%) reported for Proxy-Anchor, embedding size 512 (docs/paper.md section 5).

Sources: Kim, Kim, Cho, Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020, Table 1-2
("paper"), and the evaluation of the authors' released models ("authors"). Values that
docs/paper.md marks as unconfirmed (not checked against a copy of the paper table) are listed in
:data:`UNCONFIRMED`.

The numbers live in the data set records (:data:`pml_proxy_anchor.data.DATASETS`); the tables
here are views of them, kept for the code that reads them.
"""

from __future__ import annotations

from pml_proxy_anchor.data.datasets import DATASETS, find

#: ``dataset -> the paper's K list`` (data sets with one).
K_VALUES: dict[str, tuple[int, ...]] = {
    name: record.k_values for name, record in DATASETS.items() if record.k_values is not None
}

#: ``(dataset, backbone) -> source -> Recall@K in %`` for ``K_VALUES[dataset]``.
PAPER_NUMBERS: dict[tuple[str, str], dict[str, tuple[float, ...]]] = {
    (name, backbone): dict(sources)
    for name, record in DATASETS.items()
    for backbone, sources in record.paper_numbers.items()
}

#: ``(dataset, backbone, source, K)`` of values not confirmed against the paper table.
UNCONFIRMED: frozenset[tuple[str, str, str, int]] = frozenset(
    (name, *entry) for name, record in DATASETS.items() for entry in record.unconfirmed
)


def reference_numbers(dataset: str, backbone: str) -> dict[str, dict[str, float]]:
    """``{source: {"recall_at_K": percent}}`` for a dataset/backbone pair ({} when unknown).

    ``dataset`` may be an alias (``"CUB_200_2011"``).
    """
    record = find(dataset)
    if record is None or record.k_values is None:
        return {}
    return {
        source: {f"recall_at_{k}": value for k, value in zip(record.k_values, values)}
        for source, values in record.paper_numbers.get(backbone, {}).items()
    }


def is_confirmed(dataset: str, backbone: str, source: str, k: int) -> bool:
    """Whether the paper's value for this K has been checked against the paper's table."""
    record = find(dataset)
    name = record.name if record is not None else dataset
    return (name, backbone, source, k) not in UNCONFIRMED
