"""Malformed annotation files never lose images silently: the error names the file and the line.

Each case edits a fixture tree written in the real on-disk format (text files, cars_annos.mat) and
checks that loading refuses with an :class:`AnnotationError` (a ``UserError`` and a ``ValueError``)
whose message names the file, the line (or the .mat annotation number) and the offending value.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.io

from pml_proxy_anchor.data import CUB200, Cars196, InShop, StanfordOnlineProducts
from pml_proxy_anchor.data.errors import AnnotationError
from pml_proxy_anchor.errors import UserError
from tests.fixtures.datasets import make_cars_tree, make_cub_tree, make_inshop_tree, make_sop_tree


def _edit_line(path, line_no: int, text: str | None) -> None:
    """Replace (or, with None, delete) 1-based line ``line_no`` of a text file."""
    lines = path.read_text().splitlines()
    if text is None:
        del lines[line_no - 1]
    else:
        lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _raises(cls, root, split, *patterns: str) -> AnnotationError:
    with pytest.raises(AnnotationError) as info:
        cls(root, split=split)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    for pattern in patterns:
        assert re.search(pattern, str(info.value)), (pattern, str(info.value))
    return info.value


# ---- CUB-200-2011 -------------------------------------------------------------------------------
@pytest.fixture()
def cub(tmp_path):
    """Classes 1, 2, 101 with 2 images each: image ids 1-6, one line per id in each file."""
    return tmp_path, make_cub_tree(tmp_path, (1, 2, 101), 2, write_images=False)


def test_cub_label_not_in_classes_txt_is_refused_not_dropped(cub):
    root, base = cub
    # image 4 (class 2) relabelled 150: a valid CUB class id, but classes.txt does not list it
    _edit_line(base / "image_class_labels.txt", 4, "4 150")
    for split in ("train", "test"):  # before the fix, train lost image 4 and test never had it
        _raises(
            CUB200,
            root,
            split,
            r"image_class_labels\.txt, line 4: class id 150 of image 4 is not in classes\.txt",
            r"ids 1\.\.101",
        )


def test_cub_class_outside_1_200_is_refused(cub):
    root, base = cub
    (base / "classes.txt").write_text("1 a\n2 b\n101 c\n201 d\n")
    _edit_line(base / "image_class_labels.txt", 3, "3 201")
    _raises(CUB200, root, "train", r"line 3: class id 201 of image 3 is outside 1\.\.200")


@pytest.mark.parametrize("value", ["two", "2.0", "-1", "2 3"])
def test_cub_class_that_is_not_one_integer(cub, value):
    root, base = cub
    _edit_line(base / "image_class_labels.txt", 2, f"2 {value}")
    _raises(CUB200, root, "train", r"image_class_labels\.txt, line 2: the class of image 2 is")


@pytest.mark.parametrize("file_name", ["images.txt", "image_class_labels.txt", "classes.txt"])
def test_cub_duplicated_id_names_both_lines(cub, file_name):
    root, base = cub
    path = base / file_name
    first = path.read_text().splitlines()[0]
    path.write_text(path.read_text() + first + "\n")
    n_lines = len(path.read_text().splitlines())
    _raises(
        CUB200,
        root,
        "test",
        rf"{re.escape(file_name)}, line {n_lines}: id 1 is listed again \(first on line 1\)",
    )


def test_cub_id_missing_from_labels_names_file_and_line(cub):
    root, base = cub
    _edit_line(base / "image_class_labels.txt", 5, None)
    _raises(
        CUB200,
        root,
        "train",
        r"1 image id\(s\) appear in only one of",
        r"images\.txt, line 5: image id 5 has no class in .*image_class_labels\.txt",
    )


def test_cub_id_missing_from_images_names_file_and_line(cub):
    root, base = cub
    _edit_line(base / "images.txt", 6, None)
    _raises(
        CUB200,
        root,
        "train",
        r"image_class_labels\.txt, line 6: image id 6 has no path in .*images\.txt",
    )


def test_cub_malformed_line(cub):
    root, base = cub
    _edit_line(base / "images.txt", 2, "two 001.Bird_1/x.jpg")
    _raises(CUB200, root, "train", r"images\.txt, line 2: expected '<id> <relative path>'")


def test_cub_classes_txt_is_required(cub):
    from pml_proxy_anchor.data import DatasetNotFoundError

    root, base = cub
    (base / "classes.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"annotation file not found: .*classes\.txt"):
        CUB200(root, split="train")


# ---- Cars-196 -----------------------------------------------------------------------------------
def _rewrite_mat(base, edit) -> None:
    path = base / "cars_annos.mat"
    mat = scipy.io.loadmat(path)
    annotations = mat["annotations"]
    edit(annotations)
    scipy.io.savemat(path, {"annotations": annotations, "class_names": mat["class_names"]})


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (0, r"annotation 3: class 0 is not an integer in 1\.\.196"),
        (197, r"annotation 3: class 197 is not an integer in 1\.\.196"),
        (2.5, r"annotation 3: class 2\.5 is not an integer in 1\.\.196"),
    ],
)
def test_cars_class_outside_the_splits_is_refused(tmp_path, value, pattern):
    base = make_cars_tree(tmp_path, (1, 99), 2, write_images=False)

    def edit(annotations):
        annotations[0, 2]["class"] = np.array([[value]], dtype=np.float64)

    _rewrite_mat(base, edit)
    _raises(Cars196, tmp_path, "train", r"cars_annos\.mat, " + pattern, "neither split")


def test_cars_image_listed_twice_is_refused(tmp_path):
    base = make_cars_tree(tmp_path, (1, 99), 2, write_images=False)

    def edit(annotations):
        annotations[0, 3]["relative_im_path"] = annotations[0, 0]["relative_im_path"]

    _rewrite_mat(base, edit)
    _raises(
        Cars196,
        tmp_path,
        "test",
        r"annotation 4: 'car_ims/000001\.jpg' is listed again \(first as annotation 1\)",
    )


# ---- Stanford Online Products -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("2 x 1 bicycle_final/a.JPG", r"Ebay_train\.txt, line 3: expected 4 fields"),
        ("2 1 1", r"Ebay_train\.txt, line 3: expected 4 fields"),
        (
            "1 1 1 bicycle_final/other.JPG",
            r"line 3: image id '1' is listed again \(first on line 2",
        ),
    ],
)
def test_sop_bad_lines(tmp_path, line, pattern):
    base = make_sop_tree(tmp_path, 2, 1, 2, write_images=False)
    _edit_line(base / "Ebay_train.txt", 3, line)
    _raises(StanfordOnlineProducts, tmp_path, "train", pattern)


def test_sop_same_path_twice(tmp_path):
    base = make_sop_tree(tmp_path, 2, 1, 2, write_images=False)
    first_path = (base / "Ebay_train.txt").read_text().splitlines()[1].split()[3]
    _edit_line(base / "Ebay_train.txt", 4, f"99 2 2 {first_path}")
    _raises(StanfordOnlineProducts, tmp_path, "train", r"line 4: path .* is listed again")


# ---- In-Shop ------------------------------------------------------------------------------------
def test_inshop_image_listed_twice(tmp_path):
    base = make_inshop_tree(tmp_path, 2, 2, write_images=False)
    path = base / "Eval" / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    name, item, _ = lines[2].split()
    lines[3] = f"{name} {item} gallery"  # the same image again, now in another split
    path.write_text("\n".join(lines) + "\n")
    _raises(
        InShop, tmp_path, "query", r"list_eval_partition\.txt, line 4: image .* is listed again"
    )
