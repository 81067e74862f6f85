"""Loaders: a checked ``data:`` section -> the splits of one kind of data set.

Each loader takes the data set's record, the section as :func:`~.options.read_options` returns it
(every key present, values checked) and the backbone, and returns ``{split: Dataset}``:

- :func:`load_published`: CUB-200-2011, Cars-196, SOP, In-Shop (the record's ``dataset_class``);
- :func:`load_folder`: ``root/<class>/<image>`` folders of your own;
- :func:`load_omniglot`: the bundled Omniglot (it brings its own transform).

The matching test transforms (for embedding new images as a run was evaluated) are
:func:`backbone_eval_transform` and :func:`omniglot_eval_transform`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from torch.utils.data import Dataset

from .errors import DataConfigError
from .folder import ImageFolderDataset
from .transforms import build_transform

if TYPE_CHECKING:
    from .datasets import DatasetRecord

TRANSFORM_KEYS = ("crop_size", "resize_size", "image_size")


def _transform_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: cfg[k] for k in TRANSFORM_KEYS if cfg.get(k) is not None}


def _require_root(cfg: Mapping[str, Any], record: DatasetRecord) -> str:
    root = cfg.get("root")
    if not root:
        raise DataConfigError(
            f"data.root is not set for data set {record.name!r}: set it to the folder that "
            "holds the data set (reproduce/DATASETS.md in the source repository describes each "
            "layout), e.g. "
            f"data.root=/data/{record.example_folder}."
        )
    return os.path.expanduser(str(root))


def load_published(
    record: DatasetRecord, cfg: Mapping[str, Any], backbone: str
) -> dict[str, Dataset]:
    """Every split of ``record.dataset_class`` under ``data.root``."""
    cls = record.dataset_class
    assert cls is not None, f"{record.name} has no dataset_class"
    root = _require_root(cfg, record)
    tkw = _transform_kwargs(cfg)
    return {
        split: cls(
            root,
            split=split,
            transform=build_transform(backbone, split == "train", **tkw),
            skip_corrupt=cfg["skip_corrupt"],
        )
        for split in cls.SPLITS
    }


def load_folder(record: DatasetRecord, cfg: Mapping[str, Any], backbone: str) -> dict[str, Dataset]:
    """``train`` + ``test``, or ``train`` + ``query`` + ``gallery`` when either is given."""
    root = cfg.get("root")
    tkw = _transform_kwargs(cfg)
    if cfg.get("query_root") or cfg.get("gallery_root"):
        splits: tuple[str, ...] = ("train", "query", "gallery")
    else:
        splits = ("train", "test")
    out: dict[str, Dataset] = {}
    for split in splits:
        folder = cfg.get(f"{split}_root")
        if not folder:
            if not root:
                raise DataConfigError(
                    f"data.{split}_root is not set and there is no data.root to default it to "
                    f"(root/{split}); set data.root or data.{split}_root."
                )
            folder = os.path.join(os.path.expanduser(str(root)), split)
        out[split] = ImageFolderDataset(
            os.path.expanduser(str(folder)),
            transform=build_transform(backbone, split == "train", **tkw),
            skip_corrupt=cfg["skip_corrupt"],
        )
    return out


def load_omniglot(
    record: DatasetRecord, cfg: Mapping[str, Any], backbone: str
) -> dict[str, Dataset]:
    """Omniglot brings its own transform (grayscale strokes); ``backbone`` is not used."""
    from .omniglot import omniglot_splits  # imported only when used

    return omniglot_splits(cfg)


def backbone_eval_transform(cfg: Mapping[str, Any], backbone: str) -> Callable[[Any], Any]:
    """The test transform of ``backbone`` with the section's transform options."""
    return build_transform(backbone, False, **_transform_kwargs(cfg))


def omniglot_eval_transform(cfg: Mapping[str, Any], backbone: str) -> Callable[[Any], Any]:
    """Omniglot's test transform at ``data.image_size``; ``backbone`` is not used."""
    from .omniglot import omniglot_transform

    return omniglot_transform(False, int(cfg["image_size"]))
