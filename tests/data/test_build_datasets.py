"""build_datasets: the data config section -> splits with the backbone's transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pml_proxy_anchor.data import (
    CUB200,
    DataConfigError,
    DatasetNotFoundError,
    ImageFolderDataset,
    InShop,
    build_datasets,
)
from tests.fixtures.datasets import make_image_folder


def test_cub_splits_with_bn_inception_transforms(cub_root):
    splits = build_datasets({"name": "cub200", "root": str(cub_root)}, "bn_inception")
    assert set(splits) == {"train", "test"}
    assert all(isinstance(ds, CUB200) for ds in splits.values())
    img, label = splits["test"][0]
    assert img.shape == (3, 224, 224) and img.dtype == torch.float32
    assert label == int(splits["test"].labels[0])
    again, _ = splits["test"][0]
    torch.testing.assert_close(img, again, atol=0, rtol=0)  # test transform is deterministic
    assert "RandomResizedCrop" in repr(splits["train"].transform)
    assert "CenterCrop" in repr(splits["test"].transform)


def test_inshop_has_query_and_gallery(inshop_root):
    cfg = OmegaConf.create({"name": "In-Shop", "root": str(inshop_root), "crop_size": 64})
    splits = build_datasets(cfg, "resnet50")
    assert set(splits) == {"train", "query", "gallery"}
    assert all(isinstance(ds, InShop) for ds in splits.values())
    assert splits["query"][0][0].shape == (3, 64, 64)
    np.testing.assert_array_equal(splits["query"].class_ids, splits["gallery"].class_ids)


def test_image_folder_train_test_and_query_gallery(tmp_path):
    make_image_folder(tmp_path / "train", ("a", "b"), 2)
    make_image_folder(tmp_path / "test", ("c", "d", "e"), 1)
    splits = build_datasets({"name": "folder", "root": str(tmp_path)}, "resnet50")
    assert set(splits) == {"train", "test"}
    assert isinstance(splits["train"], ImageFolderDataset)
    assert (splits["train"].num_classes, splits["test"].num_classes) == (2, 3)
    qg = build_datasets(
        {
            "name": "folder",
            "train_root": str(tmp_path / "train"),
            "query_root": str(tmp_path / "test"),
            "gallery_root": str(tmp_path / "test"),
        },
        "small_cnn",
    )
    assert set(qg) == {"train", "query", "gallery"}
    assert qg["gallery"][0][0].shape == (1, 28, 28)


def test_config_errors(tmp_path, cub_root):
    with pytest.raises(
        DataConfigError, match=r"unknown key data.skip_corupt .*Did you mean data.skip_corrupt\?"
    ):
        build_datasets({"name": "cub200", "root": str(cub_root), "skip_corupt": True}, "resnet50")
    with pytest.raises(ValueError, match="data.root is not set"):
        build_datasets({"name": "sop"}, "bn_inception")
    with pytest.raises(ValueError, match="data.name is not set"):
        build_datasets({"root": "x"}, "bn_inception")
    with pytest.raises(DataConfigError, match="Did you mean 'cars196'"):
        build_datasets({"name": "cars197", "root": "x"}, "bn_inception")
    with pytest.raises(DatasetNotFoundError, match="Stanford Online Products"):
        build_datasets({"name": "sop", "root": str(tmp_path)}, "bn_inception")
    with pytest.raises(ValueError, match="data.train_root is not set"):
        build_datasets({"name": "folder"}, "resnet50")


def test_omniglot_entry_delegates_to_the_omniglot_module():
    from pml_proxy_anchor.data.omniglot import build_omniglot

    splits = build_datasets({"name": "omniglot"}, "small_cnn")
    direct = build_omniglot({})
    assert set(splits) == {"train", "test"}
    assert {k: len(v) for k, v in splits.items()} == {k: len(v) for k, v in direct.items()}


@pytest.mark.parametrize("name", ["cub200", "omniglot"])
def test_eval_transform_is_the_test_splits_transform(name, cub_root):
    from PIL import Image

    from pml_proxy_anchor.data import eval_transform

    cfg = (
        {"name": name, "root": str(cub_root), "crop_size": 64}
        if name == "cub200"
        else {
            "name": name,
            "image_size": 20,
        }
    )
    backbone = "resnet50" if name == "cub200" else "small_cnn"
    split_transform = build_datasets(cfg, backbone)["test"].transform
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 70, 3), np.uint8))
    expected = split_transform(image)
    assert expected.shape[-2:] == ((64, 64) if name == "cub200" else (20, 20))
    torch.testing.assert_close(eval_transform(cfg, backbone)(image), expected, atol=0, rtol=0)
