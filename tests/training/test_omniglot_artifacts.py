"""The run plots of :mod:`pml_proxy_anchor.training.artifacts`: neighbours on constructed
embeddings, raw-image readers, and graceful skipping (a plot never costs a finished run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pml_proxy_anchor.training.artifacts import (
    class_name,
    class_subset,
    history_columns,
    raw_image_getter,
    retrieval_neighbours,
    write_run_plots,
)

HISTORY = [
    {"epoch": 1, "loss": 3.0, "lr": 1e-3, "recall_at_1": 0.5, "recall_at_2": 0.7},
    {"epoch": 2, "loss": 2.0, "lr": 1e-3, "recall_at_1": 0.6, "recall_at_2": 0.8},
]
# Four unit vectors on a circle: 0 and 1 close (class 0), 2 and 3 close (class 1), 1 nearer 2.
ANGLES = np.array([0.0, 0.5, 1.2, 1.6])
POINTS = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)
LABELS = np.array([0, 0, 1, 1])


def test_history_columns_keep_loss_and_recalls_only() -> None:
    columns = history_columns(HISTORY)
    assert columns == {
        "epoch": [1, 2],
        "loss": [3.0, 2.0],
        "recall_at_1": [0.5, 0.6],
        "recall_at_2": [0.7, 0.8],
    }


def test_self_retrieval_neighbours_exclude_the_query() -> None:
    queries, neighbours, correct = retrieval_neighbours(POINTS, LABELS, num_queries=4, k=3)
    assert queries.tolist() == [0, 1, 2, 3]
    assert neighbours.tolist() == [[1, 2, 3], [0, 2, 3], [3, 1, 0], [2, 1, 0]]
    assert correct.tolist() == [
        [True, False, False],
        [True, False, False],
        [True, False, False],
        [True, False, False],
    ]


def test_query_gallery_neighbours_rank_the_whole_gallery() -> None:
    query = POINTS[[1]]
    queries, neighbours, correct = retrieval_neighbours(
        query, np.array([1]), POINTS, LABELS, num_queries=1, k=2
    )
    assert queries.tolist() == [0]
    assert neighbours.tolist() == [[1, 0]]  # the identical gallery item is kept
    assert correct.tolist() == [[False, False]]


def test_neighbours_refuse_k_beyond_the_gallery() -> None:
    with pytest.raises(ValueError, match="k must be in 1..3"):
        retrieval_neighbours(POINTS, LABELS, k=4)


def test_class_subset_and_names() -> None:
    labels = np.repeat(np.arange(30), 2)
    chosen, mask = class_subset(labels, 20, seed=0)
    assert len(chosen) == 20 and len(set(chosen.tolist())) == 20
    assert mask.sum() == 40 and set(labels[mask].tolist()) == set(chosen.tolist())
    assert class_subset(labels, 50)[0].tolist() == list(range(30))

    class Named:
        characters = ["Korean/character01", "Korean/character02"]

    assert class_name(Named(), 1) == "Korean/character02"
    assert class_name(object(), 7) == "7"


class _PathData:
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)


def test_raw_images_come_from_raw_image_or_paths(tmp_path: Path) -> None:
    class Bundled:
        def raw_image(self, index: int) -> np.ndarray:
            return np.full((5, 5), index, dtype=np.uint8)

    assert raw_image_getter(Bundled())(3).tolist() == np.full((5, 5), 3).tolist()
    big = tmp_path / "big.png"
    Image.new("RGB", (400, 200), (10, 20, 30)).save(big)
    image = raw_image_getter(_PathData([str(big)]))(0)
    assert image.shape == (64, 128, 3) and image[0, 0].tolist() == [10, 20, 30]
    assert raw_image_getter(_PathData([str(tmp_path / "missing.png")])) is None
    assert raw_image_getter(object()) is None


def _embed(dataset: object) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 8))
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(6), 4)


def test_no_raw_images_skips_only_the_grid(tmp_path: Path) -> None:
    class NoImages:
        def __len__(self) -> int:
            return 24

    written = write_run_plots(tmp_path, HISTORY, _embed, NoImages(), projection_method="pca")
    assert written["curves"] == "plots/curves.png"
    assert written["embedding_projection"] == "plots/embedding_projection.png"
    assert written["retrieval_grid"] is None
    assert "no raw images" in written["skipped"]["retrieval_grid"]
    assert written["projection_classes"] == [str(c) for c in range(6)]
    assert not (tmp_path / "plots" / "retrieval_grid.png").exists()


def test_a_failing_embedding_never_raises(tmp_path: Path) -> None:
    def broken(dataset: object) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError("out of memory")

    written = write_run_plots(tmp_path, HISTORY, broken, object())
    assert written["curves"] == "plots/curves.png"
    assert "out of memory" in written["skipped"]["retrieval_grid"]
    assert "out of memory" in written["skipped"]["embedding_projection"]
    assert (tmp_path / "plots" / "curves.png").read_bytes()[:4] == b"\x89PNG"
