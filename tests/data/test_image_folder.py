"""ImageFolderDataset: root/<class>/<image>, classes in sorted order, jpg and png."""

from __future__ import annotations

import numpy as np
import pytest

from pml_proxy_anchor.data import ImageFolderDataset
from tests.fixtures.datasets import class_colour, make_image_folder


def test_classes_labels_and_images(tmp_path):
    make_image_folder(tmp_path, {"zebra": 2, "ant": 3, "moth": 1})
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    with pytest.warns(UserWarning, match=r"1 entries are not read as images: .*notes\.txt"):
        ds = ImageFolderDataset(tmp_path)
    assert ds.ignored_paths == [str(tmp_path / "ant" / "notes.txt")]
    assert ds.classes == ["ant", "moth", "zebra"]
    assert len(ds) == 6 and ds.num_classes == 3
    np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 2, 2])
    assert {p.rsplit(".", 1)[1] for p in ds.paths} == {"jpg", "png"}
    given_order = {"zebra": 1, "ant": 2, "moth": 3}  # make_image_folder colours by given order
    for i in range(len(ds)):
        img, label = ds[i]
        pixel = np.asarray(img, dtype=np.int64)[4, 4]
        expected = class_colour(given_order[ds.classes[label]])
        np.testing.assert_allclose(pixel, expected, atol=8)


def test_nothing_is_left_out_silently(tmp_path):
    """An empty class folder, a stray image in the root, a nested folder, a .gif: all warned."""
    make_image_folder(tmp_path, {"ant": 2, "bee": 1})
    (tmp_path / "empty").mkdir()
    (tmp_path / "stray.jpg").write_bytes((tmp_path / "ant" / "000.jpg").read_bytes())
    (tmp_path / "bee" / "nested").mkdir()
    (tmp_path / "bee" / "anim.gif").write_bytes(b"GIF89a")
    with pytest.warns(UserWarning, match="4 entries are not read as images") as record:
        ds = ImageFolderDataset(tmp_path)
    message = str(record[0].message)
    for name in ("empty", "stray.jpg", "nested", "anim.gif"):
        assert name in message
    # the empty folder is not a class: labels and class names stay aligned
    assert ds.classes == ["ant", "bee"] and ds.num_classes == 2
    np.testing.assert_array_equal(ds.labels, [0, 0, 1])
    assert record[0].filename == __file__  # the warning points at the caller


def test_clean_folder_warns_nothing(tmp_path, recwarn):
    make_image_folder(tmp_path, {"ant": 1, "bee": 1})
    ImageFolderDataset(tmp_path)
    assert not [w for w in recwarn if "not read as images" in str(w.message)]
