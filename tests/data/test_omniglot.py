"""Tests of the bundled Omniglot data set, its split, transforms and checksum."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pml_proxy_anchor.data.omniglot import (
    BUNDLE_PATH,
    TEST_ALPHABETS,
    TRAIN_ALPHABETS,
    BundleChecksumError,
    Omniglot,
    OmniglotTransform,
    build_omniglot,
    load_bundle,
    omniglot_transform,
)
from pml_proxy_anchor.errors import UserError

EXPECTED_CHARACTERS = {
    "Balinese": 24,
    "Early_Aramaic": 22,
    "Greek": 24,
    "Japanese_(katakana)": 47,
    "Korean": 40,
    "Latin": 26,
    "Sanskrit": 42,
    "Tagalog": 17,
}


@pytest.fixture(scope="module")
def splits() -> dict[str, Omniglot]:
    return {split: Omniglot(split) for split in ("train", "test", "all")}


def test_bundle_counts() -> None:
    bundle = load_bundle()
    assert len(bundle) == 4840
    assert bundle.images.shape == (4840, 105, 105)
    assert bundle.images.dtype == bool
    keys = set(zip(bundle.alphabets, bundle.characters, bundle.file_names))
    assert len(keys) == 4840  # deduplicated
    per_alphabet = {
        alphabet: len(set(bundle.characters[bundle.alphabets == alphabet]))
        for alphabet in np.unique(bundle.alphabets)
    }
    assert per_alphabet == EXPECTED_CHARACTERS
    # Mostly white background with some ink in every image, as in the Omniglot PNGs.
    ink = (~bundle.images).mean(axis=(1, 2))
    assert ink.min() > 0.0 and ink.max() < 0.5


def test_bundle_manifest_matches() -> None:
    manifest = json.loads(BUNDLE_PATH.with_suffix(".json").read_text())
    assert manifest["num_images"] == 4840
    assert manifest["num_characters"] == 242
    assert manifest["bytes"] == BUNDLE_PATH.stat().st_size
    assert BUNDLE_PATH.stat().st_size < 3_000_000
    assert (BUNDLE_PATH.parent / "OMNIGLOT_LICENSE").is_file()


@pytest.mark.parametrize(
    ("split", "alphabets", "classes"),
    [("train", TRAIN_ALPHABETS, 117), ("test", TEST_ALPHABETS, 125), ("all", None, 242)],
)
def test_split_counts(splits, split, alphabets, classes) -> None:
    data = splits[split]
    assert data.num_classes == classes
    assert len(data) == classes * 20
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(np.unique(data.labels), np.arange(classes))
    np.testing.assert_array_equal(np.bincount(data.labels), np.full(classes, 20))
    if alphabets is not None:
        assert data.alphabets == sorted(alphabets)
    assert set(data.class_alphabets) == set(data.alphabets)
    assert len(set(data.characters)) == classes
    # every image's path names the character of its label
    for idx in range(0, len(data), 97):
        assert data.paths[idx].startswith(data.characters[data.labels[idx]] + "/")


def test_splits_are_disjoint_and_cover_all(splits) -> None:
    train, test, both = splits["train"], splits["test"], splits["all"]
    assert not set(train.alphabets) & set(test.alphabets)
    assert not set(train.characters) & set(test.characters)
    assert set(train.paths) | set(test.paths) == set(both.paths)
    assert len(both.alphabets) == 8


def test_item_without_transform_is_original_image(splits) -> None:
    data = splits["test"]
    image, label = data[45]
    assert isinstance(image, Image.Image)
    assert image.size == (105, 105) and image.mode == "L"
    assert label == data.labels[45] == 2
    np.testing.assert_array_equal(np.asarray(image), data.raw_image(45))
    assert data.raw_images([0, 45]).shape == (2, 105, 105)


def test_test_transform_shapes_and_values(splits) -> None:
    transform = omniglot_transform(train=False, size=28)
    data = splits["train"]
    x = transform(data[0][0])
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # ink (black in the PNG) becomes high values; the border is background
    assert float(x.max()) > 0.5
    assert float(x[0, 0].abs().max()) == 0.0
    # bundled array input gives the same result as the PIL image
    torch.testing.assert_close(transform(load_bundle().images[0]), x, rtol=0, atol=0)
    # deterministic without augmentation
    torch.testing.assert_close(transform(data[0][0]), x, rtol=0, atol=0)


@pytest.mark.parametrize("size_in", [(105, 105), (40, 60), (300, 300)])
@pytest.mark.parametrize("mode", ["1", "L", "RGB", "RGBA"])
def test_transform_accepts_pil_of_any_size_and_mode(size_in, mode) -> None:
    image = Image.new("L", size_in, 255)
    image.paste(0, (size_in[0] // 4, size_in[1] // 4, size_in[0] // 2, size_in[1] // 2))
    image = image.convert(mode)
    for train in (False, True):
        x = OmniglotTransform(train=train, size=32)(image)
        assert x.shape == (1, 32, 32)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 + 1e-6
        assert float(x.sum()) > 0.0


def test_train_transform_is_random_and_keeps_ink(splits) -> None:
    image = splits["train"][3][0]
    torch.manual_seed(0)
    transform = omniglot_transform(train=True, size=56)
    a, b = transform(image), transform(image)
    assert a.shape == b.shape == (1, 56, 56)
    assert not torch.equal(a, b)
    reference = omniglot_transform(train=False, size=56)(image).sum()
    # rotation <= 10 deg, scale 0.9-1.1, shift <= 4 px at 56 px keep most of the ink
    assert 0.6 * reference < a.sum() < 1.5 * reference


def test_transform_rejects_bad_input() -> None:
    transform = omniglot_transform(train=False, size=28)
    with pytest.raises(ValueError, match="2-D"):
        transform(np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        transform(np.zeros((28, 28), dtype=np.float32))
    with pytest.raises(TypeError, match="PIL image"):
        transform("not an image")
    with pytest.raises(ValueError, match="size"):
        OmniglotTransform(train=False, size=4)


def test_bad_split() -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        Omniglot("validation")


def test_build_omniglot_settings() -> None:
    zero_shot = build_omniglot({"name": "omniglot", "image_size": 40})
    assert set(zero_shot) == {"train", "test"}
    assert zero_shot["train"].num_classes == 117 and zero_shot["test"].num_classes == 125
    assert zero_shot["train"].transform.train and not zero_shot["test"].transform.train
    assert zero_shot["test"][0][0].shape == (1, 40, 40)
    everything = build_omniglot({"setting": "all"})
    assert everything["train"].num_classes == everything["test"].num_classes == 242
    assert everything["test"][0][0].shape == (1, 28, 28)  # default size
    with pytest.raises(ValueError, match="zero_shot"):
        build_omniglot({"setting": "few_shot"})


def _copy_bundle(tmp_path: Path) -> Path:
    target = tmp_path / BUNDLE_PATH.name
    shutil.copyfile(BUNDLE_PATH, target)
    shutil.copyfile(BUNDLE_PATH.with_suffix(".json"), target.with_suffix(".json"))
    return target


def test_copied_bundle_loads(tmp_path) -> None:
    data = Omniglot("test", bundle_path=_copy_bundle(tmp_path))
    assert len(data) == 2500


def test_corrupted_bundle_is_detected(tmp_path) -> None:
    target = _copy_bundle(tmp_path)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(BundleChecksumError, match="corrupted") as info:
        Omniglot("train", bundle_path=target)
    message = str(info.value)
    assert str(target) in message
    # the fix a pip user can follow comes first; the repository tool is named as the clone's way
    assert "Fix: reinstall the package (pip install --force-reinstall pml-proxy-anchor)" in message
    assert "python tools/" not in message and "source repository" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)


def test_missing_bundle_or_manifest(tmp_path) -> None:
    with pytest.raises(BundleChecksumError, match="does not exist.*Fix: reinstall the package"):
        load_bundle(tmp_path / "nothing.npz")
    target = _copy_bundle(tmp_path)
    target.with_suffix(".json").unlink()
    with pytest.raises(BundleChecksumError, match="Manifest"):
        load_bundle(target)


@pytest.mark.parametrize(("rotations", "turns"), [(2, [0, 2]), (4, [0, 1, 2, 3])])
def test_class_rotations(splits, rotations, turns) -> None:
    base = splits["train"]
    rotated = Omniglot("train", class_rotations=rotations)
    assert len(rotated) == rotations * len(base)
    assert rotated.num_classes == rotations * 117
    np.testing.assert_array_equal(np.bincount(rotated.labels), np.full(rotations * 117, 20))
    n = len(base)
    for variant, quarter_turns in enumerate(turns):
        idx = variant * n + 30
        assert rotated.labels[idx] == base.labels[30] + variant * 117
        expected = np.rot90(base.raw_image(30), quarter_turns)
        np.testing.assert_array_equal(rotated.raw_image(idx), expected)
        np.testing.assert_array_equal(np.asarray(rotated[idx][0]), expected)
        suffix = "" if quarter_turns == 0 else f"@rot{90 * quarter_turns}"
        assert rotated.characters[rotated.labels[idx]] == base.characters[base.labels[30]] + suffix
        assert rotated.paths[idx] == base.paths[30] + suffix
    assert not np.array_equal(rotated.raw_image(n + 30), base.raw_image(30))
    with pytest.raises(ValueError, match="class_rotations"):
        Omniglot("train", class_rotations=3)


def test_build_omniglot_class_rotations() -> None:
    built = build_omniglot({"class_rotations": 4, "image_size": 28})
    assert built["train"].num_classes == 468
    assert built["test"].num_classes == 125  # evaluation never rotates
