"""Cars-196 (Krause et al., 3dRR 2013) with the zero-shot split of the Proxy-Anchor paper.

Read from the published ``cars_annos.mat``: a MATLAB struct array ``annotations`` with the fields
``relative_im_path, bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, test``. The class (1-based) decides
the split, classes 1-98 train (8,054 images) and 99-196 test (8,131 images); the ``test`` flag of
the original classification split is ignored.

PML's ``pytorch_metric_learning.datasets.Cars196`` reads a different layout (the Kaggle CSV
re-packaging, ``anno_train.csv`` / ``car_data/``), so it is not reused.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import ClassVar

import numpy as np
import scipy.io

from .base import LocalImageDataset


@lru_cache(maxsize=4)
def _read_annotations(
    mat_path: str, mtime: float, download_page: str
) -> tuple[list[str], np.ndarray]:
    """``(relative_im_path per entry, class per entry)`` of ``cars_annos.mat`` (cached per file)."""
    try:
        mat = scipy.io.loadmat(mat_path, squeeze_me=True)
    except (ValueError, OSError, TypeError) as exc:
        raise ValueError(
            f"{mat_path}: not a readable MATLAB file ({exc}). Fix: download cars_annos.mat "
            f"again from {download_page}."
        ) from exc
    annotations = np.atleast_1d(mat.get("annotations", np.empty(0)))
    names = annotations.dtype.names or ()
    if "annotations" not in mat or not {"relative_im_path", "class"} <= set(names):
        raise ValueError(
            f"{mat_path}: expected a struct array 'annotations' with the fields "
            f"relative_im_path and class, got variables {sorted(k for k in mat if k[0] != '_')}"
            f" and fields {list(names)}. Fix: use the published cars_annos.mat."
        )
    rel_paths = [str(p) for p in annotations["relative_im_path"]]
    return rel_paths, np.asarray(annotations["class"], dtype=np.int64)


class Cars196(LocalImageDataset):
    """Cars-196; ``split`` is ``"train"`` (classes 1-98) or ``"test"`` (classes 99-196)."""

    NAME = "Cars-196"
    DOWNLOAD_PAGE = "https://ai.stanford.edu/~jkrause/cars/car_dataset.html"
    MARKER = "cars_annos.mat"
    FOLDER_NAMES = ("cars196", "Cars196", "stanford_cars")
    LAYOUT = """
cars196/                           (the root, or its parent)
    cars_annos.mat                 struct array 'annotations' (relative_im_path, bbox_x1, bbox_y1,
                                   bbox_x2, bbox_y2, class 1..196, test), 16,185 entries
    car_ims/000001.jpg ... car_ims/016185.jpg     (from car_ims.tgz)
"""
    EXPECTED_COUNTS: ClassVar[dict[str, tuple[int, int]]] = {
        "train": (8054, 98),
        "test": (8131, 98),
    }
    SPLIT_CLASSES: ClassVar[dict[str, range]] = {"train": range(1, 99), "test": range(99, 197)}

    def generate_split(self) -> None:
        mat_path = self.annotation_path("cars_annos.mat")
        rel_paths, classes = _read_annotations(
            mat_path, os.path.getmtime(mat_path), str(self.DOWNLOAD_PAGE)
        )
        wanted = self.SPLIT_CLASSES[self.split]
        in_split = (classes >= wanted.start) & (classes < wanted.stop)
        self.paths = [os.path.join(self.root, rel_paths[i]) for i in np.flatnonzero(in_split)]
        self.labels = classes[in_split].tolist()
