"""One record per data set: names and aliases, the data.* keys and their checks, the K lists and
paper numbers, and the views other modules import (presets, paper_numbers, BUILDERS)."""

from __future__ import annotations

import pytest

from pml_proxy_anchor.data import (
    BUILDERS,
    CUB200,
    DATASET_CLASSES,
    DATASETS,
    PUBLISHED,
    Cars196,
    DataConfigError,
    InShop,
    StanfordOnlineProducts,
    build_datasets,
    data_defaults,
    get_dataset_class,
    lookup,
)
from pml_proxy_anchor.data.omniglot import build_omniglot
from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.evaluation import presets
from pml_proxy_anchor.training import paper_numbers

# docs/paper.md section 5, written out independently of the records
PAPER = {
    ("cub200", "bn_inception"): {
        "paper": (68.4, 79.2, 86.8, 91.6),
        "authors": (69.1, 78.9, 86.1, 91.2),
    },
    ("cars196", "bn_inception"): {
        "paper": (86.1, 91.7, 95.0, 97.3),
        "authors": (86.4, 91.9, 95.0, 97.0),
    },
    ("sop", "bn_inception"): {
        "paper": (79.1, 90.8, 96.2, 98.7),
        "authors": (79.2, 90.7, 96.2, 98.6),
    },
    ("inshop", "bn_inception"): {
        "paper": (91.5, 98.1, 98.8, 99.1, 99.2),
        "authors": (91.9, 98.1, 98.7, 99.0, 99.1),
    },
    ("cub200", "resnet50"): {"authors": (69.9, 79.6, 86.6, 91.4)},
    ("cars196", "resnet50"): {"authors": (87.7, 92.7, 95.5, 97.3)},
}
STARRED = {
    ("cub200", "bn_inception", "paper", 8),
    ("cars196", "bn_inception", "paper", 8),
    ("sop", "bn_inception", "paper", 1000),
    ("inshop", "bn_inception", "paper", 30),
    ("inshop", "bn_inception", "paper", 40),
}
PAPER_KS = {
    "cub200": (1, 2, 4, 8),
    "cars196": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40),
}


def test_the_table_and_its_views():
    assert list(DATASETS) == ["cub200", "cars196", "sop", "inshop", "folder", "omniglot"]
    assert set(BUILDERS) == set(DATASETS)
    assert DATASET_CLASSES == {
        "cub200": CUB200,
        "cars196": Cars196,
        "sop": StanfordOnlineProducts,
        "inshop": InShop,
    }
    assert set(PUBLISHED) == set(DATASET_CLASSES)
    assert {n: r.protocol for n, r in DATASETS.items()} == {
        "cub200": "self_retrieval",
        "cars196": "self_retrieval",
        "sop": "self_retrieval",
        "inshop": "query_gallery",
        "folder": "self_retrieval",
        "omniglot": "self_retrieval",
    }
    with pytest.raises(AttributeError):  # frozen
        DATASETS["cub200"].k_values = (1,)  # type: ignore[misc]


def test_k_values_and_paper_numbers_are_the_papers():
    assert presets.PAPER_K_VALUES == paper_numbers.K_VALUES == PAPER_KS
    assert paper_numbers.PAPER_NUMBERS == PAPER
    assert paper_numbers.UNCONFIRMED == STARRED
    for (name, _), sources in PAPER.items():  # one value per K
        assert all(len(v) == len(PAPER_KS[name]) for v in sources.values())
    assert paper_numbers.reference_numbers("CUB_200_2011", "resnet50") == {
        "authors": {
            "recall_at_1": 69.9,
            "recall_at_2": 79.6,
            "recall_at_4": 86.6,
            "recall_at_8": 91.4,
        }
    }
    assert paper_numbers.reference_numbers("omniglot", "small_cnn") == {}
    assert paper_numbers.reference_numbers("nope", "resnet50") == {}
    assert not paper_numbers.is_confirmed("In-Shop", "bn_inception", "paper", 40)
    assert paper_numbers.is_confirmed("inshop", "bn_inception", "paper", 20)


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("cub200", "cub200"),
        ("CUB_200_2011", "cub200"),
        ("CUB-200-2011", "cub200"),
        ("cub", "cub200"),
        ("Cars", "cars196"),
        ("stanford-cars", "cars196"),
        ("SOP", "sop"),
        ("Stanford Online Products", "sop"),
        ("In-Shop", "inshop"),
        ("in_shop_clothes_retrieval", "inshop"),
        ("DeepFashion-InShop", "inshop"),
        ("Omniglot", "omniglot"),
        ("image-folder", "folder"),
    ],
)
def test_names_and_aliases_resolve_everywhere(spelling, name):
    assert lookup(spelling).name == name
    assert presets.canonical_dataset_name(spelling) == name
    assert presets.recall_k_values(spelling) == PAPER_KS.get(name, (1, 2, 4, 8))


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        ("cub2000", r"unknown data.name 'cub2000'\. Did you mean 'cub200'\?"),
        ("stanford_online_product", r"Did you mean 'sop'\?"),
        ("xyz", r"unknown data.name 'xyz'\. Known data sets: cub200, cars196, sop"),
        (5, r"data.name must be a data set name \(a string\).*got 5"),
        (None, r"data.name must be a data set name"),
    ],
)
def test_unknown_names(bad, pattern):
    with pytest.raises(DataConfigError, match=pattern) as info:
        lookup(bad)
    assert isinstance(info.value, UserError)


def test_unknown_preset_name_falls_back_to_the_default_ks():
    assert presets.recall_k_values("my_birds") == (1, 2, 4, 8)
    assert presets.canonical_dataset_name("my_birds") is None


def test_data_check_names_only_published_sets():
    assert get_dataset_class("in-shop") is InShop
    with pytest.raises(
        DataConfigError, match=r"'omniglot' \(Omniglot \(bundled\)\) cannot be used"
    ):
        get_dataset_class("omniglot")


def test_data_defaults_list_every_key():
    assert data_defaults("CUB") == {
        "name": "cub200",
        "root": None,
        "skip_corrupt": False,
        "crop_size": None,
        "resize_size": None,
        "image_size": None,
    }
    for name in ("cars196", "sop", "inshop", "folder"):
        assert data_defaults(name)["skip_corrupt"] is False
    assert {"train_root", "query_root"} <= set(data_defaults("folder"))
    assert data_defaults("omniglot") == {
        "name": "omniglot",
        "root": None,
        "setting": "zero_shot",
        "image_size": 28,
        "augment": True,
        "class_rotations": 1,
        "max_classes": None,
    }


def test_a_section_filled_with_the_defaults_builds_and_skip_corrupt_works(cub_root):
    """The form a config loader gives (every key present) builds; skip_corrupt is honoured."""
    section = {**data_defaults("cub200"), "root": str(cub_root), "skip_corrupt": True}
    splits = build_datasets(section, "resnet50")
    assert splits["train"].skip_corrupt is True and splits["train"].num_skipped == 0
    assert data_defaults("omniglot") == DATASETS["omniglot"].read_config(data_defaults("omniglot"))


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        (
            "skip_corrupt",
            "false",
            r"data.skip_corrupt of data set 'cub200': expected true or false",
        ),
        ("skip_corrupt", 1, r"data.skip_corrupt .*expected true or false, got 1"),
        ("crop_size", -224, r"data.crop_size .*expected an integer >= 1 or null, got -224"),
        ("crop_size", 22.5, r"data.crop_size .*got 22.5"),
        ("crop_size", "224", r"data.crop_size .*got '224'"),
        ("root", 7, r"data.root .*expected a path \(a string\) or null, got 7"),
    ],
)
def test_bad_values_of_image_data_sets(cub_root, key, value, pattern):
    with pytest.raises(DataConfigError, match=pattern):
        build_datasets({"name": "cub200", "root": str(cub_root), key: value}, "resnet50")


def test_whole_float_sizes_are_integers(cub_root):
    splits = build_datasets(
        {"name": "cub200", "root": str(cub_root), "crop_size": 64.0}, "resnet50"
    )
    assert splits["test"][0][0].shape == (3, 64, 64)


@pytest.mark.parametrize(
    ("section", "pattern"),
    [
        (
            {"augmnet": False},
            r"unknown key data.augmnet for data set 'omniglot'\. Did you mean data.augment\?",
        ),
        ({"class_rotation": 4}, r"Did you mean data.class_rotations\?"),
        ({"skip_corrupt": True}, r"unknown key data.skip_corrupt for data set 'omniglot'"),
        ({"augment": "false"}, r"data.augment of data set 'omniglot': expected true or false"),
        ({"class_rotations": 3}, r"data.class_rotations .*expected one of 1, 2, 4, got 3"),
        ({"class_rotations": 2.5}, r"data.class_rotations .*got 2.5"),
        ({"class_rotations": True}, r"data.class_rotations .*got True"),
        ({"image_size": 4}, r"data.image_size .*expected an integer >= 8, got 4"),
        ({"max_classes": 1}, r"data.max_classes .*expected an integer >= 2 or null, got 1"),
        ({"setting": "few_shot"}, r"data.setting .*expected one of 'zero_shot', 'all'"),
    ],
)
def test_omniglot_keys_are_checked(section, pattern):
    with pytest.raises(DataConfigError, match=pattern):
        build_datasets({"name": "omniglot", **section}, "small_cnn")
    with pytest.raises(DataConfigError, match=pattern):
        build_omniglot(section)


def test_omniglot_setting_accepts_a_dash():
    splits = build_omniglot({"setting": "zero-shot", "max_classes": 2})
    assert (splits["train"].num_classes, splits["test"].num_classes) == (2, 2)


def test_data_section_must_be_a_mapping():
    with pytest.raises(DataConfigError, match="data section must be a mapping"):
        build_datasets(["cub200"], "resnet50")  # type: ignore[arg-type]
