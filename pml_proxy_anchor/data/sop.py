"""Stanford Online Products (Oh Song et al., CVPR 2016), the split of the Proxy-Anchor paper.

``Ebay_train.txt``: 59,551 images of 11,318 classes; ``Ebay_test.txt``: 60,502 images of 11,316
classes. Each file has the header ``image_id class_id super_class_id path``; class ids are 1-based
and global (test ids follow the train ids), paths are relative to the data set folder.

The parsing is that of PML's ``pytorch_metric_learning.datasets.StanfordOnlineProducts`` (the
tests check parity), which is not subclassed only because it hard-codes the
``<root>/Stanford_Online_Products`` folder and keeps the global class ids. A line that is not four
fields with integer ids, or an image id or path listed twice, raises
:class:`~pml_proxy_anchor.data.errors.AnnotationError` naming the file and the line.
"""

from __future__ import annotations

import os
from typing import ClassVar

from .base import LocalImageDataset
from .errors import AnnotationError, restore_hint

_HEADER = ["image_id", "class_id", "super_class_id", "path"]


class StanfordOnlineProducts(LocalImageDataset):
    """Stanford Online Products; ``split`` is ``"train"`` or ``"test"``."""

    NAME = "Stanford Online Products"
    DOWNLOAD_PAGE = "https://cvgl.stanford.edu/projects/lifted_struct/"
    MARKER = "Ebay_train.txt"
    FOLDER_NAMES = ("Stanford_Online_Products",)
    LAYOUT = """
Stanford_Online_Products/          (the root, or its parent)
    Ebay_train.txt                 header "image_id class_id super_class_id path", 59,551 lines
    Ebay_test.txt                  same header, 60,502 lines
    bicycle_final/111085122871_0.JPG ... (12 super-class folders)
"""
    EXPECTED_COUNTS: ClassVar[dict[str, tuple[int, int]]] = {
        "train": (59551, 11318),
        "test": (60502, 11316),
    }

    def generate_split(self) -> None:
        path = self.annotation_path(f"Ebay_{self.split}.txt")
        self.paths, self.labels = [], []
        first_line: dict[str, int] = {}  # image id or path -> line it first appeared on
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline().split()
            if header != _HEADER:
                raise AnnotationError(
                    f"{path}, line 1: expected the header line {' '.join(_HEADER)!r}, got "
                    f"{' '.join(header)!r}. {restore_hint()}"
                )
            for line_no, line in enumerate(f, start=2):
                fields = line.split()
                if not fields:
                    continue
                where = f"{path}, line {line_no}"
                if len(fields) != 4 or not all(v.isdigit() for v in fields[:3]):
                    raise AnnotationError(
                        f"{where}: expected 4 fields ({' '.join(_HEADER)}; the first three "
                        f"positive integers), got {line.strip()!r}. {restore_hint()}"
                    )
                for what, key in (("image id", f"id {fields[0]}"), ("path", fields[3])):
                    if key in first_line:
                        raise AnnotationError(
                            f"{where}: {what} {key.removeprefix('id ')!r} is listed again "
                            f"(first on line {first_line[key]}); expected each image once. "
                            f"{restore_hint()}"
                        )
                    first_line[key] = line_no
                self.paths.append(os.path.join(self.root, fields[3]))
                self.labels.append(int(fields[1]))
