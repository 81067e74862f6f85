"""CUB-200-2011 on a fixture tree: split by class id, ids joined across files, labels remapped."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pytorch_metric_learning.datasets import CUB as PMLCUB

from pml_proxy_anchor.data import CUB200
from tests.fixtures.datasets import CUB_CLASSES, CUB_COUNTS, class_colour, make_cub_tree


def _class_of(path: str) -> int:
    return int(re.search(r"/(\d{3})\.Bird_", path).group(1))


@pytest.mark.parametrize(("split", "wanted"), [("train", range(1, 101)), ("test", range(101, 201))])
def test_split_membership_and_label_remapping(cub_root, split, wanted):
    ds = CUB200(cub_root, split=split)
    split_classes = sorted(c for c in CUB_CLASSES if c in wanted)
    counts = dict(zip(CUB_CLASSES, CUB_COUNTS))
    assert len(ds) == sum(counts[c] for c in split_classes)
    assert ds.num_classes == len(split_classes) == 3
    assert ds.labels.dtype == np.int64
    original = [_class_of(p) for p in ds.paths]
    assert set(original) == set(split_classes)
    # label k is the k-th smallest original class id of the split
    np.testing.assert_array_equal(ds.labels, [split_classes.index(c) for c in original])
    np.testing.assert_array_equal(ds.class_ids, split_classes)


def test_items_are_rgb_images_of_their_class(cub_root):
    ds = CUB200(cub_root, split="train")
    for i in range(len(ds)):
        img, label = ds[i]
        assert isinstance(label, int)
        assert img.mode == "RGB"  # the fixture's first two images are grayscale and CMYK
        if i >= 2:
            pixel = np.asarray(img, dtype=np.int64)[6, 6]
            expected = class_colour(int(ds.class_ids[label]))
            np.testing.assert_allclose(pixel, expected, atol=8)


def test_root_may_be_the_folder_or_its_parent(cub_root):
    from_parent = CUB200(cub_root, split="test")
    from_folder = CUB200(cub_root / "CUB_200_2011", split="test")
    assert from_parent.paths == from_folder.paths
    np.testing.assert_array_equal(from_parent.labels, from_folder.labels)


def test_matches_pml_cub_when_files_are_in_the_same_order(tmp_path):
    make_cub_tree(tmp_path, (3, 50, 101, 150), (2, 1, 1, 2), write_images=False)
    for split in ("train", "test"):
        ours = CUB200(tmp_path, split=split)
        pml = PMLCUB(str(tmp_path), split=split, download=False)
        assert ours.paths == pml.paths
        np.testing.assert_array_equal(ours.class_ids[ours.labels], pml.labels)


def test_ids_are_joined_not_zipped(cub_root):
    """The shuffled image_class_labels.txt of the fixture breaks a line-by-line pairing."""
    lines = (cub_root / "CUB_200_2011" / "image_class_labels.txt").read_text().split()
    assert lines[0::2] != sorted(lines[0::2], key=int)  # the fixture is really shuffled
    ds = CUB200(cub_root, split="test")
    assert sorted(_class_of(p) for p in ds.paths) == [101, 101, 102, 200, 200, 200]


def test_ids_missing_from_one_file_are_an_error(tmp_path):
    base = make_cub_tree(tmp_path, (1, 101), 2, write_images=False)
    labels = (base / "image_class_labels.txt").read_text().splitlines()
    (base / "image_class_labels.txt").write_text("\n".join(labels[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"1 image id\(s\) appear in only one of"):
        CUB200(tmp_path, split="train")
