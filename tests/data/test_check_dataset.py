"""check_dataset on fixture trees: found vs SPEC counts, missing image files counted and listed."""

from __future__ import annotations

import json
import shutil

import pytest

from pml_proxy_anchor.data import check_dataset
from tests.fixtures.datasets import make_sop_tree


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
