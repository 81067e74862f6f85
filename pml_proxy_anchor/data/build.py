"""Data sets by name: the ``data:`` section of a config -> ``{"train": ..., "test": ...}``.

``build_datasets(data_cfg, backbone)`` finds the record of ``data_cfg["name"]`` in
:data:`~pml_proxy_anchor.data.datasets.DATASETS` (aliases and did-you-mean included), checks every
other key of the section against the keys that data set reads (unknown keys and bad values are
errors naming ``data.<key>``) and returns the splits with the transforms of ``backbone`` (train
transform on ``"train"``, test transform on the others): ``{"train", "test"}`` for self-retrieval
data sets, ``{"train", "query", "gallery"}`` for In-Shop (and for an image folder given query and
gallery folders).

The keys per data set are listed in reproduce/DATASETS.md; ``data_defaults(name)`` returns them
with their defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch.utils.data import Dataset

from .base import LocalImageDataset
from .datasets import DATASETS, PUBLISHED, DatasetRecord, lookup
from .errors import DataConfigError
from .loaders import TRANSFORM_KEYS

__all__ = [
    "BUILDERS",
    "DATASET_CLASSES",
    "TRANSFORM_KEYS",
    "build_datasets",
    "canonical_name",
    "eval_transform",
    "get_dataset_class",
]

#: The classes of the published data sets by canonical name (a view of the records).
DATASET_CLASSES: dict[str, type[LocalImageDataset]] = {
    name: record.dataset_class
    for name, record in PUBLISHED.items()
    if record.dataset_class is not None
}


#: ``name -> build(data_cfg, backbone)`` (a view of the records).
BUILDERS: dict[str, Callable[[Mapping[str, Any], str], dict[str, Dataset]]] = {
    name: record.build for name, record in DATASETS.items()
}


def canonical_name(name: str) -> str:
    """The canonical name for ``name`` or an alias; :class:`DataConfigError` with suggestions."""
    return lookup(name).name


def get_dataset_class(name: str) -> type[LocalImageDataset]:
    """The class of a published data set: ``cub200``, ``cars196``, ``sop`` or ``inshop``."""
    cls = lookup(name, PUBLISHED, what="data set").dataset_class
    assert cls is not None
    return cls


def _plain_config(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``data_cfg`` (a mapping or an OmegaConf DictConfig) as a plain dict."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(data_cfg, DictConfig):
        data_cfg = OmegaConf.to_container(data_cfg, resolve=True)  # type: ignore[assignment]
    if not isinstance(data_cfg, Mapping):
        raise DataConfigError(
            f"the data section must be a mapping (name: ..., root: ...), got {data_cfg!r}."
        )
    return dict(data_cfg)


def resolve(data_cfg: Mapping[str, Any]) -> tuple[DatasetRecord, dict[str, Any]]:
    """The record named by ``data_cfg`` and the section checked, with defaults filled in."""
    cfg = _plain_config(data_cfg)
    if cfg.get("name") is None:
        raise DataConfigError(f"data.name is not set; expected one of {', '.join(DATASETS)}.")
    record = lookup(cfg["name"])
    return record, record.read_config(cfg)


def build_datasets(data_cfg: Mapping[str, Any], backbone: str) -> dict[str, Dataset]:
    """The splits of the data set named by ``data_cfg["name"]``, with ``backbone``'s transforms.

    Returns:
        ``{"train", "test"}`` (self-retrieval) or ``{"train", "query", "gallery"}`` (In-Shop, or an
        image folder with query and gallery folders), each a ``Dataset`` of ``(image, label)``.

    Raises:
        DataConfigError: no or an unknown ``data.name``, an unknown key or a bad value.
        DatasetNotFoundError, AnnotationError: the files under ``data.root``.
    """
    record, cfg = resolve(data_cfg)
    return record.loader(record, cfg, backbone)


def eval_transform(data_cfg: Mapping[str, Any], backbone: str) -> Callable[[Any], Any]:
    """The test transform that :func:`build_datasets` gives the evaluation splits of this data
    set (for embedding new images the way the run was evaluated)."""
    record, cfg = resolve(data_cfg)
    return record.eval_transform(cfg, backbone)
