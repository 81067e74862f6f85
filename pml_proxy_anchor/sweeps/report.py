"""The sweep report: one command turns a sweep directory into tables, plots and ``summary.json``.

``pml-proxy-anchor sweep-report SWEEP_DIR [--out DIR]`` (:func:`main`) or :func:`write_report`
reads every job of the sweep (:mod:`pml_proxy_anchor.sweeps.summary`) and writes into ``DIR``
(default: the sweep directory):

* ``summary.json``: ``{"experiment", "budget", "rows": [{"params", "seeds", "recall_at_1":
  {"mean", "std"}, ..., "epochs_to_95", "seconds"}], "param_names", "k_values", "std",
  "definitions", "jobs", "failed": [{"job", "status", "error"}], "plots"}``;
* ``summary.md``: one table row per parameter setting (mean ± std of every Recall@K, the seeds,
  epochs to 95 %, seconds) and the jobs that were not reported;
* the figures of :mod:`pml_proxy_anchor.sweeps.plots`.

The standard deviation is the sample one (ddof=1) over seeds, 0 with one seed. Jobs that did not
finish (or whose files are damaged) are listed under ``failed`` and the rest is reported; when no
job finished the report is still written, says so, and :func:`main` exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.sweeps.plots import write_plots
from pml_proxy_anchor.sweeps.summary import (
    STD_DEFINITION,
    Summary,
    format_value,
    mean_std,
    summarize,
)
from pml_proxy_anchor.training.record import write_text_atomic

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
EXIT_ALL_FAILED = 1
EXIT_USER_ERROR = 2


class ReportOutputError(UserError, OSError):
    """The report's output folder cannot be created or written."""


def _cell(text: str) -> str:
    """Text made safe for one markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _pm(values: dict[str, float], digits: int = 4) -> str:
    return f"{values['mean']:.{digits}f} ± {values['std']:.{digits}f}"


def render_table(summary: Summary) -> str:
    """The markdown table: one row per parameter setting."""
    if not summary.rows:
        return f"No job finished: all {summary.jobs} jobs failed; nothing to report."
    recall_heads = [f"R@{k}" for k in summary.k_values]
    heads = [*summary.param_names, "n", "seeds", *recall_heads, "epochs to 95 %", "seconds"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in summary.rows:
        cells = [
            *(_cell(format_value(row.params[p])) for p in summary.param_names),
            str(len(row.seeds)),
            ", ".join(str(s) for s in row.seeds),
            *(_pm(row.recall(k)) for k in summary.k_values),
            ", ".join(str(e) for e in row.epochs_to_95),
            _pm(mean_std(row.seconds), 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(summary: Summary) -> str:
    """The whole ``summary.md``."""
    budget = ", ".join(f"{k}={format_value(v)}" for k, v in summary.budget.items()) or "(none)"
    finished = summary.jobs - len(summary.failed)
    parts = [
        f"# Sweep report: {summary.experiment}",
        "",
        f"- Parameters: {', '.join(summary.param_names) or '(none: one setting)'}",
        f"- Budget: {budget}",
        f"- Jobs: {summary.jobs} ({finished} finished, {len(summary.failed)} not reported)",
        f"- Recall@K of each run's last evaluated epoch; mean ± {STD_DEFINITION}.",
        "- Epochs to 95 %: per seed, the first epoch whose Recall@1 reaches 95 % of that run's "
        "best Recall@1. Seconds: each run's total training time.",
        "",
        render_table(summary),
    ]
    if summary.failed:
        parts += ["", "## Jobs not reported", "", "| job | status | error |", "|---|---|---|"]
        parts += [
            f"| {_cell(f['job'])} | {_cell(f['status'])} | {_cell(f['error'])} |"
            for f in summary.failed
        ]
    if summary.plots:
        parts += ["", "## Figures", ""]
        parts += [f"![{name}]({name})" for name in summary.plots]
    return "\n".join(parts) + "\n"


def _output_dir(sweep_dir: Path, out_dir: str | Path | None) -> Path:
    out = Path(out_dir) if out_dir is not None else sweep_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportOutputError(
            f"cannot create the report folder {out}: {err}. Fix: pass --out a folder you can "
            "write to."
        ) from err
    if not os.access(out, os.W_OK):
        raise ReportOutputError(
            f"the report folder {out} is not writable. Fix: pass --out a folder you can write to."
        )
    return out


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Summary:
    """Summarize ``sweep_dir`` and write ``summary.json``, ``summary.md`` and the figures into
    ``out_dir`` (default: the sweep directory); returns the :class:`Summary`.

    Raises a :class:`~pml_proxy_anchor.errors.UserError` for a missing or empty sweep directory,
    a damaged ``sweep.json``, jobs with different budgets or two jobs of one setting and seed.
    """
    sweep_dir = Path(sweep_dir)
    summary = summarize(sweep_dir)
    out = _output_dir(sweep_dir, out_dir)
    summary.plots = [path.name for path in write_plots(summary, out)]
    text = json.dumps(summary.to_dict(), indent=2, allow_nan=False) + "\n"
    write_text_atomic(out / SUMMARY_JSON, text)
    write_text_atomic(out / SUMMARY_MD, render_markdown(summary))
    summary.files = [out / SUMMARY_JSON, out / SUMMARY_MD, *(out / p for p in summary.plots)]
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pml-proxy-anchor sweep-report",
        description="Tables, figures and summary.json of a sweep directory (one run directory "
        "per job).",
        epilog="example: pml-proxy-anchor sweep-report multirun/lr_sweep --out report/lr_sweep",
    )
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="the folder holding the jobs")
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="where to write (default: SWEEP_DIR)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``sweep-report`` command: 0 when written, 1 when no job finished, 2 on bad input."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        summary = write_report(args.sweep_dir, args.out)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(render_table(summary))
    if summary.failed:
        print(f"\nnot reported ({len(summary.failed)} jobs):")
        for failure in summary.failed:
            print(f"  {failure['job']}: {failure['status']}: {failure['error']}")
    print("\nwritten:")
    for path in summary.files:
        print(f"  {path}")
    if summary.all_failed:
        print(f"error: no job finished: all {summary.jobs} jobs failed.", file=sys.stderr)
        return EXIT_ALL_FAILED
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
