"""Missing data: the error names the missing file, the expected layout and the download page."""

from __future__ import annotations

import os

import pytest

from pml_proxy_anchor.data import (
    CUB200,
    Cars196,
    DatasetNotFoundError,
    ImageFolderDataset,
    InShop,
    StanfordOnlineProducts,
    check_dataset,
    get_dataset_class,
)
from tests.fixtures.datasets import make_cub_tree, make_sop_tree

PAGES = {
    CUB200: "https://www.vision.caltech.edu/datasets/cub_200_2011/",
    Cars196: "https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
    StanfordOnlineProducts: "https://cvgl.stanford.edu/projects/lifted_struct/",
    InShop: "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html",
}
MARKERS = {
    CUB200: "images.txt",
    Cars196: "cars_annos.mat",
    StanfordOnlineProducts: "Ebay_train.txt",
    InShop: os.path.join("Eval", "list_eval_partition.txt"),
}


@pytest.mark.parametrize("cls", list(PAGES), ids=lambda c: c.__name__)
def test_missing_root(tmp_path, cls):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(DatasetNotFoundError) as info:
        cls(missing, split="train")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert f"data root folder not found: '{missing}'" in message
    assert "Expected layout under the data root:" in message
    assert PAGES[cls] in message


@pytest.mark.parametrize("cls", list(PAGES), ids=lambda c: c.__name__)
def test_empty_root_names_the_annotation_file(tmp_path, cls):
    with pytest.raises(DatasetNotFoundError) as info:
        cls(tmp_path, split="train")
    message = str(info.value)
    assert f"annotation file not found: '{tmp_path / MARKERS[cls]}'" in message
    assert MARKERS[cls].split(os.sep)[-1] in message.split("Expected layout")[1]  # in the layout
    assert PAGES[cls] in message


def test_second_cub_file_missing_is_named(tmp_path):
    base = make_cub_tree(tmp_path, (1, 101), 1, write_images=False)
    (base / "image_class_labels.txt").unlink()
    with pytest.raises(
        DatasetNotFoundError, match="annotation file not found: .*image_class_labels"
    ):
        CUB200(tmp_path, split="train")


def test_sop_test_file_missing_is_named(tmp_path):
    base = make_sop_tree(tmp_path, 1, 1, 1, write_images=False)
    (base / "Ebay_test.txt").unlink()
    assert len(StanfordOnlineProducts(tmp_path, split="train")) == 1
    with pytest.raises(DatasetNotFoundError, match=r"not found: .*Ebay_test\.txt"):
        StanfordOnlineProducts(tmp_path, split="test")


def test_missing_image_file_is_named_on_access(tmp_path):
    make_cub_tree(tmp_path, (1, 101), 2, write_images=False)
    ds = CUB200(tmp_path, split="train")  # counting needs no images
    with pytest.raises(DatasetNotFoundError) as info:
        ds[0]
    message = str(info.value)
    assert f"image file not found: '{ds.paths[0]}'" in message
    assert "images/001.Black_footed_Albatross" in message  # the expected layout
    assert "skip_corrupt=True" in message and PAGES[CUB200] in message


def test_check_dataset_propagates_missing_data(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cars_annos.mat"):
        check_dataset("cars196", tmp_path)


def test_unknown_split_and_name(tmp_path):
    make_cub_tree(tmp_path, (1, 101), 1, write_images=False)
    with pytest.raises(
        ValueError, match=r"unknown split 'query'; expected one of \['train', 'test'\]"
    ):
        CUB200(tmp_path, split="query")
    with pytest.raises(ValueError, match="Did you mean 'cub200'"):
        get_dataset_class("cub2000")
    assert get_dataset_class("CUB") is CUB200


def test_image_folder_missing_or_empty(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="image folder not found"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DatasetNotFoundError, match="image file not found"):
        ImageFolderDataset(tmp_path)
