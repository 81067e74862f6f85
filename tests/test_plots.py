"""The plots are valid PNG files; the retrieval grid frames neighbours green/red."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pml_proxy_anchor.plots import (
    CORRECT_COLOR,
    WRONG_COLOR,
    nearest_neighbours,
    plot_embedding_projection,
    plot_recall_vs,
    plot_retrieval_grid,
    plot_training_curves,
    project_2d,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path, min_size: tuple[int, int], max_size: tuple[int, int]) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert min_size[0] <= width <= max_size[0] and min_size[1] <= height <= max_size[1]
        return np.asarray(image.convert("RGB"))


def test_training_curves(tmp_path) -> None:
    history = {
        "epoch": [1, 2, 3],
        "loss": [3.0, 2.0, 1.5],
        "recall_at_1": [0.5, 0.6, 0.7],
        "recall_at_2": [0.6, 0.7, 0.8],
        "recall_at_4": [0.7, 0.8, None],
        "recall_at_8": [0.8, 0.9, 0.95],
    }
    out = plot_training_curves(history, tmp_path / "sub" / "curves.png")
    assert out == tmp_path / "sub" / "curves.png"
    pixels = _check_png(out, (600, 250), (1500, 700))
    assert pixels.std() > 0  # something is drawn
    with pytest.raises(ValueError, match="loss"):
        plot_training_curves({"epoch": [1]}, tmp_path / "bad.png")
    records = [{"epoch": 1, "loss": 2.0, "recall_at_1": 0.5}, {"epoch": 2, "loss": 1.0}]
    _check_png(plot_training_curves(records, tmp_path / "records.png"), (600, 250), (1500, 700))


def _frame_pixel(pixels: np.ndarray, row: int, col: int, rows: int, cols: int) -> np.ndarray:
    """Colour of the most common non-white/grey pixel inside one grid cell."""
    height, width = pixels.shape[:2]
    cell = (
        pixels[
            row * height // rows : (row + 1) * height // rows,
            col * width // cols : (col + 1) * width // cols,
        ]
        .reshape(-1, 3)
        .astype(int)
    )
    saturated = cell[(cell.max(axis=1) - cell.min(axis=1)) > 100]
    assert len(saturated) > 0, f"no coloured frame in cell ({row}, {col})"
    colours, counts = np.unique(saturated, axis=0, return_counts=True)
    return colours[counts.argmax()]


def test_retrieval_grid_frames(tmp_path) -> None:
    rng = np.random.default_rng(0)
    queries = [rng.integers(0, 256, (105, 105), dtype=np.uint8) for _ in range(3)]
    neighbours = [
        [rng.integers(0, 256, (105, 105), dtype=np.uint8) for _ in range(4)] for _ in range(2)
    ] + [[torch.rand(1, 28, 28) for _ in range(4)]]  # tensors (C, H, W) in [0, 1] also work
    correct = np.array(
        [[True, False, True, True], [False, False, True, False], [True, True, False, True]]
    )
    out = plot_retrieval_grid(queries, neighbours, correct, tmp_path / "grid.png")
    pixels = _check_png(out, (500, 300), (1200, 800))
    green = np.array(CORRECT_COLOR) * 255
    red = np.array(WRONG_COLOR) * 255
    for row in range(3):
        for col in range(4):
            colour = _frame_pixel(pixels, row, col + 1, rows=3, cols=5)
            expected = green if correct[row, col] else red
            other = red if correct[row, col] else green
            assert np.abs(colour - expected).max() <= 3, (row, col, colour)
            assert np.abs(colour - other).max() > 100


def test_retrieval_grid_bad_shapes(tmp_path) -> None:
    image = np.zeros((10, 10), dtype=np.uint8)
    with pytest.raises(ValueError, match="correct must have shape"):
        plot_retrieval_grid([image], [[image, image]], np.ones((1, 3), bool), tmp_path / "g.png")
    with pytest.raises(ValueError, match="neighbour lists"):
        plot_retrieval_grid([image, image], [[image]], np.ones((2, 1), bool), tmp_path / "g.png")


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_projection(tmp_path, method) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 12)
    centres = rng.normal(size=(5, 16)) * 5
    embeddings = torch.as_tensor(centres[labels] + rng.normal(size=(60, 16)), dtype=torch.float32)
    out = plot_embedding_projection(embeddings, labels, tmp_path / f"{method}.png", method=method)
    pixels = _check_png(out, (400, 400), (800, 800))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 5  # several class colours
    with pytest.raises(ValueError, match="labels"):
        plot_embedding_projection(embeddings, labels[:-1], tmp_path / "bad.png")


def test_pca_projection_matches_svd() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 6)) * np.array([10.0, 5.0, 1.0, 0.1, 0.1, 0.1])
    points = project_2d(x, method="pca")
    # the 2-D PCA keeps the two largest principal variances (computed independently)
    expected = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1][:2]
    np.testing.assert_allclose(np.var(points, axis=0, ddof=1), expected, rtol=1e-8)
    with pytest.raises(ValueError, match="method"):
        project_2d(x, method="umap")


def test_recall_vs(tmp_path) -> None:
    curves = {
        "Proxy-Anchor": ([1, 2, 3], [0.5, 0.7, 0.8]),
        "Triplet": ([1, 2, 3], [0.3, 0.5, 0.6]),
    }
    out = plot_recall_vs(curves, "epoch", tmp_path / "r1.png")
    _check_png(out, (400, 300), (900, 700))
    with pytest.raises(ValueError, match="x values"):
        plot_recall_vs({"bad": ([1, 2], [0.1])}, "epoch", tmp_path / "bad.png")
    with pytest.raises(ValueError, match="empty"):
        plot_recall_vs({}, "epoch", tmp_path / "bad.png")


def test_nearest_neighbours_exact() -> None:
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.6, 0.8]])
    labels = np.array([0, 0, 1, 1, 0])
    queries, neighbours, correct = nearest_neighbours(embeddings, labels, num_queries=5, k=2)
    np.testing.assert_array_equal(queries, np.arange(5))
    # dot products computed by hand: row i lists the two largest of x_i . x_j, j != i
    np.testing.assert_array_equal(neighbours, [[1, 4], [0, 4], [3, 4], [2, 4], [2, 3]])
    np.testing.assert_array_equal(correct, labels[neighbours] == labels[:, None])
    assert correct.tolist()[2] == [True, False]
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(embeddings, labels, k=5)
