"""In-Shop: count line + header, item ids, and ONE label mapping shared by query and gallery."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pml_proxy_anchor.data import InShop
from tests.fixtures.datasets import class_colour


def _item(path: str) -> int:
    return int(re.search(r"/id_(\d{8})/", path).group(1))


def _partition(inshop_root):
    lines = (inshop_root / "Inshop_Clothes" / "Eval" / "list_eval_partition.txt").read_text()
    out: dict[str, list[int]] = {"train": [], "query": [], "gallery": []}
    for line in lines.splitlines()[2:]:
        name, item, status = line.split()
        out[status].append(int(item[3:]))
    return out


def test_counts_per_split(inshop_root):
    truth = _partition(inshop_root)
    for split in ("train", "query", "gallery"):
        ds = InShop(inshop_root, split=split)
        assert len(ds) == len(truth[split])
        assert sorted(_item(p) for p in ds.paths) == sorted(truth[split])
        assert all("/Inshop_Clothes/Img/img/" in p for p in ds.paths)
    assert InShop(inshop_root, split="train").num_classes == 3


def test_query_and_gallery_share_one_mapping(inshop_root):
    truth = _partition(inshop_root)
    test_items = sorted(set(truth["query"]) | set(truth["gallery"]))
    assert set(truth["query"]) != set(test_items)  # one test item has no query image
    query = InShop(inshop_root, split="query")
    gallery = InShop(inshop_root, split="gallery")
    assert query.num_classes == gallery.num_classes == len(test_items) == 3
    for ds in (query, gallery):
        np.testing.assert_array_equal(ds.class_ids, test_items)
        np.testing.assert_array_equal(ds.labels, [test_items.index(_item(p)) for p in ds.paths])
    assert 0 not in set(query.labels.tolist())  # the smallest test item is gallery-only


def test_train_labels_follow_item_order(inshop_root):
    ds = InShop(inshop_root / "Inshop_Clothes", split="train")
    items = sorted({_item(p) for p in ds.paths})
    np.testing.assert_array_equal(ds.labels, [items.index(_item(p)) for p in ds.paths])
    img, label = ds[0]
    pixel = np.asarray(img, dtype=np.int64)[4, 4]
    np.testing.assert_allclose(pixel, class_colour(_item(ds.paths[0])), atol=8)
    assert label == ds.labels[0]


def test_count_line_must_match(tmp_path):
    (tmp_path / "Eval").mkdir()
    (tmp_path / "Eval" / "list_eval_partition.txt").write_text(
        "3\nimage_name item_id evaluation_status\nimg/a.jpg id_00000001 train\n"
    )
    with pytest.raises(ValueError, match="line 1 says 3 images but 1 are listed"):
        InShop(tmp_path, split="train")


def test_bad_item_id_and_status_are_errors(tmp_path):
    (tmp_path / "Eval").mkdir()
    part = tmp_path / "Eval" / "list_eval_partition.txt"
    part.write_text("1\nimage_name item_id evaluation_status\nimg/a.jpg item7 train\n")
    with pytest.raises(ValueError, match="expected an item id like 'id_00000001'"):
        InShop(tmp_path, split="train")
    part.write_text("1\nimage_name item_id evaluation_status\nimg/b.jpg id_00000001 val\n")
    with pytest.raises(ValueError, match="train|query|gallery"):
        InShop(tmp_path, split="train")
