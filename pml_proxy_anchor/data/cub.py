"""CUB-200-2011 (Wah et al., 2011) with the zero-shot split of the Proxy-Anchor paper.

Classes 1-100 train (5,864 images), classes 101-200 test (5,924 images). Image ids join
``images.txt`` (``id path``) and ``image_class_labels.txt`` (``id class``, 1-based); the class ids
must be those of ``classes.txt`` (``id name``).

No image is ever dropped silently: an id in only one of the two image files, an id listed twice, a
class that is not an integer, not in ``classes.txt`` or outside 1..200 raises
:class:`~pml_proxy_anchor.data.errors.AnnotationError` naming the file and the line.

PML's ``pytorch_metric_learning.datasets.CUB`` has the same split but pairs the two files line by
line and silently drops lines whose ids differ, so it is not reused.
"""

from __future__ import annotations

import os
from typing import ClassVar

from .base import LocalImageDataset
from .errors import AnnotationError, restore_hint


def read_id_table(path: str, what: str = "value") -> dict[int, tuple[str, int]]:
    """``{id: (rest of line, line number)}`` of a whitespace-separated ``<id> <value>`` file.

    Raises:
        AnnotationError: a line that is not ``<integer id> <value>``, or an id listed twice.
    """
    table: dict[int, tuple[str, int]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2 or not parts[0].isdigit():
                raise AnnotationError(
                    f"{path}, line {line_no}: expected '<id> <{what}>' (a positive integer id, "
                    f"then the {what}), got {line!r}. {restore_hint()}"
                )
            key = int(parts[0])
            if key in table:
                raise AnnotationError(
                    f"{path}, line {line_no}: id {key} is listed again (first on line "
                    f"{table[key][1]}); expected each id once. {restore_hint()}"
                )
            table[key] = (parts[1], line_no)
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
    classes.txt                    "<class id> <class name>", 200 lines
    images/001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg ...
"""
    EXPECTED_COUNTS: ClassVar[dict[str, tuple[int, int]]] = {
        "train": (5864, 100),
        "test": (5924, 100),
    }
    SPLIT_CLASSES: ClassVar[dict[str, range]] = {"train": range(1, 101), "test": range(101, 201)}
    ALL_CLASSES: ClassVar[range] = range(1, 201)

    def generate_split(self) -> None:
        images_file = self.annotation_path("images.txt")
        labels_file = self.annotation_path("image_class_labels.txt")
        classes_file = self.annotation_path("classes.txt")
        image_paths = read_id_table(images_file, "relative path")
        image_classes = read_id_table(labels_file, "class id")
        known_classes = read_id_table(classes_file, "class name")
        self._check_ids_join(images_file, image_paths, labels_file, image_classes)
        wanted = self.SPLIT_CLASSES[self.split]
        self.paths, self.labels = [], []
        for image_id in sorted(image_paths):
            class_id = self._class_id(
                image_id, *image_classes[image_id], labels_file, known_classes
            )
            if class_id in wanted:
                self.paths.append(os.path.join(self.root, "images", image_paths[image_id][0]))
                self.labels.append(class_id)

    @staticmethod
    def _check_ids_join(
        images_file: str,
        image_paths: dict[int, tuple[str, int]],
        labels_file: str,
        image_classes: dict[int, tuple[str, int]],
    ) -> None:
        """Every image id is in both files (an id in only one would lose its image)."""
        problems = [
            f"{images_file}, line {image_paths[i][1]}: image id {i} has no class in {labels_file}"
            for i in sorted(set(image_paths) - set(image_classes))
        ] + [
            f"{labels_file}, line {image_classes[i][1]}: image id {i} has no path in {images_file}"
            for i in sorted(set(image_classes) - set(image_paths))
        ]
        if problems:
            shown = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
            raise AnnotationError(
                f"CUB-200-2011: {len(problems)} image id(s) appear in only one of "
                f"images.txt and image_class_labels.txt: {shown}. Expected the same ids in both. "
                f"{restore_hint('both files')}"
            )

    def _class_id(
        self,
        image_id: int,
        value: str,
        line_no: int,
        labels_file: str,
        known_classes: dict[int, tuple[str, int]],
    ) -> int:
        """The class of ``image_id``: an integer listed in classes.txt and within 1..200."""
        where = f"{labels_file}, line {line_no}"
        if not value.isdigit():
            raise AnnotationError(
                f"{where}: the class of image {image_id} is {value!r}; expected one integer "
                f"class id (1..200). {restore_hint()}"
            )
        class_id = int(value)
        if class_id not in known_classes:
            raise AnnotationError(
                f"{where}: class id {class_id} of image {image_id} is not in classes.txt "
                f"(which lists {len(known_classes)} classes, ids "
                f"{min(known_classes, default=0)}..{max(known_classes, default=0)}); the image "
                f"would belong to no class. "
                f"{restore_hint('image_class_labels.txt and classes.txt')}"
            )
        if class_id not in self.ALL_CLASSES:
            raise AnnotationError(
                f"{where}: class id {class_id} of image {image_id} is outside 1..200 (train 1-100, "
                f"test 101-200), so the image would be in neither split. "
                f"{restore_hint('image_class_labels.txt and classes.txt')}"
            )
        return class_id
