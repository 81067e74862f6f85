"""A data set of your own images laid out as ``root/<class name>/<image>``.

Classes are the sub-folders of ``root`` in sorted order (label ``k`` is the k-th name); images are
the files with an image extension directly inside them (``.jpg .jpeg .png .bmp .webp``, any case).
For zero-shot retrieval, use one folder for training classes and another for test classes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from PIL import Image

from .base import LocalImageDataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageFolderDataset(LocalImageDataset):
    """Images of ``root/<class name>/*.jpg|png``; attribute ``classes`` holds the folder names."""

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
        self.classes = sorted(
            e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(".")
        )
        self.paths, self.labels = [], []
        for label, name in enumerate(self.classes):
            folder = os.path.join(self.root, name)
            files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
            self.paths.extend(os.path.join(folder, f) for f in files)
            self.labels.extend([label] * len(files))
        if not self.paths:
            raise self.not_found(
                os.path.join(self.root, "<class name>", "*.jpg"),
                root=self.root,
                what="image file",
            )
