"""Smoke test of reproduce/benchmarks/precision_speed.py in its quick mode (batch 2, 64 px, one
step): every contender trains both models with the stack's own switches, the proxies stay
float32, the JSON and the table are written. ``torch.compile`` runs with the eager backend here
(the wiring, not Inductor's build time). No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures.benchmarks import load_benchmark


def load_script() -> Any:
    return load_benchmark("precision_speed")


def test_quick_run_times_every_contender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **_: real_compile(module, backend="eager"))
    bench = load_script()
    out = tmp_path / "precision_speed.json"
    assert bench.main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["device"], result["steps"], result["threads"]) == ("cpu", 1, 1)
    rows = {(r["model"], r["contender"]): r for r in result["results"]}
    assert set(rows) == {
        (m, c) for m in ("omniglot_small_cnn", "bn_inception") for c in bench.CONTENDERS
    }
    for (_, contender), row in rows.items():
        assert "error" not in row, row
        assert row["batch"] == 2 and len(row["times_s"]) == 1 and row["median_step_s"] > 0
        assert row["loss_finite"] and row["proxies_dtype"] == "torch.float32"
        assert row["precision"] == ("bf16" if contender == "bf16" else "fp32")
        assert row["ratio_to_fp32"] > 0
    assert rows[("omniglot_small_cnn", "fp32")]["input_shape"] == [1, 28, 28]
    assert rows[("bn_inception", "fp32")]["input_shape"] == [3, 64, 64]
    assert rows[("bn_inception", "fp32")]["ratio_to_fp32"] == 1.0
    assert "| bn_inception | 2 | channels_last |" in capsys.readouterr().out


def test_a_failing_contender_is_recorded_and_the_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_compiler(module: Any, **_: Any) -> Any:
        raise RuntimeError("Dynamo is not supported here")

    monkeypatch.setattr(torch, "compile", no_compiler)
    bench = load_script()
    out = tmp_path / "p.json"
    args = ["--quick", "--models", "omniglot_small_cnn", "--contenders", "compile"]
    assert bench.main([*args, "--threads", "1", "--out", str(out)]) == 0
    fp32, compiled = json.loads(out.read_text())["results"]
    assert fp32["contender"] == "fp32" and fp32["ratio_to_fp32"] == 1.0  # always the reference
    assert compiled["error"].startswith("CompileError: train.compile=true: torch.compile failed")
