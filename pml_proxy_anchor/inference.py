"""Use a trained run on new images: ``load_embedder(run_dir)`` and ``embed(...)``.

``load_embedder`` rebuilds the run's trunk + embedding head from its ``config.yaml``, loads the
weights of ``checkpoints/best.pt`` (the best Recall@1 epoch; ``which="last"`` for the last epoch)
and returns an :class:`Embedder`: an ``nn.Module`` in eval mode mapping an image batch to
L2-normalised embeddings ``(B, D)``, with ``.transform`` the run's test transform (PIL image ->
tensor), so retrieval on new data uses exactly the preprocessing of the evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from tqdm import tqdm


class UnreadableImagesError(ValueError):
    """One or more images given to :func:`embed` cannot be opened or decoded."""


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


def load_embedder(
    run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"
) -> Embedder:
    """The trained model of ``run_dir`` (a run directory or a checkpoint file) in eval mode."""
    from pml_proxy_anchor.training.evaluate import load_trained_models

    cfg, models, state = load_trained_models(run_dir, which, device)
    return Embedder(models["trunk"], models["embedder"], test_transform(cfg), cfg, state["epoch"])


def check_images(paths: Sequence[str | Path]) -> None:
    """Raise :class:`UnreadableImagesError` naming every path that is missing or undecodable."""
    from pml_proxy_anchor.data.base import is_readable_image

    failures = [str(path) for path in paths if not is_readable_image(str(path))]
    if failures:
        raise UnreadableImagesError(
            f"{len(failures)} of {len(paths)} image(s) are missing or cannot be decoded: "
            f"{', '.join(failures)}. Expected existing JPEG/PNG files. Fix: remove or replace "
            "these files."
        )


@torch.no_grad()
def embed(
    run_dir_or_embedder: str | Path | Embedder,
    image_paths: Sequence[str | Path],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Embeddings ``(N, D)`` (float32, CPU, L2-normalised) of the images at ``image_paths``."""
    if isinstance(run_dir_or_embedder, Embedder):
        embedder = run_dir_or_embedder.to(device)
    else:
        embedder = load_embedder(run_dir_or_embedder, device=device)
    paths = list(image_paths)
    if not paths:
        raise ValueError("embed: no image paths given; expected one or more image files.")
    if batch_size < 1:
        raise ValueError(f"embed: batch_size must be >= 1, got {batch_size}.")
    from pml_proxy_anchor.data.base import load_rgb

    check_images(paths)
    outputs = []
    for start in tqdm(
        range(0, len(paths), batch_size), desc="embed", disable=len(paths) <= batch_size
    ):
        images = [load_rgb(str(p)) for p in paths[start : start + batch_size]]
        batch = torch.stack([embedder.transform(image) for image in images]).to(device)
        outputs.append(embedder(batch).float().cpu())
    return torch.cat(outputs)
