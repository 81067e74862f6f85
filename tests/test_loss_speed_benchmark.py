"""Smoke test of reproduce/benchmarks/loss_speed.py on its tiny shape: every contender is run,
timed in rounds and measured, and the JSON and table are written. No timing is asserted."""

from __future__ import annotations

import json

from tests.fixtures.benchmarks import load_benchmark


def load_script():
    return load_benchmark("loss_speed")


def test_quick_run_writes_every_contender(tmp_path, capsys):
    bench = load_script()
    out = tmp_path / "loss_speed.json"
    args = ["--shapes", "tiny", "--repeats", "4", "--rounds", "2", "--warmup", "1"]
    assert bench.main([*args, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    rows = {r["contender"]: r for r in results["results"]}
    assert set(rows) == set(bench.CONTENDERS)
    for row in rows.values():
        assert len(row["times_s"]) == 4 and all(t > 0 for t in row["times_s"])
        assert row["peak_extra_mb"] >= 0, row
    printed = capsys.readouterr().out
    assert "| tiny (32, 50, 16) | ours |" in printed and results["table_markdown"] in printed


def test_rounds_split_the_repeats():
    bench = load_script()
    calls: list[str] = []
    runs = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    times = bench.time_in_rounds(runs, "cpu", warmup=1, repeats=5, rounds=2)
    assert [len(t) for t in times.values()] == [5, 5]
    # round 1: a (1 warm-up + 3), b (1 + 3); round 2: a (1 + 2), b (1 + 2)
    assert calls == ["a"] * 4 + ["b"] * 4 + ["a"] * 3 + ["b"] * 3
