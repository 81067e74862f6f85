"""Plots of a metric-learning run (matplotlib, Agg backend, PNG files).

* :func:`plot_training_curves`: loss and Recall@K per epoch (two panels);
* :func:`plot_retrieval_grid`: queries and their nearest neighbours, correct neighbours framed
  green and wrong ones red, like the qualitative figures of the Proxy-Anchor paper
  (Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020);
* :func:`plot_embedding_projection`: a 2-D projection (t-SNE or PCA) of embeddings coloured
  by class;
* :func:`plot_recall_vs`: Recall@1 of several runs against epochs or wall-clock seconds
  (the paper's Figure 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CORRECT_COLOR = (0.0, 0.7, 0.0)
WRONG_COLOR = (0.85, 0.0, 0.0)
QUERY_COLOR = (0.2, 0.2, 0.2)


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _save(fig: Figure, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


def _columns(
    history: Mapping[str, Sequence[float]] | Sequence[Mapping[str, float]],
) -> dict[str, list]:
    if isinstance(history, Mapping):
        return {key: list(values) for key, values in history.items()}
    keys = sorted({key for record in history for key in record})
    return {key: [record.get(key) for record in history] for key in keys}


def plot_training_curves(
    history: Mapping[str, Sequence[float]] | Sequence[Mapping[str, float]],
    out_png: str | Path,
) -> Path:
    """Loss (left) and Recall@K (right) per epoch.

    Args:
        history: ``{"epoch": [...], "loss": [...], "recall_at_1": [...], ...}`` or a list of
            per-epoch records ``[{"epoch": 1, "loss": ..., "recall_at_1": ...}, ...]``; every
            key starting with ``recall_at_`` is drawn on the right panel. ``epoch`` is optional
            (default ``1..n``). Missing values may be ``None`` or NaN.
        out_png: where to write the PNG (parent folders are created).

    Returns:
        The path of the written PNG.
    """
    history = _columns(history)
    recall_keys = sorted(
        (key for key in history if key.startswith("recall_at_")),
        key=lambda key: int(key.rsplit("_", 1)[-1]) if key.rsplit("_", 1)[-1].isdigit() else 0,
    )
    if "loss" not in history and not recall_keys:
        raise ValueError(
            f"history needs a 'loss' list and/or 'recall_at_K' lists, got keys {sorted(history)}."
        )
    lengths = {len(history[key]) for key in ["loss", *recall_keys] if key in history}
    n = max(lengths)
    epochs = np.asarray(history.get("epoch", range(1, n + 1)), dtype=float)
    fig, (ax_loss, ax_recall) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)

    def _values(key: str) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in history[key]], dtype=float)

    if "loss" in history:
        loss = _values("loss")
        ax_loss.plot(epochs[: len(loss)], loss, marker="o", markersize=3)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Loss")
    ax_loss.grid(alpha=0.3)
    for key in recall_keys:
        values = _values(key)
        ax_recall.plot(epochs[: len(values)], values, marker="o", markersize=3, label=key)
    ax_recall.set_xlabel("epoch")
    ax_recall.set_ylabel("Recall@K")
    ax_recall.set_title("Recall@K")
    ax_recall.grid(alpha=0.3)
    if recall_keys:
        ax_recall.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, out_png)


def _as_image(image: Any) -> np.ndarray:
    array = _to_numpy(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an image (H, W), (H, W, C) or (C, H, W), got {array.shape}.")
    array = array.astype(float)
    if array.max(initial=0.0) > 1.0:
        array = array / 255.0
    return np.clip(array, 0.0, 1.0)


def _framed(image: np.ndarray, color: tuple[float, float, float], width: int) -> np.ndarray:
    """RGB copy of ``image`` with a solid ``color`` border of ``width`` pixels around it."""
    rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]
    height, wide = rgb.shape[:2]
    out = np.empty((height + 2 * width, wide + 2 * width, 3), dtype=float)
    out[...] = color
    out[width : width + height, width : width + wide] = rgb
    return out


def nearest_neighbours(
    embeddings: Any,
    labels: Any,
    num_queries: int = 8,
    k: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick ``num_queries`` random queries and their ``k`` nearest neighbours (self excluded).

    Similarity is the dot product (cosine for the L2-normalised embeddings of the paper's
    head). Returns ``(query_indices (Q,), neighbour_indices (Q, k), correct (Q, k) bool)``,
    ready for :func:`plot_retrieval_grid`.
    """
    x = _to_numpy(embeddings).astype(np.float64)
    y = _to_numpy(labels).reshape(-1)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(
            f"expected (N, D) embeddings and N labels, got {x.shape} and {len(y)} labels."
        )
    if not 1 <= k < len(x):
        raise ValueError(f"k must be in 1..{len(x) - 1} (N - 1), got {k}.")
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(len(x), size=min(num_queries, len(x)), replace=False))
    similarity = x[queries] @ x.T
    similarity[np.arange(len(queries)), queries] = -np.inf
    neighbours = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return queries, neighbours, y[neighbours] == y[queries][:, None]


def plot_retrieval_grid(
    query_images: Sequence[Any],
    neighbour_images: Sequence[Sequence[Any]],
    correct: Any,
    out_png: str | Path,
    frame_width: int | None = None,
) -> Path:
    """One row per query: the query, then its nearest neighbours framed green or red.

    Args:
        query_images: ``Q`` images (numpy/torch, ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)``,
            uint8 0..255 or float 0..1).
        neighbour_images: ``Q`` sequences of ``K`` images each (nearest first).
        correct: ``(Q, K)`` bool array: neighbour has the query's label.
        out_png: where to write the PNG.
        frame_width: border width in pixels of the image (default: 6% of its size, >= 2).

    Returns:
        The path of the written PNG.
    """
    correct = _to_numpy(correct).astype(bool)
    num_queries = len(query_images)
    if num_queries == 0:
        raise ValueError("plot_retrieval_grid needs at least one query image.")
    if len(neighbour_images) != num_queries:
        raise ValueError(
            f"got {num_queries} queries but {len(neighbour_images)} neighbour lists; "
            "pass one list of neighbours per query."
        )
    k = len(neighbour_images[0])
    if correct.shape != (num_queries, k) or any(len(row) != k for row in neighbour_images):
        raise ValueError(
            f"correct must have shape (queries, neighbours) = ({num_queries}, {k}) matching "
            f"neighbour_images, got {correct.shape}."
        )
    fig, axes = plt.subplots(
        num_queries, k + 1, figsize=(1.5 * (k + 1), 1.5 * num_queries), dpi=100, squeeze=False
    )
    for row in range(num_queries):
        query = _as_image(query_images[row])
        width = frame_width or max(2, round(0.06 * max(query.shape[:2])))
        axes[row, 0].imshow(_framed(query, QUERY_COLOR, width), interpolation="nearest")
        for col in range(k):
            image = _as_image(neighbour_images[row][col])
            color = CORRECT_COLOR if correct[row, col] else WRONG_COLOR
            axes[row, col + 1].imshow(_framed(image, color, width), interpolation="nearest")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0, 0].set_title("query", fontsize=9)
    for col in range(k):
        axes[0, col + 1].set_title(f"#{col + 1}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_png)


def _pca_2d(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def project_2d(embeddings: Any, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``(N, D)`` -> ``(N, 2)`` by PCA (numpy SVD) or t-SNE (scikit-learn; PCA if missing)."""
    x = _to_numpy(embeddings).astype(np.float64)
    if x.ndim != 2 or x.shape[0] < 3 or x.shape[1] < 2:
        raise ValueError(f"embeddings must be (N >= 3, D >= 2), got shape {x.shape}.")
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            method = "pca"
        else:
            perplexity = float(min(30.0, (x.shape[0] - 1) / 3))
            tsne = TSNE(
                n_components=2,
                perplexity=perplexity,
                init="pca",
                random_state=seed,
                method="exact" if x.shape[0] <= 500 else "barnes_hut",  # exact: faster if small
            )
            return tsne.fit_transform(x)
    return _pca_2d(x)


def plot_embedding_projection(
    embeddings: Any,
    labels: Any,
    out_png: str | Path,
    method: str = "pca",
    title: str | None = None,
) -> Path:
    """Scatter of a 2-D projection of ``embeddings`` coloured by ``labels``.

    Args:
        embeddings: ``(N, D)`` array or tensor.
        labels: ``(N,)`` integer class labels.
        out_png: where to write the PNG.
        method: ``"pca"`` or ``"tsne"`` (t-SNE needs scikit-learn; falls back to PCA).
        title: figure title (default names the method).

    Returns:
        The path of the written PNG.
    """
    labels = _to_numpy(labels).reshape(-1)
    x = _to_numpy(embeddings)
    if len(labels) != len(x):
        raise ValueError(f"got {len(x)} embeddings but {len(labels)} labels; they must match.")
    points = project_2d(x, method=method)
    _, codes = np.unique(labels, return_inverse=True)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    ax.scatter(points[:, 0], points[:, 1], c=codes, cmap="nipy_spectral", s=6, alpha=0.8)
    ax.set_title(title or f"{method.upper()} of {len(x)} embeddings, {codes.max() + 1} classes")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, out_png)


def plot_recall_vs(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    out_png: str | Path,
    ylabel: str = "Recall@1",
    title: str | None = None,
) -> Path:
    """One line per run: ``curves = {name: (xs, ys)}`` (e.g. R@1 against epoch or seconds).

    Returns:
        The path of the written PNG.
    """
    if not curves:
        raise ValueError("curves is empty; pass {name: (xs, ys)} for at least one run.")
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for name, (xs, ys) in curves.items():
        if len(xs) != len(ys):
            raise ValueError(f"curve {name!r} has {len(xs)} x values but {len(ys)} y values.")
        ax.plot(
            np.asarray(xs, dtype=float),
            np.asarray(ys, dtype=float),
            marker="o",
            markersize=2.5,
            label=name,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, out_png)
