"""Smoke test of reproduce/benchmarks/trainer_overhead.py in its quick mode: our stack (built as
``run(cfg)`` builds it) and the bare loop both train and evaluate, and the JSON is written. No
timing is asserted."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "reproduce" / "benchmarks" / "trainer_overhead.py"


def test_quick_run_times_both_contenders(tmp_path: Path) -> None:
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))
    bench = importlib.import_module("trainer_overhead")
    out = tmp_path / "overhead.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["iterations_per_epoch"] == 3 and result["repeats"] == 2
    for name in ("stack", "bare", "stack_end", "bare_eval"):
        assert len(result["times_s"][name]) == 2
        assert all(t > 0 for t in result["times_s"][name])
    assert "our stack (ProxyAnchorTrainer)" in result["table"]
