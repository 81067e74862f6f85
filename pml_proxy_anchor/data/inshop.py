"""In-Shop Clothes Retrieval (DeepFashion, Liu et al., CVPR 2016), as in the Proxy-Anchor paper.

``Eval/list_eval_partition.txt``: line 1 is the image count, line 2 the header
``image_name item_id evaluation_status``, then one line per image with the status ``train``,
``query`` or ``gallery``. Train: 25,882 images of 3,997 items; test: 3,985 items with 14,218 query
and 12,612 gallery images. Image names (``img/WOMEN/...jpg``) are relative to ``Img/``.

Query and gallery share ONE label mapping, built from the items of both, so that an item has the
same label in both splits (Recall@K compares query labels with gallery labels). PML has no In-Shop
data set.

A malformed line, an unknown status, an image listed twice or a count on line 1 that differs from
the lines listed raises :class:`~pml_proxy_anchor.data.errors.AnnotationError` naming the file and
the line.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import ClassVar

import numpy as np

from .base import LocalImageDataset
from .errors import AnnotationError, restore_hint

_HEADER = ["image_name", "item_id", "evaluation_status"]
_STATUSES = ("train", "query", "gallery")


def _item_number(item_id: str, where: str) -> int:
    """``"id_00000001"`` -> 1."""
    prefix, _, number = item_id.partition("_")
    if prefix != "id" or not number.isdigit():
        raise AnnotationError(
            f"{where}: expected an item id like 'id_00000001', got {item_id!r}. {restore_hint()}"
        )
    return int(number)


@lru_cache(maxsize=4)
def _read_partition(path: str, mtime: float) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{status: (image names, item numbers)}`` of ``list_eval_partition.txt`` (cached)."""
    out: dict[str, tuple[list[str], list[int]]] = {s: ([], []) for s in _STATUSES}
    with open(path) as f:
        count_line = f.readline().strip()
        header = f.readline().split()
        if not count_line.isdigit() or header != _HEADER:
            raise AnnotationError(
                f"{path}: expected line 1 to be the image count and line 2 the header "
                f"{' '.join(_HEADER)!r}, got {count_line!r} and {' '.join(header)!r}. "
                f"{restore_hint()}"
            )
        n_lines = 0
        first_line: dict[str, int] = {}
        for line_no, line in enumerate(f, start=3):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}, line {line_no}"
            if len(fields) != 3 or fields[2] not in _STATUSES:
                raise AnnotationError(
                    f"{where}: expected 'image_name item_id train|query|gallery', "
                    f"got {line.strip()!r}. {restore_hint()}"
                )
            if fields[0] in first_line:
                raise AnnotationError(
                    f"{where}: image {fields[0]!r} is listed again (first on line "
                    f"{first_line[fields[0]]}); expected each image once. {restore_hint()}"
                )
            first_line[fields[0]] = line_no
            names, items = out[fields[2]]
            names.append(fields[0])
            items.append(_item_number(fields[1], where))
            n_lines += 1
    if n_lines != int(count_line):
        raise AnnotationError(
            f"{path}: line 1 says {count_line} images but {n_lines} are listed. {restore_hint()}"
        )
    return {s: (names, np.asarray(items, dtype=np.int64)) for s, (names, items) in out.items()}


class InShop(LocalImageDataset):
    """In-Shop Clothes Retrieval; ``split`` is ``"train"``, ``"query"`` or ``"gallery"``.

    ``class_ids`` are the item numbers (``id_00000042`` -> 42); for query and gallery they are the
    items of both splits, so ``num_classes`` is the number of test items (3,985 at full size).
    """

    NAME = "In-Shop Clothes Retrieval"
    DOWNLOAD_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html"
    MARKER = os.path.join("Eval", "list_eval_partition.txt")
    FOLDER_NAMES = ("Inshop_Clothes", "InShop", "In-shop Clothes Retrieval Benchmark")
    LAYOUT = """
Inshop_Clothes/                    (the root, or its parent)
    Eval/list_eval_partition.txt   line 1: 52712
                                   line 2: "image_name item_id evaluation_status"
                                   then lines like
                                   "img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train"
    Img/img/WOMEN/... Img/img/MEN/...          (from Img/img.zip)
"""
    EXPECTED_COUNTS: ClassVar[dict[str, tuple[int, int]]] = {
        "train": (25882, 3997),
        "query": (14218, 3985),
        "gallery": (12612, 3985),
    }
    SPLITS = ("train", "query", "gallery")

    def _partition(self) -> dict[str, tuple[list[str], np.ndarray]]:
        path = self.annotation_path(self.MARKER)
        return _read_partition(path, os.path.getmtime(path))

    def generate_split(self) -> None:
        names, items = self._partition()[self.split]
        self.paths = [os.path.join(self.root, "Img", name) for name in names]
        self.labels = items

    def split_class_ids(self, original: np.ndarray) -> np.ndarray:
        if self.split == "train":
            return np.unique(original)
        partition = self._partition()
        return np.unique(np.concatenate([partition["query"][1], partition["gallery"][1]]))
