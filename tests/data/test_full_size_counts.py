"""The loaders against docs/paper.md section 3's full-size counts, on synthetic annotation files.

The annotation files have the real sizes and formats (no image files), built from the paper's
numbers below, which are written out here independently of the library's EXPECTED_COUNTS.
"""

from __future__ import annotations

import numpy as np
import pytest

from pml_proxy_anchor.data import CUB200, Cars196, InShop, StanfordOnlineProducts, check_dataset
from tests.fixtures.datasets import (
    make_cars_tree,
    make_cub_tree,
    make_inshop_tree,
    make_sop_tree,
    spread,
)

# docs/paper.md section 3: {split: (images, classes)}
PAPER_COUNTS = {
    "cub200": {"train": (5864, 100), "test": (5924, 100)},
    "cars196": {"train": (8054, 98), "test": (8131, 98)},
    "sop": {"train": (59551, 11318), "test": (60502, 11316)},
    "inshop": {"train": (25882, 3997), "query": (14218, 3985), "gallery": (12612, 3985)},
}
CLASSES = {"cub200": CUB200, "cars196": Cars196, "sop": StanfordOnlineProducts, "inshop": InShop}


def _build(name: str, root) -> None:
    c = PAPER_COUNTS[name]
    if name == "cub200":
        counts = spread(*c["train"]) + spread(*c["test"])
        make_cub_tree(root, range(1, 201), counts, write_images=False, shuffle_labels_file=True)
    elif name == "cars196":
        counts = spread(*c["train"]) + spread(*c["test"])
        make_cars_tree(root, range(1, 197), counts, write_images=False)
    elif name == "sop":
        counts = spread(*c["train"]) + spread(*c["test"])
        make_sop_tree(root, c["train"][1], c["test"][1], counts, write_images=False)
    else:
        n_train, n_test = c["train"][1], c["query"][1]
        make_inshop_tree(
            root,
            n_train,
            n_test,
            spread(c["train"][0], n_train),
            spread(c["query"][0], n_test),
            spread(c["gallery"][0], n_test),
            write_images=False,
        )


@pytest.fixture(scope="module", params=sorted(PAPER_COUNTS))
def full_size(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"full_{request.param}")
    _build(request.param, root)
    return request.param, root


def test_loaders_give_the_spec_counts(full_size):
    name, root = full_size
    cls = CLASSES[name]
    assert cls.EXPECTED_COUNTS == PAPER_COUNTS[name]
    for split, (n_images, n_classes) in PAPER_COUNTS[name].items():
        ds = cls(root, split=split)
        assert len(ds) == len(ds.paths) == len(ds.labels) == n_images
        assert ds.num_classes == n_classes
        np.testing.assert_array_equal(np.unique(ds.labels), np.arange(n_classes))


def test_check_dataset_reports_the_counts_and_missing_images(full_size):
    name, root = full_size
    counted = check_dataset(name, root, images="none")
    assert counted.ok, str(counted)
    rows = {s.split: s for s in counted.splits}
    for split, (n_images, n_classes) in PAPER_COUNTS[name].items():
        assert (rows[split].found_images, rows[split].found_classes) == (n_images, n_classes)
        assert f"{n_images:,}" in str(counted)
    sampled = check_dataset(name, root, images="sample", sample_size=50)
    assert not sampled.ok
    assert all(s.checked_files == s.missing_files == 50 for s in sampled.splits)
    assert "MISMATCH" in str(sampled)
