"""A corrupt image raises CorruptImageError naming the file; skip_corrupt=True drops and counts."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pml_proxy_anchor.data import CUB200, CorruptImageError
from tests.fixtures.datasets import class_colour, make_cub_tree, write_corrupt_image


@pytest.fixture()
def damaged(tmp_path):
    """A CUB tree with one garbage image, one truncated JPEG and one missing file (train split)."""
    make_cub_tree(tmp_path, (1, 2, 101), (3, 3, 2))
    paths = CUB200(tmp_path, split="train").paths
    write_corrupt_image(paths[1], "garbage")
    write_corrupt_image(paths[3], "truncated")
    os.remove(paths[5])
    return tmp_path, paths


@pytest.mark.parametrize("index", [1, 3])
def test_corrupt_image_error_names_the_file(damaged, index):
    root, paths = damaged
    ds = CUB200(root, split="train")
    with pytest.raises(CorruptImageError) as info:
        ds[index]
    assert isinstance(info.value, ValueError)
    assert info.value.path == paths[index]
    assert repr(paths[index]) in str(info.value)
    assert "skip_corrupt=True" in str(info.value)


def test_skip_corrupt_drops_and_counts(damaged):
    root, paths = damaged
    with pytest.warns(UserWarning, match=r"skipped 3 missing or unreadable image\(s\) of 6"):
        ds = CUB200(root, split="train", skip_corrupt=True)
    assert ds.num_skipped == 3
    assert ds.skipped_paths == [paths[1], paths[3], paths[5]]
    assert ds.paths == [paths[0], paths[2], paths[4]]
    assert len(ds) == len(ds.labels) == 3
    assert ds.num_classes == 2
    for i in range(len(ds)):  # labels stay aligned with the remaining paths
        img, label = ds[i]
        pixel = np.asarray(img, dtype=np.int64)[4, 4]
        np.testing.assert_allclose(pixel, class_colour(int(ds.class_ids[label])), atol=8)


def test_skip_corrupt_on_clean_data_warns_nothing(tmp_path, recwarn):
    make_cub_tree(tmp_path, (1, 101), 2)
    ds = CUB200(tmp_path, split="test", skip_corrupt=True)
    assert ds.num_skipped == 0 and len(ds) == 2
    assert not [w for w in recwarn if "skipped" in str(w.message)]
