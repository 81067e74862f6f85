"""check_dataset on fixture trees: found vs expected counts, missing image files counted and
listed, and with decode=True truncated or garbage image files reported by path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pml_proxy_anchor.data import DataConfigError, StanfordOnlineProducts, check_dataset
from tests.fixtures.datasets import make_sop_tree, write_corrupt_image, write_truncated_jpeg


def test_counts_and_missing_files(tmp_path):
    base = make_sop_tree(tmp_path, 2, 3, (1, 2, 1, 1, 2))
    missing = base / "cabinet_final" / "100000002_1.JPG"
    missing.unlink()
    report = check_dataset("sop", tmp_path)
    train, test = report.splits
    assert (train.split, train.found_images, train.found_classes) == ("train", 3, 2)
    assert (train.expected_images, train.expected_classes) == (59551, 11318)
    assert (test.found_images, test.found_classes, test.checked_files) == (4, 3, 4)
    assert (train.checked_files, train.missing_files, test.missing_files) == (3, 1, 0)
    assert train.missing_examples == [str(missing)]
    assert not report.ok and not train.ok
    text = str(report)
    assert "59,551" in text and "1 of 3" in text and f"missing (train): {missing}" in text
    assert json.loads(json.dumps(report.to_dict()))["splits"][0]["missing_files"] == 1


def test_sample_and_none_modes(tmp_path):
    make_sop_tree(tmp_path, 2, 2, 3)
    shutil.rmtree(tmp_path / "Stanford_Online_Products" / "bicycle_final")
    sample = check_dataset("sop", tmp_path, images="sample", sample_size=2)
    assert [s.checked_files for s in sample.splits] == [2, 2]
    none = check_dataset("sop", tmp_path, images="none")
    assert [s.checked_files for s in none.splits] == [0, 0]
    assert "not checked" in str(none)
    with pytest.raises(ValueError, match="images='some'"):
        check_dataset("sop", tmp_path, images="some")


@pytest.fixture()
def damaged_sop(tmp_path):
    """SOP tree: two truncated JPEGs (end marker cut; half cut), one garbage file, one missing."""
    base = make_sop_tree(tmp_path, 2, 2, 2)
    train = StanfordOnlineProducts(tmp_path, split="train").paths
    test = StanfordOnlineProducts(tmp_path, split="test").paths
    full = write_truncated_jpeg(train[0], cut_bytes=2, seed=1)
    write_truncated_jpeg(test[1], cut_bytes=len(full) // 2, seed=2)
    write_corrupt_image(train[2], "garbage")
    Path(train[3]).unlink()
    return base, train, test


def test_decode_finds_truncated_and_garbage_files_by_path(damaged_sop, capsys):
    base, train, test = damaged_sop
    plain = check_dataset("sop", base)  # existence only: the damaged files look fine
    assert [s.missing_files for s in plain.splits] == [1, 0]
    assert [s.corrupt_files for s in plain.splits] == [0, 0] and not plain.decoded

    report = check_dataset("sop", base, decode=True, workers=2)
    tr, te = report.splits
    assert [p for p, _ in tr.corrupt] == [train[0], train[2]]  # in file order
    assert [p for p, _ in te.corrupt] == [test[1]]
    assert "truncated" in tr.corrupt[0][1] and "truncated" in te.corrupt[0][1]
    assert "cannot identify image file" in tr.corrupt[1][1]
    assert (tr.missing_files, tr.missing_examples, tr.decoded_files) == (1, [train[3]], 3)
    assert (te.decoded_files, te.corrupt_files) == (4, 1)
    assert report.corrupt_paths == [train[0], train[2], test[1]]
    assert not report.ok
    text = str(report)
    assert "files corrupt" in text and "2 of 3" in text
    assert f"corrupt (train): {train[0]} (OSError: image file is truncated" in text
    assert f"corrupt (test): {test[1]}" in text
    assert "data.skip_corrupt=true" in text
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["decoded"] is True and as_json["splits"][0]["corrupt_files"] == 2
    assert as_json["splits"][0]["corrupt"][0][0] == train[0]
    assert "decoding images" in capsys.readouterr().err  # the progress bar


def test_decode_on_one_thread_gives_the_same_report(damaged_sop):
    base, _, _ = damaged_sop
    one = check_dataset("sop", base, decode=True, workers=1).to_dict()
    three = check_dataset("sop", base, decode=True, workers=3).to_dict()
    assert one == three


def test_decode_on_clean_data_is_ok(tmp_path):
    make_sop_tree(tmp_path, 1, 1, 2)
    report = check_dataset("sop", tmp_path, decode=True)
    assert [(s.decoded_files, s.corrupt_files, s.missing_files) for s in report.splits] == [
        (2, 0, 0),
        (2, 0, 0),
    ]
    assert "corrupt (" not in str(report)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"decode": True, "images": "none"}, r"images='none' checks none"),
        ({"decode": "yes"}, r"decode must be True or False"),
        ({"decode": True, "workers": 0}, r"workers must be an integer >= 1, got 0"),
        ({"images": "sample", "sample_size": 0}, r"sample_size must be an integer >= 1"),
        ({"max_examples": -1}, r"max_examples must be an integer >= 0"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, pattern):
    make_sop_tree(tmp_path, 1, 1, 1, write_images=False)
    with pytest.raises(DataConfigError, match=pattern):
        check_dataset("sop", tmp_path, **kwargs)
