"""A data set of your own images laid out as ``root/<class name>/<image>``.

Classes are the sub-folders of ``root`` that hold at least one image, in sorted order (label ``k``
is the k-th name); images are the files with an image extension directly inside them (``.jpg
.jpeg .png .bmp .webp``, any case). For zero-shot retrieval, use one folder for training classes
and another for test classes.

Nothing is left out silently: images lying directly in ``root`` (outside a class folder), files
with another extension, sub-folders inside a class folder and class folders without images are
listed in one warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from PIL import Image

from .base import LocalImageDataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in ("Thumbs.db", "desktop.ini")


class ImageFolderDataset(LocalImageDataset):
    """Images of ``root/<class name>/*.jpg|png``; attribute ``classes`` holds the folder names.

    Attributes:
        ignored_paths: what the layout leaves out (see the module docstring), also warned about.
    """

    NAME = "image folder"
    DOWNLOAD_PAGE = None
    LAYOUT = """
<root>/
    <class name A>/img001.jpg, img002.png, ...
    <class name B>/...
"""
    SPLITS = ("all",)

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        super().__init__(
            root,
            split="all",
            transform=transform,
            target_transform=target_transform,
            skip_corrupt=skip_corrupt,
        )

    @classmethod
    def resolve_root(cls, root: str) -> str:
        if not os.path.isdir(root):
            raise cls.not_found(root, root=root, what="image folder")
        return root

    def generate_split(self) -> None:
        self.classes, self.paths, self.labels = [], [], []
        self.ignored_paths: list[str] = []
        entries = sorted(
            (e for e in os.scandir(self.root) if _visible(e.name)), key=lambda e: e.name
        )
        for entry in entries:
            if not entry.is_dir():
                self.ignored_paths.append(entry.path)  # a file outside any class folder
                continue
            files = []
            for inner in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if not _visible(inner.name):
                    continue
                if inner.is_file() and inner.name.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(inner.path)
                else:
                    self.ignored_paths.append(inner.path)
            if not files:
                self.ignored_paths.append(entry.path)  # a class folder without images
                continue
            self.paths.extend(files)
            self.labels.extend([len(self.classes)] * len(files))
            self.classes.append(entry.name)
        if not self.paths:
            raise self.not_found(
                os.path.join(self.root, "<class name>", "*.jpg"),
                root=self.root,
                what="image file",
            )
        if self.ignored_paths:
            shown = ", ".join(repr(p) for p in self.ignored_paths[:5])
            more = f" and {len(self.ignored_paths) - 5} more" if len(self.ignored_paths) > 5 else ""
            warnings.warn(
                f"image folder {self.root!r}: {len(self.ignored_paths)} entries are not read as "
                f"images: {shown}{more}. Expected root/<class name>/<image> with the extensions "
                f"{' '.join(IMAGE_EXTENSIONS)} (any case); move or convert the files to include "
                "them (ignored_paths lists all).",
                stacklevel=5,
            )
