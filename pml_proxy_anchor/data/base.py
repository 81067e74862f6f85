"""The base of every image data set here: a PML ``BaseDataset`` read from local files only.

A subclass parses its annotation files in ``generate_split`` (PML's hook) into ``self.paths``
and the original class ids ``self.labels``; this base then remaps the ids to ``0..C-1`` in
increasing order of the original id (label ``k`` is the k-th smallest class id of the split) and
loads images as RGB (CUB has grayscale and CMYK JPEGs). Nothing is ever downloaded:
a missing root or annotation file raises :class:`DatasetNotFoundError` naming the file, the expected
layout and the download page.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError
from pytorch_metric_learning.datasets.base_dataset import BaseDataset
from tqdm.auto import tqdm

from .errors import CorruptImageError, DataConfigError, DatasetNotFoundError, dataset_not_found

_DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


def load_rgb(path: str) -> Image.Image:
    """Open ``path`` and decode it fully as an RGB PIL image.

    Raises:
        DatasetNotFoundError: the file does not exist.
        CorruptImageError: the file exists but cannot be decoded (the message names the file).
    """
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f"image file not found: {path!r}. The annotation files list it, so the images "
            "folder is incomplete. Fix: extract the full image archive under the data root, or "
            "construct the data set with skip_corrupt=True to drop missing and unreadable images."
        )
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert() decodes the whole image
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(path, f"{type(exc).__name__}: {exc}") from exc


def decode_error(path: str) -> str | None:
    """``None`` when ``path`` decodes completely, else why not (``"file not found"``, or the
    decoder's message, e.g. ``"OSError: image file is truncated (4 bytes not processed)"``).

    Unlike :func:`is_readable_image` this decodes at full size, which is what finds every
    truncated JPEG.
    """
    try:
        with Image.open(path) as img:
            img.load()
        return None
    except FileNotFoundError:
        return "file not found"
    except _DECODE_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"


def is_readable_image(path: str) -> bool:
    """Whether ``path`` exists and decodes (JPEGs are decoded at 1/8 scale, which is fast)."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
            img.load()
        return True
    except (FileNotFoundError, *_DECODE_ERRORS):
        return False


class LocalImageDataset(BaseDataset):
    """PML-style image data set over local files, items ``(transform(image), int label)``.

    Attributes:
        root: the data set's own folder (resolved from the root given).
        paths: image paths, one per item.
        labels: ``np.int64`` array, the labels remapped to ``0..num_classes-1``.
        class_ids: the original class id of each remapped label (``class_ids[labels[i]]``).
        num_classes: the number of classes of the split.
        skipped_paths: images dropped by ``skip_corrupt=True`` (empty otherwise); ``labels`` and
            ``num_classes`` keep the mapping of the full split.
    """

    #: Display name, used in messages.
    NAME: ClassVar[str] = "data set"
    #: Official download page, or None.
    DOWNLOAD_PAGE: ClassVar[str | None] = None
    #: Expected layout under the data set's folder, one entry per line.
    LAYOUT: ClassVar[str] = ""
    #: The annotation file that identifies the data set's folder (relative to it).
    MARKER: ClassVar[str] = ""
    #: Usual names of the folder the archive extracts to; the root may also be its parent.
    FOLDER_NAMES: ClassVar[tuple[str, ...]] = ()
    #: Full-size counts per split, ``{split: (images, classes)}`` (docs/paper.md section 3).
    EXPECTED_COUNTS: ClassVar[dict[str, tuple[int, int]]] = {}
    #: Splits accepted by the constructor.
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "test")

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Image.Image], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        if split not in self.SPLITS:
            raise DataConfigError(
                f"{self.NAME}: unknown split {split!r}; expected one of {list(self.SPLITS)}."
            )
        if not isinstance(skip_corrupt, (bool, np.bool_)):
            raise DataConfigError(
                f"{self.NAME}: skip_corrupt must be true or false, got {skip_corrupt!r} "
                f"({type(skip_corrupt).__name__})."
            )
        self.data_root = os.fspath(root)
        resolved = self.resolve_root(self.data_root)
        self.skip_corrupt = bool(skip_corrupt)
        self.skipped_paths: list[str] = []
        # PML's BaseDataset validates the split and calls generate_split(); never downloads.
        super().__init__(
            root=resolved,
            split=split,
            transform=transform,
            target_transform=target_transform,
            download=False,
        )
        self._finalize(self.paths, self.labels)

    # ---- PML hooks -------------------------------------------------------------------------
    def get_available_splits(self) -> list[str]:
        return list(self.SPLITS)

    def generate_split(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def download_and_remove(self) -> None:
        raise self.not_found(os.path.join(self.data_root, self.MARKER), what="data set")

    # ---- helpers for subclasses -------------------------------------------------------------
    @classmethod
    def resolve_root(cls, root: str) -> str:
        """The data set's folder: ``root`` if it holds ``MARKER``, else ``root/<FOLDER_NAME>``."""
        if not os.path.isdir(root):
            raise cls.not_found(root, root=root, what="data root folder")
        for candidate in (root, *(os.path.join(root, name) for name in cls.FOLDER_NAMES)):
            if os.path.isfile(os.path.join(candidate, cls.MARKER)):
                return candidate
        raise cls.not_found(os.path.join(root, cls.MARKER), root=root, what="annotation file")

    @classmethod
    def not_found(
        cls, missing: str, *, root: str | None = None, what: str = "file", hint: str | None = None
    ) -> DatasetNotFoundError:
        """The :class:`DatasetNotFoundError` for a missing path of this data set."""
        return dataset_not_found(
            missing,
            dataset=cls.NAME,
            root=root if root is not None else os.path.dirname(missing),
            layout=cls.LAYOUT,
            download_page=cls.DOWNLOAD_PAGE,
            what=what,
            hint=hint,
        )

    def annotation_path(self, relative: str) -> str:
        """``root/relative``, raising :class:`DatasetNotFoundError` if that file does not exist."""
        path = os.path.join(self.root, relative)
        if not os.path.isfile(path):
            raise self.not_found(path, root=self.data_root, what="annotation file")
        return path

    def _finalize(self, paths: Sequence[str], class_ids: Sequence[int] | np.ndarray) -> None:
        """Set ``paths``, the remapped ``labels``, ``class_ids`` and ``num_classes``."""
        original = np.asarray(class_ids, dtype=np.int64)
        self.class_ids = self.split_class_ids(original)
        self.paths = list(paths)
        self.labels = np.searchsorted(self.class_ids, original).astype(np.int64)
        self.num_classes = int(len(self.class_ids))
        if self.skip_corrupt:
            self._drop_unreadable()

    def split_class_ids(self, original: np.ndarray) -> np.ndarray:
        """The sorted original ids defining the label mapping (In-Shop shares it across splits)."""
        return np.unique(original)

    def _drop_unreadable(self) -> None:
        keep = np.array(
            [
                is_readable_image(p)
                for p in tqdm(self.paths, desc=f"verifying {self.NAME} images", leave=False)
            ],
            dtype=bool,
        )
        self.skipped_paths = [p for p, ok in zip(self.paths, keep) if not ok]
        if self.skipped_paths:
            self.paths = [p for p, ok in zip(self.paths, keep) if ok]
            self.labels = self.labels[keep]
            shown = ", ".join(repr(p) for p in self.skipped_paths[:3])
            more = " ..." if len(self.skipped_paths) > 3 else ""
            warnings.warn(
                f"{self.NAME} {self.split}: skipped {len(self.skipped_paths)} missing or "
                f"unreadable image(s) of {len(keep)}: {shown}{more}",
                stacklevel=3,
            )

    @property
    def num_skipped(self) -> int:
        """How many images ``skip_corrupt=True`` dropped."""
        return len(self.skipped_paths)

    # ---- torch Dataset ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> tuple[Any, Any]:
        path = self.paths[idx]
        if not os.path.isfile(path):
            raise self.not_found(
                path,
                root=self.data_root,
                what="image file",
                hint="skip_corrupt=True drops missing and unreadable images (with a count).",
            )
        img: Any = load_rgb(path)
        label: Any = int(self.labels[idx])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return img, label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, split={self.split!r}, "
            f"images={len(self)}, classes={self.num_classes})"
        )
