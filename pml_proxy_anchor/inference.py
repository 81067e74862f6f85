"""Use a trained run on new images: ``load_embedder(run_dir)`` and ``embed(...)``.

``load_embedder`` rebuilds the run's trunk + embedding head from its ``config.yaml``, loads the
weights of ``checkpoints/best.pt`` (the best Recall@1 epoch; ``which="last"`` for the last epoch)
and returns an :class:`Embedder`: an ``nn.Module`` in eval mode mapping an image batch to
L2-normalised embeddings ``(B, D)``, with ``.transform`` the run's test transform (PIL image ->
tensor), so retrieval on new data uses exactly the preprocessing of the evaluation.

``embed`` takes image file paths or PIL images: one (a path or an image) or a sequence of them.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from pml_proxy_anchor.errors import UserError

ImageInput = Union[str, "os.PathLike[str]", Image.Image]
"""One image for :func:`embed`: a file path (``str`` / ``Path``) or a PIL image."""


class UnreadableImagesError(UserError, ValueError):
    """One or more images given to :func:`embed` cannot be opened or decoded."""


class EmbedInputError(UserError, ValueError):
    """A bad argument to :func:`embed` / :func:`load_embedder` (type, range, empty input)."""


class Embedder(nn.Module):
    """A trained trunk + embedding head in eval mode, with the run's test ``transform``.

    Attributes:
        trunk, embedder: the two PML models of the run.
        transform: PIL image -> input tensor ``(C, H, W)`` (the run's test transform).
        config: the run's resolved config.
        epoch: the epoch of the loaded checkpoint.
    """

    def __init__(
        self,
        trunk: nn.Module,
        embedder: nn.Module,
        transform: Callable[[Any], Tensor],
        config: DictConfig,
        epoch: int,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.embedder = embedder
        self.transform = transform
        self.config = config
        self.epoch = epoch
        self.eval()

    @property
    def embedding_size(self) -> int:
        size = getattr(self.embedder, "embedding_size", None)
        return int(size if size is not None else self.config.model.embedding_size)

    def forward(self, images: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, D)`` embeddings."""
        return self.embedder(self.trunk(images))


def test_transform(cfg: DictConfig) -> Callable[[Any], Tensor]:
    """The test transform of the run's data set and backbone (as used in its evaluation)."""
    from pml_proxy_anchor.data.build import eval_transform

    return eval_transform(cfg.data, str(cfg.model.backbone))


def _device(device: Any) -> torch.device:
    from pml_proxy_anchor.evaluation.validation import check_device

    resolved = check_device(device, "device")
    assert resolved is not None
    return resolved


def load_embedder(
    run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"
) -> Embedder:
    """The trained model of ``run_dir`` (a run directory or a checkpoint file) in eval mode.

    ``which``: "best" (the epoch with the best Recall@1) or "last"; ``device``: "cpu", "cuda",
    "cuda:N" or "auto". A missing, empty or corrupt checkpoint is refused with the file named
    (:mod:`pml_proxy_anchor.training.checkpoint`).
    """
    from pml_proxy_anchor.registry import choose
    from pml_proxy_anchor.training import checkpoint
    from pml_proxy_anchor.training.evaluate import load_trained_models

    if not isinstance(run_dir, (str, os.PathLike)):
        raise EmbedInputError(
            f"load_embedder: run_dir must be a run directory or a checkpoint file path, got a "
            f"{type(run_dir).__name__}; fix: pass e.g. 'runs/omniglot'"
        )
    choose(which, {"best": checkpoint.BEST, "last": checkpoint.LAST}, "which")
    torch_device = _device(device)
    cfg, models, state = load_trained_models(run_dir, which, torch_device)
    return Embedder(models["trunk"], models["embedder"], test_transform(cfg), cfg, state["epoch"])


def check_images(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Raise :class:`UnreadableImagesError` naming every path that is missing or undecodable."""
    from pml_proxy_anchor.data.base import is_readable_image

    failures = [str(path) for path in paths if not is_readable_image(str(path))]
    if failures:
        raise UnreadableImagesError(
            f"{len(failures)} of {len(paths)} image(s) are missing or cannot be decoded: "
            f"{', '.join(failures)}. Expected existing JPEG/PNG files. Fix: remove or replace "
            "these files."
        )


def _as_image_list(images: Any) -> list[ImageInput]:
    """One path / PIL image -> a list of one; a sequence -> a list; anything else refused."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    arrays = (bytes, bytearray, torch.Tensor, np.ndarray)  # iterable, but not lists of images
    if isinstance(images, arrays) or not isinstance(images, Iterable):
        raise EmbedInputError(_wrong_image(images, None))
    items = list(images)
    if not items:
        raise EmbedInputError(
            "embed: no images given; expected one or more image file paths or PIL images."
        )
    for index, item in enumerate(items):
        if not isinstance(item, (str, os.PathLike, Image.Image)):
            raise EmbedInputError(_wrong_image(item, index))
    return items


def _wrong_image(item: Any, index: int | None) -> str:
    where = "images" if index is None else f"images[{index}]"
    return (
        f"embed: {where} is a {type(item).__name__}; expected an image file path (str or "
        "Path), a PIL image, or a list of them. Fix: for a decoded array use "
        "PIL.Image.fromarray(array); for a ready (B, C, H, W) tensor call the Embedder directly, "
        "model(batch)."
    )


def _rgb(image: Image.Image, index: int) -> Image.Image:
    """A PIL image as RGB (what the test transform expects); empty or odd modes refused."""
    if 0 in image.size:
        raise EmbedInputError(
            f"embed: images[{index}] is an empty PIL image (size {image.size}); "
            "expected an image with width and height >= 1."
        )
    try:
        return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise EmbedInputError(
            f"embed: images[{index}] (a PIL image in mode {image.mode!r}) cannot be converted "
            f"to RGB ({err}). Fix: convert it yourself, e.g. image.convert('RGB')."
        ) from err


def _batch_size(batch_size: Any) -> int:
    try:
        size = operator.index(batch_size) if not isinstance(batch_size, bool) else 0
    except TypeError:
        size = 0
    if size < 1:
        raise EmbedInputError(f"embed: batch_size must be an integer >= 1, got {batch_size!r}.")
    return size


@torch.no_grad()
def embed(
    run_dir_or_embedder: str | Path | Embedder,
    images: ImageInput | Iterable[ImageInput],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Embeddings ``(N, D)`` (float32, CPU, L2-normalised) of ``images``, in their order.

    ``images``: one image file path (``str`` / ``Path``) or PIL image, or a sequence of them
    (mixed is fine); a single image gives ``(1, D)``. Every missing or undecodable file is named
    before any work is done. The model runs in eval mode (its previous mode is restored).
    """
    items = _as_image_list(images)
    size = _batch_size(batch_size)
    torch_device = _device(device)
    if isinstance(run_dir_or_embedder, Embedder):
        embedder = run_dir_or_embedder.to(torch_device)
    elif isinstance(run_dir_or_embedder, (str, os.PathLike)):
        embedder = load_embedder(run_dir_or_embedder, device=torch_device)
    else:
        raise EmbedInputError(
            f"embed: the first argument must be a run directory, a checkpoint file or an "
            f"Embedder from load_embedder(), got a {type(run_dir_or_embedder).__name__}."
        )
    from pml_proxy_anchor.data.base import load_rgb

    check_images([item for item in items if not isinstance(item, Image.Image)])
    was_training = embedder.training
    embedder.eval()
    outputs = []
    try:
        for start in tqdm(range(0, len(items), size), desc="embed", disable=len(items) <= size):
            batch_items = items[start : start + size]
            decoded = [
                _rgb(item, start + i) if isinstance(item, Image.Image) else load_rgb(str(item))
                for i, item in enumerate(batch_items)
            ]
            batch = torch.stack([embedder.transform(image) for image in decoded])
            outputs.append(embedder(batch.to(torch_device)).float().cpu())
    finally:
        embedder.train(was_training)
    return torch.cat(outputs)
