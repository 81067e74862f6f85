"""The paper's Recall@K lists per dataset (Kim et al., CVPR 2020, Tables 1-3).

CUB-200-2011 and Cars-196: K = 1, 2, 4, 8; Stanford Online Products: K = 1, 10, 100, 1000;
In-Shop Clothes Retrieval: K = 1, 10, 20, 30, 40; anything else: 1, 2, 4, 8.
"""

from __future__ import annotations

import re
from typing import Any

from .recall import RecallAtKCalculator

PAPER_K_VALUES: dict[str, tuple[int, ...]] = {
    "cub200": (1, 2, 4, 8),
    "cars196": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40),
}
DEFAULT_K_VALUES: tuple[int, ...] = (1, 2, 4, 8)

_ALIASES = {
    "cub": "cub200",
    "cub200": "cub200",
    "cub2002011": "cub200",
    "cars": "cars196",
    "cars196": "cars196",
    "stanfordcars": "cars196",
    "sop": "sop",
    "stanfordonlineproducts": "sop",
    "onlineproducts": "sop",
    "inshop": "inshop",
    "deepfashioninshop": "inshop",
    "inshopclothes": "inshop",
    "inshopclothesretrieval": "inshop",
}


def canonical_dataset_name(dataset_name: str) -> str | None:
    """ "CUB_200_2011" -> "cub200", "In-Shop" -> "inshop"; None for datasets without a preset."""
    key = re.sub(r"[^a-z0-9]", "", str(dataset_name).lower())
    return _ALIASES.get(key)


def recall_k_values(dataset_name: str) -> tuple[int, ...]:
    """The paper's K list for ``dataset_name`` (case and punctuation ignored); else 1, 2, 4, 8."""
    name = canonical_dataset_name(dataset_name)
    return PAPER_K_VALUES[name] if name else DEFAULT_K_VALUES


def calculator_for(dataset_name: str, **kwargs: Any) -> RecallAtKCalculator:
    """A :class:`RecallAtKCalculator` with the paper's Ks for ``dataset_name``.

    ``kwargs`` go to the calculator (``k_values`` there overrides the preset).
    """
    kwargs.setdefault("k_values", recall_k_values(dataset_name))
    return RecallAtKCalculator(**kwargs)
