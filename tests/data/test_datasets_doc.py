"""reproduce/DATASETS.md names only data sets and data.* keys that the records know."""

from __future__ import annotations

import re
from pathlib import Path

from pml_proxy_anchor.data import DATASETS, lookup

DOC = Path(__file__).resolve().parents[2] / "reproduce" / "DATASETS.md"
MISSPELT_ON_PURPOSE = {"skip_corupt"}  # the doc's example of a typo that is refused


def test_every_data_set_heading_names_a_record():
    names = re.findall(r"^## .*\(`name: (\w+)`\)", DOC.read_text(), flags=re.M)
    assert sorted(lookup(n).name for n in names) == sorted(DATASETS)


def test_every_data_key_in_the_doc_is_known():
    keys = set(re.findall(r"(?<![\w.])data\.(\w+)", DOC.read_text())) - MISSPELT_ON_PURPOSE
    known = {"name"} | {k for record in DATASETS.values() for k in record.options}
    assert keys and keys <= known, sorted(keys - known)
    assert "skip_corrupt" in keys


def test_the_documented_counts_are_the_loaders():
    text = DOC.read_text()
    for record in DATASETS.values():
        if record.dataset_class is None:
            continue
        for n_images, _ in record.dataset_class.EXPECTED_COUNTS.values():
            assert f"{n_images:,} images" in text, (record.name, n_images)
