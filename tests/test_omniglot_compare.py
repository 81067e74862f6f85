"""Smoke test of the Omniglot loss comparison (reproduce/omniglot_compare.py) on tiny settings."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "reproduce" / "omniglot_compare.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = [
    "model.channels=[8, 8, 8, 8]",
    "model.embedding_size=16",
    "data.class_rotations=1",
    "train.epochs=1",
    "train.iterations_per_epoch=2",
    "train.batch_size=32",
]


@pytest.fixture(scope="module")
def compare_module():
    spec = importlib.util.spec_from_file_location("omniglot_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["omniglot_compare"] = module
    spec.loader.exec_module(module)
    return module


def test_two_losses_give_table_json_and_plots(compare_module, tmp_path: Path) -> None:
    # A proxy loss (random batches) and a pair loss without parameters (class-balanced sampler).
    result = compare_module.compare(
        ["proxy_anchor", "contrastive"], [3], tmp_path, overrides=TINY, jobs=1
    )
    table = (tmp_path / "compare.md").read_text()
    assert table == result["table"]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["loss", "proxy_anchor", "contrastive"]
    data = json.loads((tmp_path / "compare.json").read_text())
    for name in ("proxy_anchor", "contrastive"):
        entry = data["losses"][name]
        (run,) = entry["runs"]
        assert run["seed"] == 3 and run["epochs"] == [1]
        saved = json.loads((tmp_path / "runs" / f"{name}_lr0.001_s3" / "results.json").read_text())
        assert run["final"]["recall_at_1"] == saved["final"]["metrics"]["recall_at_1"]
        assert 0.0 <= run["final"]["recall_at_1"] <= run["final"]["recall_at_8"] <= 1.0
        assert entry["aggregate"]["recall_at_1"]["std"] == 0.0
    assert data["losses"]["contrastive"]["sampler"] == "MPerClassSampler(m=4)"
    assert data["losses"]["proxy_anchor"]["sampler"] == "random batches"
    for png in ("compare_r1_vs_epoch.png", "compare_r1_vs_seconds.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG_SIGNATURE
    # A second call reuses the finished runs instead of training them again.
    results = tmp_path / "runs" / "proxy_anchor_lr0.001_s3" / "results.json"
    before = results.stat().st_mtime_ns
    again = compare_module.compare(["proxy_anchor"], [3], tmp_path, overrides=TINY, jobs=1)
    assert results.stat().st_mtime_ns == before
    assert again["summary"]["proxy_anchor"]["runs"][0]["final"] == run_final(data, "proxy_anchor")


def run_final(data: dict, name: str) -> dict:
    return data["losses"][name]["runs"][0]["final"]


def test_epochs_to_fraction_and_spread(compare_module) -> None:
    assert compare_module.epochs_to_fraction([0.5, 0.80, 0.86, 0.9]) == 3  # 0.95 * 0.9 = 0.855
    assert compare_module.epochs_to_fraction([0.9, 0.5]) == 1
    mean, std = compare_module.mean_spread([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9, abs=1e-12)
    assert std == pytest.approx(0.1, abs=1e-12)


def test_unknown_loss_is_refused(compare_module, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown loss.*proxy_anchor"):
        compare_module.compare(["proxy_anchorr"], [1], tmp_path)
