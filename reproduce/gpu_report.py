"""The report of ``reproduce/gpu_check.sh``: its steps, the ``cuda`` tests and the benchmark
results merged into one JSON file and one markdown page.

Reads ``RAW/steps.tsv`` (one line per step: name, status, exit code, milliseconds, note,
command), ``RAW/pytest_cuda.xml`` (pytest's junit XML) and ``RAW/<benchmark>.json``; writes
``OUT/gpu_check.json`` and ``OUT/gpu_check.md``. Everything skipped is listed with its reason:
whole steps, the ``cuda`` tests pytest skipped, the CUDA runs of the benchmarks when there was no
GPU, and the contenders a benchmark did not run.

    python reproduce/gpu_report.py --raw DIR --out DIR --mode gpu|cpu|cpu-quick

Exit code 0 when every step that ran succeeded and no test failed, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

MODES = ("gpu", "cpu", "cpu-quick")
BENCHMARKS = ("loss_speed", "eval_speed", "loader_speed", "train_throughput")
STATUSES = ("ran", "failed", "timed_out", "skipped")
NO_GPU_FIGURES = "GPU figures: not measured (no GPU was available)"


class ReportError(ValueError):
    """A raw result of gpu_check.sh is missing or malformed (the message names the file)."""


# ---------------------------------------------------------------- reading
def read_steps(path: Path) -> list[dict[str, Any]]:
    """The steps of ``steps.tsv``, in order."""
    if not path.is_file():
        raise ReportError(f"{path} not found: run reproduce/gpu_check.sh, which writes it")
    steps = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 6 or fields[1] not in STATUSES:
            raise ReportError(
                f"{path}:{number}: expected 6 tab-separated fields (name, status in "
                f"{STATUSES}, exit code, ms, note, command), got {line!r}"
            )
        name, status, code, ms, note, command = fields
        steps.append(
            {
                "name": name,
                "status": status,
                "exit_code": int(code) if code else None,
                "seconds": round(int(ms) / 1000, 1),
                "note": note,
                "command": command,
            }
        )
    return steps


def read_junit(path: Path) -> dict[str, Any] | None:
    """Counts of pytest's junit XML: total, passed, failed, errors, skipped (with reasons)."""
    if not path.is_file():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ReportError(f"{path}: not a junit XML file ({err})") from None
    counts = Counter()
    reasons: Counter[str] = Counter()
    failures = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        counts["total"] += 1
        if (skipped := case.find("skipped")) is not None:
            counts["skipped"] += 1
            reasons[_skip_reason(skipped.get("message", ""))] += 1
        elif case.find("failure") is not None:
            counts["failed"] += 1
            failures.append(name)
        elif case.find("error") is not None:
            counts["errors"] += 1
            failures.append(name)
        else:
            counts["passed"] += 1
    return {
        **{key: counts[key] for key in ("total", "passed", "failed", "errors", "skipped")},
        "skip_reasons": dict(reasons),
        "failures": failures,
    }


def _skip_reason(message: str) -> str:
    """pytest writes ``needs a CUDA GPU`` (a mark) or ``file.py:12: reason`` (a skip call)."""
    head, sep, tail = message.partition(": ")
    return tail if sep and head.split(":")[0].endswith(".py") else message


def read_benchmark(raw: Path, name: str) -> dict[str, Any] | None:
    path = raw / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ReportError(f"{path}: damaged JSON ({err})") from None


# ---------------------------------------------------------------- what was skipped
def skipped_contenders(name: str, result: dict[str, Any]) -> list[dict[str, str]]:
    """The contenders a benchmark did not run, with its reason."""
    items = []
    if name == "loss_speed":
        for row in result.get("results", []):
            if row.get("skipped"):
                estimate = row.get("estimated_peak_extra_mb")
                why = "its memory would exceed --mem-limit-gb" + (
                    f" (estimated {estimate / 1024:.1f} GB)" if estimate else ""
                )
                item = f"loss_speed {row['contender']} at {row['shape_name']}"
                items.append({"item": item, "reason": why})
    if name == "train_throughput":
        for row in result.get("results", []):
            if "skipped" in row:
                item = f"train_throughput {row['backbone']} {row['contender']}"
                items.append({"item": item, "reason": row["skipped"]})
    if name == "loader_speed" and result.get("device") != "cuda":
        item = "loader_speed tensor_cuda (decode_jpeg on the GPU)"
        items.append({"item": item, "reason": "runs only with --device cuda"})
    return items


def failed_contenders(name: str, result: dict[str, Any]) -> list[dict[str, str]]:
    rows = result.get("results", [])
    if name == "eval_speed":
        rows = [r for s in result.get("settings", []) for r in s.get("rows", [])]
    return [
        {"item": f"{name} {_row_name(row)}", "reason": row["error"]}
        for row in rows
        if "error" in row
    ]


def _row_name(row: dict[str, Any]) -> str:
    parts = [row.get("backbone"), row.get("shape_name"), row.get("contender")]
    return " ".join(str(p) for p in parts if p)


# ---------------------------------------------------------------- the report
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's machine type."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "host_cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpu": None,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    return info


def build_report(raw: Path, mode: str, machine_info: dict[str, Any]) -> dict[str, Any]:
    """The merged report (see the module docstring)."""
    if mode not in MODES:
        raise ReportError(f"mode {mode!r}: expected one of {MODES}")
    steps = read_steps(raw / "steps.tsv")
    tests = read_junit(raw / "pytest_cuda.xml")
    skipped, failed = [], []
    for step in steps:
        if step["status"] == "skipped":
            skipped.append({"item": step["name"], "reason": step["note"]})
        elif step["status"] != "ran":
            why = f"{step['status']} (exit {step['exit_code']}); see raw/{step['name']}.log"
            failed.append({"item": step["name"], "reason": why})
    if mode != "gpu":
        for step in steps:
            if step["name"] in BENCHMARKS and step["status"] != "skipped":
                why = "--cpu-quick hides the GPU" if mode == "cpu-quick" else "no CUDA GPU"
                why += "; ran on the CPU at a tiny size instead"
                skipped.append({"item": f"{step['name']} on CUDA", "reason": why})
    if tests:
        for reason, count in tests["skip_reasons"].items():
            skipped.append({"item": f"{count} test(s) marked cuda", "reason": reason})
        failed += [{"item": name, "reason": "test failed"} for name in tests["failures"]]
    benchmarks = {}
    for name in BENCHMARKS:
        result = read_benchmark(raw, name)
        if result is None:
            continue
        skipped += skipped_contenders(name, result)
        failed += failed_contenders(name, result)
        benchmarks[name] = {
            "device": result.get("device", result.get("meta", {}).get("device")),
            "table_markdown": result.get("table_markdown", result.get("table", "")),
            "result": result,
        }
    return {
        "report": "gpu_check",
        "mode": mode,
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_info,
        "gpu_figures": "measured" if mode == "gpu" else NO_GPU_FIGURES,
        "steps": steps,
        "ran": [s["name"] for s in steps if s["status"] == "ran"],
        "skipped": skipped,
        "failed": failed,
        "tests": tests,
        "benchmarks": benchmarks,
        "ok": not failed,
    }


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    where = m["gpu"] or f"no GPU ({m['host_cpu']}, {m['cores']} cores)"
    lines = [
        "# GPU check",
        "",
        f"Mode `{report['mode']}` on {where}, torch {m['torch']} (CUDA build {m['cuda_build']}), "
        f"{report['generated']}. {'No failures.' if report['ok'] else 'FAILURES: see below.'}",
        "",
    ]
    if report["mode"] != "gpu":
        lines += [f"{NO_GPU_FIGURES}.", ""]
    lines += ["| step | status | seconds | note |", "|---|---|---:|---|"]
    for s in report["steps"]:
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {s['note']} |")
    tests = report["tests"]
    if tests:
        lines += [
            "",
            f"Tests marked `cuda`: {tests['total']} collected, {tests['passed']} passed, "
            f"{tests['failed']} failed, {tests['errors']} errors, {tests['skipped']} skipped.",
        ]
    for name, bench in report["benchmarks"].items():
        lines += ["", f"## {name} ({bench['device']})", "", bench["table_markdown"]]
    for title, key in (("Failed", "failed"), ("Skipped", "skipped")):
        lines += ["", f"## {title}", ""]
        lines += [f"- {i['item']}: {i['reason']}" for i in report[key]] or ["- nothing"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, required=True, help="gpu_check.sh's raw folder")
    parser.add_argument("--out", type=Path, required=True, help="where the report goes")
    parser.add_argument("--mode", choices=MODES, required=True)
    args = parser.parse_args(argv)
    try:
        report = build_report(args.raw, args.mode, machine())
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = render_markdown(report)
    (args.out / "gpu_check.md").write_text(markdown)
    print(markdown)
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
