"""Data sets by name: the ``data:`` section of a config -> ``{"train": ..., "test": ...}``.

``build_datasets(data_cfg, backbone)`` looks ``data_cfg["name"]`` up in a name -> builder table
and returns the splits with the transforms of ``backbone`` (train transform on ``"train"``, test
transform on the others): ``{"train", "test"}`` for self-retrieval data sets,
``{"train", "query", "gallery"}`` for In-Shop (and for an image folder given query and gallery
folders).

``data_cfg`` keys: ``name`` (cub200 | cars196 | sop | inshop | folder | omniglot), ``root``,
``skip_corrupt`` (default false), the transform options ``crop_size``, ``resize_size``,
``image_size``; for ``folder`` also ``train_root``/``test_root`` (default ``root/train``,
``root/test``) or ``query_root``/``gallery_root``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from typing import Any

from torch.utils.data import Dataset

from .base import LocalImageDataset
from .cars import Cars196
from .cub import CUB200
from .folder import ImageFolderDataset
from .inshop import InShop
from .sop import StanfordOnlineProducts
from .transforms import build_transform

DATASET_CLASSES: dict[str, type[LocalImageDataset]] = {
    "cub200": CUB200,
    "cars196": Cars196,
    "sop": StanfordOnlineProducts,
    "inshop": InShop,
}
ALIASES = {
    "cub": "cub200",
    "cub_200_2011": "cub200",
    "cars": "cars196",
    "stanford_online_products": "sop",
    "in_shop": "inshop",
}
TRANSFORM_KEYS = ("crop_size", "resize_size", "image_size")
_COMMON_KEYS = ("name", "root", "skip_corrupt", *TRANSFORM_KEYS)
_FOLDER_KEYS = ("train_root", "test_root", "query_root", "gallery_root")

Builder = Callable[[dict[str, Any], str], dict[str, Dataset]]


def canonical_name(name: str, known: list[str] | None = None) -> str:
    """The table name for ``name`` (any case, ``-`` = ``_``); ValueError with suggestions."""
    known = known if known is not None else sorted(BUILDERS)
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in known:
        close = difflib.get_close_matches(key, known + list(ALIASES), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown data set name {name!r}; expected one of {known}.{hint}")
    return key


def get_dataset_class(name: str) -> type[LocalImageDataset]:
    """The class of a published data set: ``cub200``, ``cars196``, ``sop`` or ``inshop``."""
    return DATASET_CLASSES[canonical_name(name, sorted(DATASET_CLASSES))]


def _check_keys(cfg: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in cfg:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown key data.{key} for data set {cfg.get('name')!r}; expected keys "
                f"{list(allowed)}.{hint}"
            )


def _require_root(cfg: Mapping[str, Any]) -> str:
    root = cfg.get("root")
    if not root:
        raise ValueError(
            f"data.root is not set for data set {cfg.get('name')!r}: set it to the folder that "
            "holds the data set (see reproduce/DATASETS.md), e.g. data.root=/data/CUB_200_2011."
        )
    return os.path.expanduser(str(root))


def _transform_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: cfg[k] for k in TRANSFORM_KEYS if cfg.get(k) is not None}


def _build_published(cfg: dict[str, Any], backbone: str) -> dict[str, Dataset]:
    _check_keys(cfg, _COMMON_KEYS)
    cls = DATASET_CLASSES[cfg["name"]]
    root = _require_root(cfg)
    tkw = _transform_kwargs(cfg)
    return {
        split: cls(
            root,
            split=split,
            transform=build_transform(backbone, split == "train", **tkw),
            skip_corrupt=bool(cfg.get("skip_corrupt", False)),
        )
        for split in cls.SPLITS
    }


def _build_folder(cfg: dict[str, Any], backbone: str) -> dict[str, Dataset]:
    _check_keys(cfg, _COMMON_KEYS + _FOLDER_KEYS)
    root = cfg.get("root")
    tkw = _transform_kwargs(cfg)
    if cfg.get("query_root") or cfg.get("gallery_root"):
        splits = ("train", "query", "gallery")
    else:
        splits = ("train", "test")
    out: dict[str, Dataset] = {}
    for split in splits:
        folder = cfg.get(f"{split}_root")
        if not folder:
            if not root:
                raise ValueError(
                    f"data.{split}_root is not set and there is no data.root to default it to "
                    f"(root/{split}); set data.root or data.{split}_root."
                )
            folder = os.path.join(os.path.expanduser(str(root)), split)
        out[split] = ImageFolderDataset(
            os.path.expanduser(str(folder)),
            transform=build_transform(backbone, split == "train", **tkw),
            skip_corrupt=bool(cfg.get("skip_corrupt", False)),
        )
    return out


def _build_omniglot(cfg: dict[str, Any], backbone: str) -> dict[str, Dataset]:
    """Omniglot brings its own transform (grayscale strokes); ``backbone`` is not used."""
    from .omniglot import build_omniglot  # imported only when used

    return build_omniglot(cfg)


BUILDERS: dict[str, Builder] = {
    "cub200": _build_published,
    "cars196": _build_published,
    "sop": _build_published,
    "inshop": _build_published,
    "folder": _build_folder,
    "omniglot": _build_omniglot,
}


def _plain_config(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``data_cfg`` (a mapping or an OmegaConf DictConfig) as a plain dict with a canonical name."""
    try:  # an OmegaConf DictConfig -> a plain dict
        from omegaconf import DictConfig, OmegaConf

        if isinstance(data_cfg, DictConfig):
            data_cfg = OmegaConf.to_container(data_cfg, resolve=True)  # type: ignore[assignment]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    cfg = dict(data_cfg)
    if "name" not in cfg:
        raise ValueError(f"data.name is not set; expected one of {sorted(BUILDERS)}.")
    cfg["name"] = canonical_name(cfg["name"])
    return cfg


def build_datasets(data_cfg: Mapping[str, Any], backbone: str) -> dict[str, Dataset]:
    """The splits of the data set named by ``data_cfg["name"]``, with ``backbone``'s transforms.

    Returns:
        ``{"train", "test"}`` (self-retrieval) or ``{"train", "query", "gallery"}`` (In-Shop, or an
        image folder with query and gallery folders), each a ``Dataset`` of ``(image, label)``.
    """
    cfg = _plain_config(data_cfg)
    return BUILDERS[cfg["name"]](cfg, backbone)


def eval_transform(data_cfg: Mapping[str, Any], backbone: str) -> Callable[[Any], Any]:
    """The test transform that :func:`build_datasets` gives the evaluation splits of this data
    set (for embedding new images the way the run was evaluated)."""
    cfg = _plain_config(data_cfg)
    if cfg["name"] == "omniglot":  # Omniglot brings its own transform; backbone is not used
        from .omniglot import DEFAULT_IMAGE_SIZE, omniglot_transform

        return omniglot_transform(False, int(cfg.get("image_size") or DEFAULT_IMAGE_SIZE))
    return build_transform(backbone, False, **_transform_kwargs(cfg))
