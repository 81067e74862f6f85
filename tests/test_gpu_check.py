"""reproduce/gpu_check.sh in its quick CPU mode (the report lists what ran and what was skipped,
and why), and reproduce/gpu_report.py on constructed raw results (exact counts and lists)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "reproduce" / "gpu_check.sh"
MACHINE = {"host_cpu": "test CPU", "cores": 2, "torch": "x", "cuda_build": None, "gpu": None}


def load_report():
    name = "gpu_report"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "reproduce" / "gpu_report.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_cpu_quick_run_reports_what_ran_and_what_was_skipped(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-quick", "--out", str(out)],
        cwd=tmp_path,  # the script finds the repository itself
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "cpu-quick" and report["ok"] and report["failed"] == []
    assert report["gpu_figures"] == "GPU figures: not measured (no GPU was available)"
    assert [s["name"] for s in report["steps"]] == [
        "pytest_cuda",
        "loss_speed",
        "eval_speed",
        "loader_speed",
        "train_throughput",
    ]
    assert report["ran"] == ["pytest_cuda", "loader_speed", "train_throughput"]
    skipped = {item["item"]: item["reason"] for item in report["skipped"]}
    assert skipped["loss_speed"].startswith("--cpu-quick") and "eval_speed" in skipped
    assert skipped["loader_speed on CUDA"].startswith("--cpu-quick hides the GPU")
    assert "train_throughput on CUDA" in skipped
    tests = report["tests"]
    assert tests["total"] > 0 and tests["skipped"] == tests["total"] and tests["passed"] == 0
    assert tests["skip_reasons"] == {"needs a CUDA GPU": tests["total"]}
    assert skipped[f"{tests['total']} test(s) marked cuda"] == "needs a CUDA GPU"
    assert set(report["benchmarks"]) == {"loader_speed", "train_throughput"}
    assert report["benchmarks"]["train_throughput"]["device"] == "cpu"
    assert (out / "raw" / "pytest_cuda.xml").is_file()
    markdown = (out / "gpu_check.md").read_text()
    assert "| pytest_cuda | ran |" in markdown and "## Skipped" in markdown
    assert f"- {tests['total']} test(s) marked cuda: needs a CUDA GPU" in markdown


def test_unknown_argument_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT), "--gpu"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "unknown argument '--gpu'; expected --out DIR or --cpu-quick" in done.stderr


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
<testcase classname="cuda.test_a" name="test_ok"/>
<testcase classname="cuda.test_a" name="test_bad"><failure message="x"/></testcase>
<testcase classname="cuda.test_a" name="test_s1"><skipped message="needs a CUDA GPU"/></testcase>
<testcase classname="cuda.test_a" name="test_s2"><skipped message="needs a CUDA GPU"/></testcase>
<testcase classname="tests.x" name="test_s3"><skipped message="tests/x.py:9: no faiss"/></testcase>
</testsuite></testsuites>
"""


def _raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "steps.tsv").write_text(
        "pytest_cuda\tfailed\t1\t12345\t\tpython -m pytest -m cuda tests\n"
        "loss_speed\tran\t0\t2000\t\tpython loss_speed.py --device cuda\n"
        "eval_speed\ttimed_out\t124\t150000\tstopped after 150s. \tpython eval_speed.py\n"
        "loader_speed\tskipped\t\t0\tthe 480s budget is spent\t\n"
        "train_throughput\tran\t0\t9000\t\tpython train_throughput.py\n"
    )
    (raw / "pytest_cuda.xml").write_text(JUNIT)
    loss = {
        "device": "cuda",
        "table_markdown": "| loss table |",
        "results": [
            {"shape_name": "sop", "contender": "ours", "median_s": 0.1},
            {"shape_name": "huge", "contender": "pml", "skipped": True,
             "estimated_peak_extra_mb": 2048.0},
        ],
    }  # fmt: skip
    train = {
        "device": "cuda",
        "table_markdown": "| train table |",
        "results": [
            {"backbone": "bn_inception", "contender": "fp32", "images_per_s": 900.0},
            {"backbone": "bn_inception", "contender": "bf16", "error": "OutOfMemoryError: x"},
            {"backbone": "vit_small_patch16_224", "contender": "fp32",
             "skipped": "timm is not installed"},
        ],
    }  # fmt: skip
    (raw / "loss_speed.json").write_text(json.dumps(loss))
    (raw / "train_throughput.json").write_text(json.dumps(train))
    return raw


def test_report_on_constructed_results(tmp_path: Path) -> None:
    gpu_report = load_report()
    report = gpu_report.build_report(_raw(tmp_path), "gpu", MACHINE)
    assert report["ran"] == ["loss_speed", "train_throughput"]
    assert report["steps"][0]["seconds"] == 12.3 and report["steps"][3]["exit_code"] is None
    assert report["tests"] == {
        "total": 5,
        "passed": 1,
        "failed": 1,
        "errors": 0,
        "skipped": 3,
        "skip_reasons": {"needs a CUDA GPU": 2, "no faiss": 1},
        "failures": ["cuda.test_a::test_bad"],
    }
    assert report["skipped"] == [
        {"item": "loader_speed", "reason": "the 480s budget is spent"},
        {"item": "2 test(s) marked cuda", "reason": "needs a CUDA GPU"},
        {"item": "1 test(s) marked cuda", "reason": "no faiss"},
        {"item": "loss_speed pml at huge", "reason": (
            "its memory would exceed --mem-limit-gb (estimated 2.0 GB)")},
        {"item": "train_throughput vit_small_patch16_224 fp32", "reason": "timm is not installed"},
    ]  # fmt: skip
    assert report["failed"] == [
        {"item": "pytest_cuda", "reason": "failed (exit 1); see raw/pytest_cuda.log"},
        {"item": "eval_speed", "reason": "timed_out (exit 124); see raw/eval_speed.log"},
        {"item": "cuda.test_a::test_bad", "reason": "test failed"},
        {"item": "train_throughput bn_inception bf16", "reason": "OutOfMemoryError: x"},
    ]
    assert not report["ok"] and report["gpu_figures"] == "measured"
    markdown = gpu_report.render_markdown(report)
    assert "5 collected, 1 passed, 1 failed, 0 errors, 3 skipped" in markdown
    assert "## train_throughput (cuda)\n\n| train table |" in markdown
    assert "- loader_speed: the 480s budget is spent" in markdown


def test_report_main_writes_both_files_and_fails_on_failures(tmp_path: Path, monkeypatch) -> None:
    gpu_report = load_report()
    monkeypatch.setattr(gpu_report, "machine", lambda: MACHINE)
    raw = _raw(tmp_path)
    assert gpu_report.main(["--raw", str(raw), "--out", str(tmp_path), "--mode", "gpu"]) == 1
    assert json.loads((tmp_path / "gpu_check.json").read_text())["mode"] == "gpu"
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (None, r"steps.tsv not found: run reproduce/gpu_check.sh"),
        ("a\tran\t0\n", r"steps.tsv:1: expected 6 tab-separated fields"),
        ("a\tbroken\t0\t1\t\tcmd\n", r"steps.tsv:1: expected 6 .* got 'a\\tbroken"),
    ],
)
def test_bad_raw_results_are_refused(tmp_path: Path, steps: str | None, message: str) -> None:
    gpu_report = load_report()
    if steps is not None:
        (tmp_path / "steps.tsv").write_text(steps)
    with pytest.raises(gpu_report.ReportError, match=message):
        gpu_report.build_report(tmp_path, "gpu", MACHINE)
    with pytest.raises(gpu_report.ReportError, match=r"mode 'fast': expected one of"):
        gpu_report.build_report(tmp_path, "fast", MACHINE)
