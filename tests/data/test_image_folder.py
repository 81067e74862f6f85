"""ImageFolderDataset: root/<class>/<image>, classes in sorted order, jpg and png."""

from __future__ import annotations

import numpy as np

from pml_proxy_anchor.data import ImageFolderDataset
from tests.fixtures.datasets import class_colour, make_image_folder


def test_classes_labels_and_images(tmp_path):
    make_image_folder(tmp_path, {"zebra": 2, "ant": 3, "moth": 1})
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    ds = ImageFolderDataset(tmp_path)
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
