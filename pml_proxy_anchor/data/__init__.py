"""Data sets and transforms of the Proxy-Anchor paper, read from local files in published layouts.

- :class:`CUB200`, :class:`Cars196`, :class:`StanfordOnlineProducts`, :class:`InShop`: the zero-shot
  splits of SPEC.md section 3, labels remapped to ``0..C-1`` per split (In-Shop query and gallery
  share one mapping); :class:`ImageFolderDataset` for ``root/<class>/<image>`` data of your own.
- :func:`build_datasets`: the ``data:`` config section -> the splits, with the backbone's
  transforms.
- :func:`~pml_proxy_anchor.data.transforms.build_transform`: the transforms of SPEC.md section 2.
- :func:`check_dataset`: found vs expected counts (``pml-proxy-anchor data check NAME ROOT``).
- :mod:`~pml_proxy_anchor.data.errors`: :class:`DatasetNotFoundError`, :class:`CorruptImageError`.
"""

from __future__ import annotations

from .base import LocalImageDataset
from .build import BUILDERS, DATASET_CLASSES, build_datasets, eval_transform, get_dataset_class
from .cars import Cars196
from .check import CheckReport, SplitCheck, check_dataset
from .cub import CUB200
from .errors import CorruptImageError, DatasetNotFoundError
from .folder import ImageFolderDataset
from .inshop import InShop
from .sop import StanfordOnlineProducts
from .transforms import build_transform

__all__ = [
    "BUILDERS",
    "CUB200",
    "Cars196",
    "CheckReport",
    "CorruptImageError",
    "DATASET_CLASSES",
    "DatasetNotFoundError",
    "ImageFolderDataset",
    "InShop",
    "LocalImageDataset",
    "SplitCheck",
    "StanfordOnlineProducts",
    "build_datasets",
    "eval_transform",
    "build_transform",
    "check_dataset",
    "get_dataset_class",
]
