"""One record per data set: every fact about it in one place, looked up by name or alias.

A :class:`DatasetRecord` holds a data set's name and aliases, its loader (``data:`` section ->
splits) and test transform, the keys its ``data:`` section accepts (with defaults and checks), its
evaluation protocol, the paper's Recall@K list and the numbers reported for it (docs/paper.md
sections 3-5). :data:`DATASETS` is the table; :func:`lookup` resolves a name (any case, ``-``,
``_`` and spaces ignored, aliases such as ``"CUB_200_2011"`` or ``"In-Shop"``) with a did-you-mean
for typos. The K lists of :mod:`pml_proxy_anchor.evaluation.presets`, the reference numbers of
:mod:`pml_proxy_anchor.training.paper_numbers` and :func:`~pml_proxy_anchor.data.build_datasets`
all read this table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch.utils.data import Dataset

from pml_proxy_anchor.registry import close_matches

from . import loaders
from .base import LocalImageDataset
from .cars import Cars196
from .cub import CUB200
from .errors import DataConfigError
from .inshop import InShop
from .options import DataOption, boolean, choice, integer, optional_path, read_options
from .sop import StanfordOnlineProducts

Loader = Callable[["DatasetRecord", Mapping[str, Any], str], dict[str, Dataset]]
EvalTransform = Callable[[Mapping[str, Any], str], Callable[[Any], Any]]
#: ``backbone -> source ("paper" | "authors") -> Recall@K in % for the record's k_values``.
PaperNumbers = Mapping[str, Mapping[str, tuple[float, ...]]]

SELF_RETRIEVAL = "self_retrieval"
QUERY_GALLERY = "query_gallery"

_SKIP_CORRUPT = DataOption(
    False,
    boolean,
    "true decodes every image once at start-up and drops (with a warning listing them) the "
    "missing or unreadable ones; false stops at the first with CorruptImageError.",
)
_SIZE = integer(1, optional=True)
#: The ``data.*`` keys of the four published data sets (besides ``name``).
IMAGE_OPTIONS: Mapping[str, DataOption] = MappingProxyType(
    {
        "root": DataOption(None, optional_path, "The data set's folder or its parent."),
        "skip_corrupt": _SKIP_CORRUPT,
        "crop_size": DataOption(None, _SIZE, "null: 224 (the paper)."),
        "resize_size": DataOption(None, _SIZE, "null: 256 for a 224 crop."),
        "image_size": DataOption(None, _SIZE, "null: 28 (small_cnn only)."),
    }
)
FOLDER_OPTIONS: Mapping[str, DataOption] = MappingProxyType(
    {
        **IMAGE_OPTIONS,
        "root": DataOption(None, optional_path, "The folder holding train/ and test/."),
        **{
            f"{split}_root": DataOption(None, optional_path, f"null: root/{split}.")
            for split in ("train", "test", "query", "gallery")
        },
    }
)


def _omniglot_options() -> Mapping[str, DataOption]:
    from .omniglot import DEFAULT_IMAGE_SIZE

    return MappingProxyType(
        {
            "root": DataOption(None, optional_path, "An .npz bundle; null: the shipped one."),
            "setting": DataOption(
                "zero_shot",
                choice("zero_shot", "all", normalize=lambda v: v.replace("-", "_")),
                "zero_shot: train/test alphabets; all: every character (a seen-class check).",
            ),
            "image_size": DataOption(DEFAULT_IMAGE_SIZE, integer(8)),
            "augment": DataOption(True, boolean),
            "class_rotations": DataOption(1, choice(1, 2, 4), "1: off; 2: 0/180; 4: 0/90/180/270."),
            "max_classes": DataOption(None, integer(2, optional=True), "null: all characters."),
        }
    )


@dataclass(frozen=True)
class DatasetRecord:
    """Everything the package knows about one data set.

    Attributes:
        name: the canonical ``data.name`` (``"cub200"``).
        title: the display name (``"CUB-200-2011"``).
        aliases: other accepted spellings (compared ignoring case, ``-``, ``_`` and spaces).
        loader: ``(record, checked data section, backbone) -> {split: Dataset}``.
        eval_transform: ``(checked data section, backbone) -> test transform``.
        options: the ``data.*`` keys besides ``name``, with their defaults and checks.
        protocol: ``"self_retrieval"`` (every test image queries the others) or
            ``"query_gallery"`` (queries search a separate gallery). ``folder`` switches to
            query/gallery when ``data.query_root`` or ``data.gallery_root`` is set.
        dataset_class: the class of a published data set (``None`` for folder and Omniglot).
        k_values: the paper's Recall@K list, ``None`` for data sets without one (the evaluation
            then uses its default 1, 2, 4, 8).
        paper_numbers: ``backbone -> source -> Recall@K %`` (docs/paper.md section 5).
        unconfirmed: ``(backbone, source, K)`` of numbers not checked against the paper's table.
        example_folder: the folder name used in messages (``data.root=/data/<example_folder>``).
    """

    name: str
    title: str
    aliases: tuple[str, ...]
    loader: Loader
    eval_transform: EvalTransform
    options: Mapping[str, DataOption]
    protocol: str = SELF_RETRIEVAL
    dataset_class: type[LocalImageDataset] | None = None
    k_values: tuple[int, ...] | None = None
    paper_numbers: PaperNumbers = field(default_factory=dict)
    unconfirmed: frozenset[tuple[str, str, int]] = frozenset()
    example_folder: str = ""

    def defaults(self) -> dict[str, Any]:
        """``{key: default}`` of the ``data:`` section, ``name`` first."""
        return {"name": self.name, **{k: o.default for k, o in self.options.items()}}

    def read_config(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """``section`` checked (unknown keys, bad values) with the defaults filled in."""
        rest = {k: v for k, v in section.items() if k != "name"}
        return {"name": self.name, **read_options(rest, self.options, self.name)}

    def build(self, section: Mapping[str, Any], backbone: str) -> dict[str, Dataset]:
        """The splits for a ``data:`` section naming this data set."""
        return self.loader(self, self.read_config(section), backbone)


def _published(
    cls: type[LocalImageDataset], name: str, aliases: tuple[str, ...], **facts: Any
) -> DatasetRecord:
    return DatasetRecord(
        name=name,
        title=cls.NAME,
        aliases=aliases,
        loader=loaders.load_published,
        eval_transform=loaders.backbone_eval_transform,
        options=IMAGE_OPTIONS,
        protocol=QUERY_GALLERY if "query" in cls.SPLITS else SELF_RETRIEVAL,
        dataset_class=cls,
        example_folder=cls.FOLDER_NAMES[0],
        **facts,
    )


_RECORDS = (
    _published(
        CUB200,
        "cub200",
        ("cub", "cub_200_2011", "cub_200", "cub200_2011"),
        k_values=(1, 2, 4, 8),
        paper_numbers={
            "bn_inception": {
                "paper": (68.4, 79.2, 86.8, 91.6),
                "authors": (69.1, 78.9, 86.1, 91.2),
            },
            "resnet50": {"authors": (69.9, 79.6, 86.6, 91.4)},
        },
        unconfirmed=frozenset({("bn_inception", "paper", 8)}),
    ),
    _published(
        Cars196,
        "cars196",
        ("cars", "cars_196", "stanford_cars"),
        k_values=(1, 2, 4, 8),
        paper_numbers={
            "bn_inception": {
                "paper": (86.1, 91.7, 95.0, 97.3),
                "authors": (86.4, 91.9, 95.0, 97.0),
            },
            "resnet50": {"authors": (87.7, 92.7, 95.5, 97.3)},
        },
        unconfirmed=frozenset({("bn_inception", "paper", 8)}),
    ),
    _published(
        StanfordOnlineProducts,
        "sop",
        ("stanford_online_products", "online_products"),
        k_values=(1, 10, 100, 1000),
        paper_numbers={
            "bn_inception": {"paper": (79.1, 90.8, 96.2, 98.7), "authors": (79.2, 90.7, 96.2, 98.6)}
        },
        unconfirmed=frozenset({("bn_inception", "paper", 1000)}),
    ),
    _published(
        InShop,
        "inshop",
        ("in_shop", "deepfashion_inshop", "inshop_clothes", "in_shop_clothes_retrieval"),
        k_values=(1, 10, 20, 30, 40),
        paper_numbers={
            "bn_inception": {
                "paper": (91.5, 98.1, 98.8, 99.1, 99.2),
                "authors": (91.9, 98.1, 98.7, 99.0, 99.1),
            }
        },
        unconfirmed=frozenset({("bn_inception", "paper", 30), ("bn_inception", "paper", 40)}),
    ),
    DatasetRecord(
        name="folder",
        title="image folder",
        aliases=("image_folder",),
        loader=loaders.load_folder,
        eval_transform=loaders.backbone_eval_transform,
        options=FOLDER_OPTIONS,
        example_folder="my_data",
    ),
    DatasetRecord(
        name="omniglot",
        title="Omniglot (bundled)",
        aliases=(),
        loader=loaders.load_omniglot,
        eval_transform=loaders.omniglot_eval_transform,
        options=_omniglot_options(),
    ),
)

#: The data sets by canonical name.
DATASETS: Mapping[str, DatasetRecord] = MappingProxyType({r.name: r for r in _RECORDS})
#: The published data sets (those with a ``dataset_class``: ``data check`` works on them).
PUBLISHED: Mapping[str, DatasetRecord] = MappingProxyType(
    {r.name: r for r in _RECORDS if r.dataset_class is not None}
)


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _spellings(table: Mapping[str, DatasetRecord]) -> dict[str, DatasetRecord]:
    return {s: r for r in table.values() for s in (r.name, *r.aliases)}


def find(name: str) -> DatasetRecord | None:
    """The record for ``name`` or one of its aliases (case, ``-``, ``_``, spaces ignored)."""
    if not isinstance(name, str):
        return None
    squashed = _squash(name)
    for spelling, record in _spellings(DATASETS).items():
        if _squash(spelling) == squashed:
            return record
    return None


def lookup(
    name: Any, table: Mapping[str, DatasetRecord] = DATASETS, what: str = "data.name"
) -> DatasetRecord:
    """The record of ``name`` in ``table``; :class:`DataConfigError` with a did-you-mean.

    Args:
        name: a canonical name or an alias, in any case.
        table: the records allowed here (:data:`DATASETS`, or :data:`PUBLISHED` for
            ``data check``).
        what: the config key or argument named in messages.

    Raises:
        DataConfigError: ``name`` is not a string, or names no data set of ``table`` (the message
            lists the closest names).
    """
    known = ", ".join(table)
    if not isinstance(name, str):
        raise DataConfigError(
            f"{what} must be a data set name (a string), one of {known}; got {name!r}."
        )
    record = find(name)
    if record is not None and record.name in table:
        return record
    if record is not None:
        raise DataConfigError(
            f"{what} {name!r} ({record.title}) cannot be used here; expected one of {known}."
        )
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    spellings = _spellings(table)
    close = list(dict.fromkeys(spellings[c].name for c in close_matches(key, spellings, n=3)))
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise DataConfigError(
        f"unknown {what} {name!r}.{hint} Known data sets: {known} (reproduce/DATASETS.md in "
        "the source repository describes each layout)."
    )


def data_defaults(name: str) -> dict[str, Any]:
    """The full ``data:`` section of the data set ``name`` with every key at its default.

    A config loader merges this under the user's section so that every known key exists and can
    be overridden on the command line (``data.skip_corrupt=true``).
    """
    return lookup(name).defaults()
