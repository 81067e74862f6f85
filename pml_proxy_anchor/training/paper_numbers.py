"""Recall@K (%) reported for Proxy-Anchor, embedding size 512 (SPEC.md section 5).

Sources: Kim, Kim, Cho, Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020, Table 1-2
("paper"), and the evaluation of the authors' released models ("authors"). Values marked
unconfirmed in SPEC.md (not checked against a copy of the paper table) are listed in
:data:`UNCONFIRMED`.
"""

from __future__ import annotations

K_VALUES: dict[str, tuple[int, ...]] = {
    "cub200": (1, 2, 4, 8),
    "cars196": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40),
}

# (dataset, backbone) -> source -> Recall@K in % for K_VALUES[dataset]
PAPER_NUMBERS: dict[tuple[str, str], dict[str, tuple[float, ...]]] = {
    ("cub200", "bn_inception"): {
        "paper": (68.4, 79.2, 86.8, 91.6),
        "authors": (69.1, 78.9, 86.1, 91.2),
    },
    ("cars196", "bn_inception"): {
        "paper": (86.1, 91.7, 95.0, 97.3),
        "authors": (86.4, 91.9, 95.0, 97.0),
    },
    ("sop", "bn_inception"): {
        "paper": (79.1, 90.8, 96.2, 98.7),
        "authors": (79.2, 90.7, 96.2, 98.6),
    },
    ("inshop", "bn_inception"): {
        "paper": (91.5, 98.1, 98.8, 99.1, 99.2),
        "authors": (91.9, 98.1, 98.7, 99.0, 99.1),
    },
    ("cub200", "resnet50"): {"authors": (69.9, 79.6, 86.6, 91.4)},
    ("cars196", "resnet50"): {"authors": (87.7, 92.7, 95.5, 97.3)},
}

# (dataset, backbone, source, K) of values SPEC.md marks as not confirmed against the paper table.
UNCONFIRMED: frozenset[tuple[str, str, str, int]] = frozenset(
    {
        ("cub200", "bn_inception", "paper", 8),
        ("cars196", "bn_inception", "paper", 8),
        ("sop", "bn_inception", "paper", 1000),
        ("inshop", "bn_inception", "paper", 30),
        ("inshop", "bn_inception", "paper", 40),
    }
)


def reference_numbers(dataset: str, backbone: str) -> dict[str, dict[str, float]]:
    """``{source: {"recall_at_K": percent}}`` for a dataset/backbone pair ({} when unknown)."""
    sources = PAPER_NUMBERS.get((dataset, backbone), {})
    ks = K_VALUES.get(dataset, ())
    return {
        source: {f"recall_at_{k}": value for k, value in zip(ks, values)}
        for source, values in sources.items()
    }


def is_confirmed(dataset: str, backbone: str, source: str, k: int) -> bool:
    return (dataset, backbone, source, k) not in UNCONFIRMED
