"""Smoke test of reproduce/benchmarks/trainer_overhead.py in its quick mode: our stack (built as
``run(cfg)`` builds it) and the bare loop both train and evaluate, and the JSON is written. No
timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.benchmarks import load_benchmark


def test_quick_run_times_both_contenders(tmp_path: Path) -> None:
    bench = load_benchmark("trainer_overhead")
    out = tmp_path / "overhead.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["iterations_per_epoch"] == 3 and result["repeats"] == 2
    for name in ("stack", "bare", "stack_end", "bare_eval"):
        assert len(result["times_s"][name]) == 2
        assert all(t > 0 for t in result["times_s"][name])
    assert "our stack (ProxyAnchorTrainer)" in result["table"]
