"""Omniglot "background small", bundled, with a fixed zero-shot split by alphabet.

Data: Lake, Salakhutdinov and Tenenbaum, "Human-level concept learning through probabilistic
program induction", Science 350(6266), 2015 (https://github.com/brendenlake/omniglot, MIT
licence, see ``assets/OMNIGLOT_LICENSE``). The two "background small" sets hold 8 alphabets,
242 characters and 20 handwritten images of each (4,840 images, 105x105 binary). They ship
inside the package as ``assets/omniglot_small.npz`` (bit-packed, lossless, built by
``tools/build_omniglot_bundle.py`` of the source repository); its SHA-256 is stored in
``assets/omniglot_small.json`` and checked on load.

Splits (``Omniglot(split=...)``):

* ``"train"``: Balinese, Early_Aramaic, Greek, Japanese_(katakana) -- 117 characters;
* ``"test"``: Korean, Latin, Sanskrit, Tagalog -- 125 characters never seen in training
  (zero-shot retrieval, as for CUB-200/Cars-196/SOP in the Proxy-Anchor paper);
* ``"all"``: all 242 characters. In the ``"all"`` setting of :func:`build_omniglot` the model
  trains on every image and is evaluated by self-retrieval on the same 4,840 images with the
  test transform: a seen-class fit check, not a zero-shot number.

Images follow the PNG polarity (white background, dark ink); :class:`OmniglotTransform`
inverts them so that ink is 1.0 and the zero padding of augmentations is background.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from pml_proxy_anchor.errors import UserError

from .errors import DataConfigError

ASSET_DIR = Path(__file__).resolve().parent / "assets"
BUNDLE_PATH = ASSET_DIR / "omniglot_small.npz"
TRAIN_ALPHABETS = ("Balinese", "Early_Aramaic", "Greek", "Japanese_(katakana)")
TEST_ALPHABETS = ("Korean", "Latin", "Sanskrit", "Tagalog")
SPLITS = ("train", "test", "all")
DEFAULT_IMAGE_SIZE = 28
_REBUILD_HINT = (
    "Fix: reinstall the package (pip install --force-reinstall pml-proxy-anchor), which restores "
    "the bundled file; a clone of the source repository can also rebuild it from the Omniglot "
    "zips with tools/build_omniglot_bundle.py."
)


class BundleChecksumError(UserError, ValueError):
    """The bundled Omniglot file is missing, unreadable or does not match its manifest."""


@dataclass(frozen=True)
class OmniglotBundle:
    """The decoded bundle: one row per image, sorted by alphabet, character and file name.

    Attributes:
        images: ``(N, 105, 105)`` bool, ``True`` = white background (as in the PNGs).
        alphabets, characters, file_names: per-image names (``characters`` are the folder
            names such as ``"character01"``, unique only within an alphabet).
    """

    images: np.ndarray
    alphabets: np.ndarray
    characters: np.ndarray
    file_names: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_bundle(path: str | Path | None = None, verify: bool = True) -> OmniglotBundle:
    """Load (and by default checksum) the Omniglot bundle.

    Args:
        path: the ``.npz`` file; ``None`` = the copy shipped in the package. Its manifest is
            the ``.json`` file of the same stem beside it.
        verify: compare the file's SHA-256 with the manifest before decoding.

    Raises:
        BundleChecksumError: missing file or manifest, checksum mismatch, unreadable content.
    """
    path = Path(path) if path is not None else BUNDLE_PATH
    path = path.resolve()
    stat = path.stat() if path.is_file() else None
    key = (stat.st_mtime_ns, stat.st_size) if stat is not None else None
    return _load_bundle_cached(path, verify, key)


@lru_cache(maxsize=4)
def _load_bundle_cached(path: Path, verify: bool, _key: object) -> OmniglotBundle:
    if not path.is_file():
        raise BundleChecksumError(f"Omniglot bundle {path} does not exist. {_REBUILD_HINT}")
    if verify:
        manifest_path = path.with_suffix(".json")
        if not manifest_path.is_file():
            raise BundleChecksumError(
                f"Manifest {manifest_path} (the SHA-256 of {path.name}) does not exist. "
                f"{_REBUILD_HINT}"
            )
        try:
            expected = json.loads(manifest_path.read_text())["sha256"]
        except (ValueError, KeyError) as error:
            raise BundleChecksumError(
                f"Manifest {manifest_path} is not valid JSON with a 'sha256' field ({error}). "
                f"{_REBUILD_HINT}"
            ) from error
        actual = _sha256(path)
        if actual != expected:
            raise BundleChecksumError(
                f"Omniglot bundle {path} is corrupted: SHA-256 {actual} does not match "
                f"{expected} recorded in {manifest_path.name}. {_REBUILD_HINT}"
            )
    try:
        with np.load(path, allow_pickle=False) as data:
            height, width = (int(v) for v in data["image_shape"])
            packed = data["images_packed"]
            images = np.unpackbits(packed, axis=1, count=height * width).astype(bool)
            bundle = OmniglotBundle(
                images=images.reshape(-1, height, width),
                alphabets=data["alphabets"].astype(str),
                characters=data["characters"].astype(str),
                file_names=data["file_names"].astype(str),
            )
    except (OSError, ValueError, KeyError) as error:
        raise BundleChecksumError(
            f"Omniglot bundle {path} could not be decoded ({error}). {_REBUILD_HINT}"
        ) from error
    bundle.images.setflags(write=False)
    return bundle


class OmniglotTransform:
    """Omniglot image -> float tensor ``(1, size, size)`` in [0, 1], ink = 1.

    Accepts a PIL image of any size and mode (dark ink on a light background, as in the
    Omniglot PNGs) or a 2-D numpy array in the same polarity (bool or uint8, as in the
    bundle). Steps: grayscale, antialiased resize to ``size``, invert, and for training a
    random affine map (rotation +-``degrees``, scale in ``scale``, shift of up to
    ``shift`` x size pixels: +-2 px at 28 px by default) with background fill.
    """

    def __init__(
        self,
        train: bool,
        size: int = DEFAULT_IMAGE_SIZE,
        degrees: float = 10.0,
        scale: tuple[float, float] = (0.9, 1.1),
        shift: float = 2.0 / 28.0,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
            raise DataConfigError(f"size must be an integer of at least 8 pixels, got {size!r}.")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] < float("inf"):
            raise DataConfigError(f"scale must be (low, high) with 0 < low <= high, got {scale!r}.")
        self.train = bool(train)
        self.size = int(size)
        self.degrees = float(degrees)
        self.scale = (float(scale[0]), float(scale[1]))
        self.shift = float(shift)

    def _to_pil(self, image: Image.Image | np.ndarray) -> Image.Image:
        if isinstance(image, Image.Image):
            return image.convert("L")
        if isinstance(image, np.ndarray):
            if image.ndim != 2:
                raise ValueError(
                    f"expected a 2-D (H, W) array like the bundled images, got shape {image.shape}."
                )
            if image.dtype == bool:
                image = image.astype(np.uint8) * 255
            elif image.dtype != np.uint8:
                raise ValueError(f"expected a bool or uint8 array, got dtype {image.dtype}.")
            return Image.fromarray(image, mode="L")
        raise TypeError(f"expected a PIL image or a 2-D numpy array, got {type(image).__name__}.")

    def __call__(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        pil = self._to_pil(image)
        if pil.size != (self.size, self.size):
            pil = pil.resize((self.size, self.size), Image.Resampling.BOX)
        pil = ImageOps.invert(pil)  # ink -> 255, background -> 0 (the affine fill)
        if self.train:
            max_shift = self.shift * self.size
            angle = float(torch.empty(1).uniform_(-self.degrees, self.degrees))
            factor = float(torch.empty(1).uniform_(*self.scale))
            dx, dy = (float(v) for v in torch.empty(2).uniform_(-max_shift, max_shift))
            pil = TF.affine(
                pil,
                angle=angle,
                translate=[round(dx), round(dy)],
                scale=factor,
                shear=[0.0, 0.0],
                interpolation=TF.InterpolationMode.BILINEAR,
                fill=0,
            )
        return TF.pil_to_tensor(pil).float().div_(255.0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(train={self.train}, size={self.size}, "
            f"degrees={self.degrees}, scale={self.scale}, shift={self.shift:.4f})"
        )


def omniglot_transform(train: bool, size: int = DEFAULT_IMAGE_SIZE) -> OmniglotTransform:
    """The default Omniglot transform: augmentation when ``train``, resize only otherwise."""
    return OmniglotTransform(train=train, size=size)


class Omniglot(Dataset):
    """The bundled Omniglot "background small" images as a PML-style data set.

    Items are ``(transform(image), label)``; without a transform the image is the original
    105x105 PIL image (mode ``"L"``, white background). Labels are remapped to
    ``0..num_classes-1`` within the split, in alphabet/character order.

    ``class_rotations`` (1, 2 or 4) adds the character images rotated by 180 (2) or by 90,
    180 and 270 degrees (4) as new classes -- the rotation class augmentation of the
    Omniglot few-shot literature (Santoro et al., ICML 2016; Vinyals et al., NeurIPS 2016).
    Rotated copies come after the originals; their label is ``label + r * characters``.

    Attributes:
        labels: ``np.ndarray[int64]`` per image. num_classes: number of classes.
        characters: ``"Alphabet/characterNN"`` name of each class (index = label; rotated
            classes end in ``"@rot90"``, ``"@rot180"``, ``"@rot270"``).
        alphabets: the alphabets of the split. class_alphabets: alphabet of each class.
        paths: ``"Alphabet/characterNN/file.png"`` of each image (as in the zips; rotated
            copies carry the same ``@rotN`` suffix).
    """

    def __init__(
        self,
        split: str = "train",
        transform: Callable[[Any], Any] | None = None,
        bundle_path: str | Path | None = None,
        verify: bool = True,
        class_rotations: int = 1,
        max_classes: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DataConfigError(f"split must be one of {SPLITS}, got {split!r}.")
        if isinstance(class_rotations, bool) or class_rotations not in (1, 2, 4):
            raise DataConfigError(
                f"class_rotations must be 1 (off), 2 (0/180 deg) or 4 (0/90/180/270 deg), "
                f"got {class_rotations!r}."
            )
        if max_classes is not None and (
            not isinstance(max_classes, (int, np.integer))
            or isinstance(max_classes, bool)
            or max_classes < 2
        ):
            raise DataConfigError(
                f"max_classes must be an integer >= 2 (characters kept, in alphabet order) or "
                f"None (all), got {max_classes!r}."
            )
        bundle = load_bundle(bundle_path, verify=verify)
        chosen = {"train": TRAIN_ALPHABETS, "test": TEST_ALPHABETS}.get(
            split, TRAIN_ALPHABETS + TEST_ALPHABETS
        )
        self.split = split
        self.transform = transform
        self.class_rotations = class_rotations
        self.alphabets = sorted(chosen)
        (index,) = np.nonzero(np.isin(bundle.alphabets, self.alphabets))
        class_names = np.char.add(
            np.char.add(bundle.alphabets[index], "/"), bundle.characters[index]
        )
        characters, labels = np.unique(class_names, return_inverse=True)
        if max_classes is not None and int(max_classes) < len(characters):
            keep = labels < int(max_classes)
            index, class_names, labels = index[keep], class_names[keep], labels[keep]
            characters = characters[: int(max_classes)]
        paths = [f"{name}/{file}" for name, file in zip(class_names, bundle.file_names[index])]
        self._images = bundle.images[index]
        self._base_count = len(index)
        # quarter turns (counter-clockwise) of each variant
        self._turns = [0, 2] if class_rotations == 2 else list(range(class_rotations))
        suffixes = ["" if t == 0 else f"@rot{90 * t}" for t in self._turns]
        self.characters = [name + sfx for sfx in suffixes for name in characters.tolist()]
        self.num_classes = len(self.characters)
        self.labels = np.concatenate(
            [labels.astype(np.int64) + v * len(characters) for v in range(len(suffixes))]
        )
        self.paths = [path + sfx for sfx in suffixes for path in paths]
        self.class_alphabets = [name.split("/")[0] for name in self.characters]

    def __len__(self) -> int:
        return len(self.labels)

    def raw_image(self, idx: int) -> np.ndarray:
        """The 105x105 image as uint8 (255 = background, 0 = ink), rotated for rotated classes."""
        variant, base = divmod(int(idx), self._base_count)
        image = self._images[base].astype(np.uint8) * 255
        turns = self._turns[variant]
        return np.ascontiguousarray(np.rot90(image, turns)) if turns else image

    def raw_images(self, indices: Any = None) -> np.ndarray:
        """``(n, 105, 105)`` uint8 images (255 = background) for ``indices`` (default all)."""
        chosen = range(len(self)) if indices is None else np.asarray(indices).reshape(-1)
        return np.stack([self.raw_image(int(i)) for i in chosen])

    def __getitem__(self, idx: int) -> tuple[Any, int]:
        image: Any = Image.fromarray(self.raw_image(idx), mode="L")
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[idx])

    def __repr__(self) -> str:
        return (
            f"Omniglot(split={self.split!r}, images={len(self)}, classes={self.num_classes}, "
            f"alphabets={self.alphabets}, class_rotations={self.class_rotations})"
        )


def build_omniglot(data_cfg: Mapping[str, Any]) -> dict[str, Dataset]:
    """Build ``{"train": ..., "test": ...}`` from the ``data:`` section of a config.

    Keys (all optional, each checked; a misspelt key is an error with a did-you-mean): ``setting``
    -- ``"zero_shot"`` (default: train alphabets / test alphabets) or ``"all"`` (train on all 242
    characters, evaluate on the same images with the test transform, a seen-class check);
    ``image_size`` (default 28); ``root`` -- an ``.npz`` bundle to use instead of the shipped
    one; ``augment`` (default true); ``class_rotations`` (1, 2 or 4, default 1: rotated
    characters as extra training classes); ``max_classes`` (default all: only the first N
    characters of each split, in alphabet order, for quick smoke runs).

    Raises:
        DataConfigError: an unknown key or a bad value (the message names ``data.<key>``).
    """
    from .datasets import DATASETS  # the record holds the keys and their checks

    section = dict(data_cfg)
    section.pop("name", None)
    return omniglot_splits(DATASETS["omniglot"].read_config(section))


def omniglot_splits(cfg: Mapping[str, Any]) -> dict[str, Dataset]:
    """The splits for a section already checked by the record (every key present)."""
    size = int(cfg["image_size"])
    root = cfg["root"]
    train_split, test_split = ("train", "test") if cfg["setting"] == "zero_shot" else ("all", "all")
    train = Omniglot(
        train_split,
        transform=omniglot_transform(cfg["augment"], size),
        bundle_path=root,
        class_rotations=cfg["class_rotations"],
        max_classes=cfg["max_classes"],
    )
    test = Omniglot(
        test_split,
        transform=omniglot_transform(False, size),
        bundle_path=root,
        max_classes=cfg["max_classes"],
    )
    return {"train": train, "test": test}
