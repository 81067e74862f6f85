"""Stanford Online Products: Ebay_*.txt with a header, global 1-based class ids, labels remapped."""

from __future__ import annotations

import numpy as np
import pytest
from pytorch_metric_learning.datasets import StanfordOnlineProducts as PMLSOP

from pml_proxy_anchor.data import StanfordOnlineProducts
from tests.fixtures.datasets import class_colour


@pytest.mark.parametrize(
    ("split", "class_ids", "n_images"), [("train", [1, 2, 3], 6), ("test", [4, 5, 6, 7], 6)]
)
def test_split_counts_and_label_remapping(sop_root, split, class_ids, n_images):
    ds = StanfordOnlineProducts(sop_root, split=split)
    assert len(ds) == n_images
    assert ds.num_classes == len(class_ids)
    np.testing.assert_array_equal(ds.class_ids, class_ids)
    np.testing.assert_array_equal(np.unique(ds.labels), np.arange(len(class_ids)))
    assert ds.labels.dtype == np.int64


@pytest.mark.parametrize("split", ["train", "test"])
def test_parity_with_pml_reader(sop_root, split):
    ours = StanfordOnlineProducts(sop_root, split=split)
    pml = PMLSOP(str(sop_root), split=split, download=False)
    assert ours.paths == pml.paths
    np.testing.assert_array_equal(ours.class_ids[ours.labels], pml.labels)


def test_items_show_their_class_colour(sop_root):
    ds = StanfordOnlineProducts(sop_root / "Stanford_Online_Products", split="test")
    for i in range(len(ds)):
        img, label = ds[i]
        pixel = np.asarray(img, dtype=np.int64)[4, 4]
        np.testing.assert_allclose(pixel, class_colour(int(ds.class_ids[label])), atol=8)


def test_wrong_header_is_an_error(tmp_path):
    (tmp_path / "Ebay_train.txt").write_text("1 1 1 bicycle_final/a.JPG\n")
    with pytest.raises(ValueError, match="expected the header line"):
        StanfordOnlineProducts(tmp_path, split="train")
