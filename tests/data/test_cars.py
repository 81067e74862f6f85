"""Cars-196 from a scipy-written cars_annos.mat: split by class (not the test flag), remapped."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from pml_proxy_anchor.data import Cars196
from tests.fixtures.datasets import CARS_CLASSES, CARS_COUNTS, class_colour


def _annotations(cars_root):
    mat = scipy.io.loadmat(cars_root / "cars196" / "cars_annos.mat", squeeze_me=True)
    ann = mat["annotations"]
    return {
        str(p).split("/")[-1]: (int(c), int(t))
        for p, c, t in zip(ann["relative_im_path"], ann["class"], ann["test"])
    }


@pytest.mark.parametrize(("split", "wanted"), [("train", range(1, 99)), ("test", range(99, 197))])
def test_split_by_class_ignoring_the_test_flag(cars_root, split, wanted):
    truth = _annotations(cars_root)
    ds = Cars196(cars_root, split=split)
    split_classes = sorted(c for c in CARS_CLASSES if c in wanted)
    expected_files = sorted(f for f, (c, _) in truth.items() if c in wanted)
    assert sorted(p.split("/")[-1] for p in ds.paths) == expected_files
    assert len(ds) == sum(n for c, n in zip(CARS_CLASSES, CARS_COUNTS) if c in wanted)
    # the fixture's test flags are mixed within the split, so a flag-based split would differ
    assert {truth[f][1] for f in expected_files} == {0, 1}
    assert ds.num_classes == len(split_classes)
    original = [truth[p.split("/")[-1]][0] for p in ds.paths]
    np.testing.assert_array_equal(ds.labels, [split_classes.index(c) for c in original])
    assert all(p.startswith(str(cars_root / "cars196" / "car_ims")) for p in ds.paths)


def test_items_show_their_class_colour(cars_root):
    ds = Cars196(cars_root / "cars196", split="test")
    for i in range(len(ds)):
        img, label = ds[i]
        pixel = np.asarray(img, dtype=np.int64)[4, 4]
        np.testing.assert_allclose(pixel, class_colour(int(ds.class_ids[label])), atol=8)


def test_mat_without_annotations_is_an_error(tmp_path):
    scipy.io.savemat(tmp_path / "cars_annos.mat", {"something_else": np.zeros(3)})
    with pytest.raises(ValueError, match="struct array 'annotations'"):
        Cars196(tmp_path, split="train")


def test_unreadable_mat_is_an_error(tmp_path):
    (tmp_path / "cars_annos.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match="cars_annos.mat"):
        Cars196(tmp_path, split="train")
