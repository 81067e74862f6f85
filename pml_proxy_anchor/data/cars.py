"""Cars-196 (Krause et al., 3dRR 2013) with the zero-shot split of the Proxy-Anchor paper.

Read from the published ``cars_annos.mat``: a MATLAB struct array ``annotations`` with the fields
``relative_im_path, bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, test``. The class (1-based) decides
the split, classes 1-98 train (8,054 images) and 99-196 test (8,131 images); the ``test`` flag of
the original classification split is ignored.

PML's ``pytorch_metric_learning.datasets.Cars196`` reads a different layout (the Kaggle CSV
re-packaging, ``anno_train.csv`` / ``car_data/``), so it is not reused.

No image is dropped silently: a class outside 1..196 (in neither split), a class that is not an
integer, or an image listed twice raises :class:`~pml_proxy_anchor.data.errors.AnnotationError`
naming the annotation's number.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import ClassVar

import numpy as np
import scipy.io

from .base import LocalImageDataset
from .errors import AnnotationError, restore_hint

ALL_CLASSES = range(1, 197)


def _entry_class(value: object, mat_path: str, entry: int) -> int:
    """The class of annotation ``entry`` (1-based): one integer in 1..196."""
    array = np.asarray(value)
    where = f"{mat_path}, annotation {entry}"
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        raise AnnotationError(
            f"{where}: the class is {value!r}; expected one integer class id (1..196). "
            f"{restore_hint('cars_annos.mat')}"
        )
    number = float(array.reshape(()))
    if not number.is_integer() or not ALL_CLASSES.start <= number < ALL_CLASSES.stop:
        raise AnnotationError(
            f"{where}: class {number:g} is not an integer in 1..196 (train 1-98, test 99-196), "
            f"so the image would be in neither split. {restore_hint('cars_annos.mat')}"
        )
    return int(number)


@lru_cache(maxsize=4)
def _read_annotations(
    mat_path: str, mtime: float, download_page: str
) -> tuple[list[str], np.ndarray]:
    """``(relative_im_path per entry, class per entry)`` of ``cars_annos.mat`` (cached per file).

    Raises:
        AnnotationError: unreadable file, missing fields, a class that is not an integer in
            1..196, or an image listed twice (the message names the annotation's number).
    """
    try:
        mat = scipy.io.loadmat(mat_path, squeeze_me=True)
    except (ValueError, OSError, TypeError, NotImplementedError) as exc:
        raise AnnotationError(
            f"{mat_path}: not a readable MATLAB file ({exc}). Fix: download cars_annos.mat "
            f"again from {download_page}."
        ) from exc
    annotations = np.atleast_1d(mat.get("annotations", np.empty(0)))
    names = annotations.dtype.names or ()
    if "annotations" not in mat or not {"relative_im_path", "class"} <= set(names):
        raise AnnotationError(
            f"{mat_path}: expected a struct array 'annotations' with the fields "
            f"relative_im_path and class, got variables {sorted(k for k in mat if k[0] != '_')}"
            f" and fields {list(names)}. Fix: use the published cars_annos.mat."
        )
    rel_paths: list[str] = []
    first_entry: dict[str, int] = {}
    for entry, value in enumerate(annotations["relative_im_path"], start=1):
        path = value if isinstance(value, str) else np.asarray(value).reshape(-1)
        if not isinstance(path, str):
            path = str(path[0]) if path.size == 1 else ""
        if not path:
            raise AnnotationError(
                f"{mat_path}, annotation {entry}: relative_im_path is {value!r}; expected a "
                f"path like 'car_ims/000001.jpg'. {restore_hint('cars_annos.mat')}"
            )
        if path in first_entry:
            raise AnnotationError(
                f"{mat_path}, annotation {entry}: {path!r} is listed again (first as annotation "
                f"{first_entry[path]}); expected each image once. {restore_hint('cars_annos.mat')}"
            )
        first_entry[path] = entry
        rel_paths.append(path)
    classes = [
        _entry_class(value, mat_path, entry)
        for entry, value in enumerate(annotations["class"], start=1)
    ]
    return rel_paths, np.asarray(classes, dtype=np.int64)


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
