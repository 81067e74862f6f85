"""CUB-200-2011 (Wah et al., 2011) with the zero-shot split of the Proxy-Anchor paper.

Classes 1-100 train (5,864 images), classes 101-200 test (5,924 images). Image ids join
``images.txt`` (``id path``) and ``image_class_labels.txt`` (``id class``, 1-based).

PML's ``pytorch_metric_learning.datasets.CUB`` has the same split but pairs the two files line by
line and silently drops lines whose ids differ, so it is not reused; this class joins by id and
raises on ids that do not join.
"""

from __future__ import annotations

import os
from typing import ClassVar

from .base import LocalImageDataset


def _read_id_table(path: str) -> dict[int, str]:
    """``{id: rest of line}`` of a whitespace-separated ``id value`` file."""
    table: dict[int, str] = {}
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2 or not parts[0].isdigit():
                raise ValueError(
                    f"{path}:{line_no}: expected 'id value' (an integer id, a value), got {line!r}"
                )
            table[int(parts[0])] = parts[1]
    return table


class CUB200(LocalImageDataset):
    """CUB-200-2011; ``split`` is ``"train"`` (classes 1-100) or ``"test"`` (classes 101-200)."""

    NAME = "CUB-200-2011"
    DOWNLOAD_PAGE = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
    MARKER = "images.txt"
    FOLDER_NAMES = ("CUB_200_2011",)
    LAYOUT = """
CUB_200_2011/                      (the root, or its parent)
    images.txt                     "<image id> <relative path>", 11,788 lines
    image_class_labels.txt         "<image id> <class id 1..200>"
    images/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg ...
"""
    EXPECTED_COUNTS: ClassVar[dict[str, tuple[int, int]]] = {
        "train": (5864, 100),
        "test": (5924, 100),
    }
    SPLIT_CLASSES: ClassVar[dict[str, range]] = {"train": range(1, 101), "test": range(101, 201)}

    def generate_split(self) -> None:
        images_file = self.annotation_path("images.txt")
        labels_file = self.annotation_path("image_class_labels.txt")
        image_paths = _read_id_table(images_file)
        image_classes = _read_id_table(labels_file)
        unmatched = sorted(set(image_paths) ^ set(image_classes))
        if unmatched:
            raise ValueError(
                f"{self.NAME}: {len(unmatched)} image id(s) appear in only one of {images_file!r} "
                f"and {labels_file!r} (first: {unmatched[:5]}); expected the same ids in both. "
                "Fix: restore both files from the original archive."
            )
        wanted = self.SPLIT_CLASSES[self.split]
        self.paths, self.labels = [], []
        for image_id in sorted(image_paths):
            class_id = int(image_classes[image_id])
            if class_id in wanted:
                self.paths.append(os.path.join(self.root, "images", image_paths[image_id]))
                self.labels.append(class_id)
