"""Stanford Online Products (Oh Song et al., CVPR 2016), the split of the Proxy-Anchor paper.

``Ebay_train.txt``: 59,551 images of 11,318 classes; ``Ebay_test.txt``: 60,502 images of 11,316
classes. Each file has the header ``image_id class_id super_class_id path``; class ids are 1-based
and global (test ids follow the train ids), paths are relative to the data set folder.

The parsing is that of PML's ``pytorch_metric_learning.datasets.StanfordOnlineProducts`` (the
tests check parity), which is not subclassed only because it hard-codes the
``<root>/Stanford_Online_Products`` folder and keeps the global class ids.
"""

from __future__ import annotations

import os
from typing import ClassVar

from .base import LocalImageDataset

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
        with open(path) as f:
            header = f.readline().split()
            if header != _HEADER:
                raise ValueError(
                    f"{path}: expected the header line {' '.join(_HEADER)!r}, got "
                    f"{' '.join(header)!r}. Fix: restore the file from the original archive."
                )
            for line_no, line in enumerate(f, start=2):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 4:
                    raise ValueError(
                        f"{path}:{line_no}: expected 4 fields ({' '.join(_HEADER)}), got {line!r}"
                    )
                self.paths.append(os.path.join(self.root, fields[3]))
                self.labels.append(int(fields[1]))
