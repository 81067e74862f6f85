"""The pictures of a finished run: ``RUN_DIR/plots/*.png`` (matplotlib, Agg).

- ``curves.png``: training loss and Recall@K per epoch (from the run's history);
- ``retrieval_grid.png``: a few evaluation queries, each with its nearest neighbours among the
  gallery (the query split itself for self-retrieval, the query excluded), correct ones framed
  green and wrong ones red -- the qualitative figure of the Proxy-Anchor paper (Kim et al.,
  CVPR 2020, Fig. 5). The thumbnails are the data set's raw images: ``raw_image(i)`` when the
  data set has it (Omniglot), else the file ``paths[i]``; a data set with neither is skipped;
- ``embedding_projection.png``: a 2-D projection (t-SNE, PCA without scikit-learn) of the query
  split's embeddings coloured by class, for a random subset of ``projection_classes`` classes
  (their names are recorded).

:func:`write_run_plots` never raises: a plot that fails or cannot be drawn is skipped, with the
reason logged and returned under ``skipped``, so a plot never costs a finished run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LOGGER = logging.getLogger("pml_proxy_anchor")
PLOTS_DIR = "plots"
THUMBNAIL_SIZE = 128  # longest side of a retrieval-grid image read from a file


def history_columns(history: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Per-epoch records -> ``{"epoch": [...], "loss": [...], "recall_at_K": [...]}``."""
    keys = ["epoch", "loss"] + sorted(
        {k for record in history for k in record if k.startswith("recall_at_")}
    )
    return {key: [record.get(key) for record in history] for key in keys}


def raw_image_getter(dataset: Any) -> Callable[[int], np.ndarray] | None:
    """A function ``index -> image array`` reading the data set's untransformed images, or None.

    Uses ``dataset.raw_image(i)`` (bundled data such as Omniglot), else opens ``dataset.paths[i]``
    (image-file data sets) as RGB, shrunk to at most :data:`THUMBNAIL_SIZE` pixels.
    """
    if callable(getattr(dataset, "raw_image", None)):
        return lambda index: np.asarray(dataset.raw_image(int(index)))
    paths = getattr(dataset, "paths", None)
    if paths is None or len(paths) != len(dataset) or not Path(str(paths[0])).is_file():
        return None
    from PIL import Image

    def read(index: int) -> np.ndarray:
        with Image.open(str(paths[int(index)])) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
            return np.asarray(image)

    return read


def retrieval_neighbours(
    query: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray | None = None,
    gallery_labels: np.ndarray | None = None,
    num_queries: int = 8,
    k: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num_queries`` random queries and their ``k`` most similar gallery items (dot product).

    ``gallery=None``: self-retrieval on ``query`` with the query itself excluded. Returns
    ``(query_indices (Q,), neighbour_indices (Q, k) into the gallery, correct (Q, k) bool)``.
    """
    same = gallery is None
    gallery = query if gallery is None else gallery
    gallery_labels = query_labels if gallery_labels is None else gallery_labels
    available = len(gallery) - (1 if same else 0)
    if not 1 <= k <= available:
        raise ValueError(f"k must be in 1..{available} (gallery items to rank), got {k}.")
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(len(query), size=min(num_queries, len(query)), replace=False))
    similarity = query[queries].astype(np.float64) @ gallery.astype(np.float64).T
    if same:
        similarity[np.arange(len(queries)), queries] = -np.inf
    neighbours = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    correct = gallery_labels[neighbours] == query_labels[queries][:, None]
    return queries, neighbours, correct


def class_subset(
    labels: np.ndarray, num_classes: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(chosen classes sorted, mask of their items)``: ``num_classes`` classes at random."""
    classes = np.unique(labels)
    count = min(int(num_classes), len(classes))
    chosen = np.sort(np.random.default_rng(seed).choice(classes, size=count, replace=False))
    return chosen, np.isin(labels, chosen)


def class_name(dataset: Any, label: int) -> str:
    """The name of class ``label`` (``dataset.characters`` / ``class_names``), else its number."""
    for attribute in ("characters", "class_names"):
        names = getattr(dataset, attribute, None)
        if names is not None and 0 <= int(label) < len(names):
            return str(names[int(label)])
    return str(int(label))


def write_run_plots(
    run_dir: str | Path,
    history: Sequence[Mapping[str, Any]],
    embed: Callable[[Any], tuple[np.ndarray, np.ndarray]] | None = None,
    query_set: Any = None,
    gallery_set: Any = None,
    *,
    num_queries: int = 8,
    k: int = 4,
    projection_classes: int = 20,
    projection_method: str = "tsne",
    seed: int = 0,
) -> dict[str, Any]:
    """Write the plots of a run into ``run_dir/plots``; returns what was written and skipped.

    Args:
        run_dir: the run directory.
        history: the per-epoch records (``epoch``, ``loss``, ``recall_at_K``).
        embed: ``dataset -> (embeddings (N, D), labels (N,))`` numpy arrays (e.g. PML's
            ``tester.get_all_embeddings(..., return_as_numpy=True)``); None skips the two
            embedding plots.
        query_set, gallery_set: the evaluation splits (``gallery_set`` None or the same object:
            self-retrieval).
        num_queries, k: rows and neighbours of the retrieval grid.
        projection_classes: classes drawn in the projection (a random subset, ``seed``).
        projection_method: ``"tsne"`` or ``"pca"``.

    Returns:
        ``{"curves": path or None, "retrieval_grid": ..., "embedding_projection": ...,
        "projection_classes": [names], "skipped": {plot: reason}}`` with paths relative to
        ``run_dir``.
    """
    from pml_proxy_anchor import plots

    run_dir = Path(run_dir)
    out_dir = run_dir / PLOTS_DIR
    written: dict[str, Any] = {"curves": None, "retrieval_grid": None, "embedding_projection": None}
    skipped: dict[str, str] = {}

    def attempt(name: str, draw: Callable[[Path], Any]) -> None:
        target = out_dir / f"{name}.png"
        try:
            draw(target)
        except Exception as err:  # a plot must never cost a finished run
            LOGGER.warning("could not write %s: %s: %s", target, type(err).__name__, err)
            skipped[name] = f"{type(err).__name__}: {err}"
        else:
            written[name] = f"{PLOTS_DIR}/{target.name}"

    if history:
        attempt("curves", lambda path: plots.plot_training_curves(history_columns(history), path))
    else:
        skipped["curves"] = "no epoch finished"

    if embed is None or query_set is None:
        skipped["retrieval_grid"] = skipped["embedding_projection"] = "no model to embed with"
        return {**written, "skipped": skipped}
    self_retrieval = gallery_set is None or gallery_set is query_set
    try:
        query, query_labels = embed(query_set)
        gallery, gallery_labels = (None, None) if self_retrieval else embed(gallery_set)
    except Exception as err:
        reason = f"embedding the evaluation split failed: {type(err).__name__}: {err}"
        LOGGER.warning("no retrieval grid or projection: %s", reason)
        skipped["retrieval_grid"] = skipped["embedding_projection"] = reason
        return {**written, "skipped": skipped}
    query_labels = np.asarray(query_labels).reshape(-1)
    if gallery_labels is not None:
        gallery_labels = np.asarray(gallery_labels).reshape(-1)

    read_query = raw_image_getter(query_set)
    read_gallery = read_query if self_retrieval else raw_image_getter(gallery_set)
    if read_query is None or read_gallery is None:
        reason = "the data set has no raw images (no raw_image() and no readable paths)"
        LOGGER.warning("no retrieval grid: %s", reason)
        skipped["retrieval_grid"] = reason
    else:

        def grid(path: Path) -> None:
            queries, neighbours, correct = retrieval_neighbours(
                query, query_labels, gallery, gallery_labels, num_queries, k, seed
            )
            plots.plot_retrieval_grid(
                [read_query(q) for q in queries],
                [[read_gallery(n) for n in row] for row in neighbours],
                correct,
                path,
            )

        attempt("retrieval_grid", grid)

    chosen, mask = class_subset(query_labels, projection_classes, seed)
    names = [class_name(query_set, label) for label in chosen]

    def projection(path: Path) -> None:
        total = len(np.unique(query_labels))
        method_name = "t-SNE" if projection_method == "tsne" else projection_method.upper()
        plots.plot_embedding_projection(
            query[mask],
            query_labels[mask],
            path,
            method=projection_method,
            title=(
                f"{method_name} of {int(mask.sum())} test embeddings: "
                f"{len(chosen)} of {total} classes (random, seed {seed})"
            ),
        )

    attempt("embedding_projection", projection)
    if written["embedding_projection"]:
        written["projection_classes"] = names
    return {**written, "skipped": skipped}
