"""Data sets and transforms of the Proxy-Anchor paper, read from local files in published layouts.

- :data:`DATASETS`: one :class:`DatasetRecord` per data set (name, aliases, loader, ``data.*``
  keys, protocol, the paper's K list and numbers); :func:`lookup` finds one by name or alias.
- :class:`CUB200`, :class:`Cars196`, :class:`StanfordOnlineProducts`, :class:`InShop`: the zero-shot
  splits of docs/paper.md section 3, labels remapped to ``0..C-1`` per split (In-Shop query and
  gallery share one mapping); :class:`ImageFolderDataset` for ``root/<class>/<image>`` data of your
  own. A malformed annotation file never loses images silently: :class:`AnnotationError` names
  the file and the line.
- :func:`build_datasets`: the ``data:`` config section -> the splits, with the backbone's
  transforms; :func:`data_defaults`: every key of a data set's section with its default.
- :func:`~pml_proxy_anchor.data.transforms.build_transform`: the transforms of docs/paper.md
  section 2.
- :func:`check_dataset`: found vs expected counts, missing and (with ``decode=True``) corrupt
  image files (``pml-proxy-anchor data check NAME ROOT``).
- :mod:`~pml_proxy_anchor.data.errors`: :class:`DatasetNotFoundError`, :class:`CorruptImageError`,
  :class:`AnnotationError`, :class:`DataConfigError` (each a
  :class:`~pml_proxy_anchor.errors.UserError`).
"""

from __future__ import annotations

from .base import LocalImageDataset
from .build import BUILDERS, DATASET_CLASSES, build_datasets, eval_transform, get_dataset_class
from .cars import Cars196
from .check import CheckReport, SplitCheck, check_dataset
from .cub import CUB200
from .datasets import DATASETS, PUBLISHED, DatasetRecord, data_defaults, lookup
from .errors import AnnotationError, CorruptImageError, DataConfigError, DatasetNotFoundError
from .folder import ImageFolderDataset
from .inshop import InShop
from .sop import StanfordOnlineProducts
from .transforms import build_transform

__all__ = [
    "AnnotationError",
    "BUILDERS",
    "CUB200",
    "Cars196",
    "CheckReport",
    "CorruptImageError",
    "DATASETS",
    "DATASET_CLASSES",
    "DataConfigError",
    "DatasetNotFoundError",
    "DatasetRecord",
    "ImageFolderDataset",
    "InShop",
    "LocalImageDataset",
    "PUBLISHED",
    "SplitCheck",
    "StanfordOnlineProducts",
    "build_datasets",
    "build_transform",
    "check_dataset",
    "data_defaults",
    "eval_transform",
    "get_dataset_class",
    "lookup",
]
