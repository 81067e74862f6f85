"""Shared fixture trees for the data tests (built once per session, read-only for the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.datasets import (
    CARS_CLASSES,
    CARS_COUNTS,
    CUB_CLASSES,
    CUB_COUNTS,
    make_cars_tree,
    make_cub_tree,
    make_inshop_tree,
    make_sop_tree,
)


@pytest.fixture(scope="session")
def cub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parent of a CUB_200_2011 tree whose image_class_labels.txt is shuffled."""
    root = tmp_path_factory.mktemp("cub")
    make_cub_tree(
        root, CUB_CLASSES, CUB_COUNTS, odd_modes=True, shuffle_labels_file=True, image_size=12
    )
    return root


@pytest.fixture(scope="session")
def cars_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cars")
    make_cars_tree(root, CARS_CLASSES, CARS_COUNTS, seed=3)
    return root


@pytest.fixture(scope="session")
def sop_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sop")
    make_sop_tree(root, train_classes=3, test_classes=4, images_per_class=(2, 1, 3, 2, 2, 1, 1))
    return root


@pytest.fixture(scope="session")
def inshop_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test item 0 has no query image, so a query-only mapping would differ from the shared one."""
    root = tmp_path_factory.mktemp("inshop")
    make_inshop_tree(
        root,
        train_items=3,
        test_items=3,
        train_images_per_item=(2, 1, 2),
        query_images_per_item=(0, 1, 2),
        gallery_images_per_item=(1, 2, 1),
    )
    return root
