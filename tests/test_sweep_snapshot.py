"""reproduce/sweep_snapshot.py keeps the finished jobs' small files and reports on them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.sweeps.fixtures_report import write_job

SCRIPT = Path(__file__).resolve().parents[1] / "reproduce" / "sweep_snapshot.py"


def _script():
    spec = importlib.util.spec_from_file_location("sweep_snapshot", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sweep_snapshot"] = module
    spec.loader.exec_module(module)
    return module


def test_finished_jobs_are_kept_without_checkpoints_and_reported(tmp_path: Path) -> None:
    snapshot = _script()
    sweep = tmp_path / "sweep"
    for lr, status in ((1e-3, "finished"), (1e-2, "finished"), (1e-1, "running")):
        job = write_job(
            sweep / f"optimizer.lr={lr}", [0.5, 0.6], status=status, **{"optimizer.lr": lr}
        )
        (job / "checkpoints").mkdir()
        (job / "checkpoints" / "last.pt").write_bytes(b"weights")
    params = ["optimizer.lr"]
    jobs = [
        {"name": p.name, "params": {"optimizer.lr": float(p.name.split("=")[1])}}
        for p in sorted(sweep.iterdir())
    ]
    (sweep / "sweep.json").write_text(
        json.dumps({"experiment": "lr", "parameters": params, "jobs": jobs})
    )
    out = tmp_path / "results"
    assert snapshot.main([str(sweep), str(out)]) == 0
    kept = sorted(p.name for p in (out / "jobs").iterdir() if p.is_dir())
    assert kept == ["optimizer.lr=0.001", "optimizer.lr=0.01"]
    assert not list(out.rglob("*.pt"))  # no checkpoint is copied
    summary = json.loads((out / "summary.json").read_text())
    assert [row["params"]["optimizer.lr"] for row in summary["rows"]] == [1e-3, 1e-2]
    assert [f["status"] for f in summary["failed"]] == ["pending"]


def test_a_folder_without_sweep_json_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = _script()
    assert snapshot.main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no sweep.json" in capsys.readouterr().err
