"""Keep a sweep's finished results in the repository, so a long sweep can span sessions.

A sweep directory holds checkpoints and logs (megabytes per job) that do not belong in git. This
copies what a report and a later resume need, and nothing else, into a results folder:

- ``sweep.json`` (the experiment, its parameters and budget, every job's status);
- for each job whose run finished: its marker, ``config.yaml``, ``results.json`` and ``results.md``
  (under ``jobs/<job>/``);

then writes the sweep report (``summary.json``, ``summary.md``, figures) next to them::

    python reproduce/sweep_snapshot.py sweeps/omniglot/alpha_delta \
        reproduce/results/omniglot/alpha_delta

Unfinished jobs are left out (the report lists them as pending). To continue the sweep on another
machine, run it with ``--sweep-dir RESULTS/jobs`` after copying ``sweep.json`` there: finished jobs
are skipped, the others start. Files already in the results folder are replaced only by the same
job's newer files; nothing else there is touched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.training.record import RESULTS_JSON, RESULTS_MD
from pml_proxy_anchor.training.run_dir import MARKER

KEPT = (MARKER, "config.yaml", RESULTS_JSON, RESULTS_MD)


def finished_jobs(sweep_dir: Path) -> list[Path]:
    """The job folders of ``sweep_dir`` whose ``results.json`` says ``finished``."""
    jobs = []
    for results in sorted(sweep_dir.glob(f"*/{RESULTS_JSON}")):
        try:
            status = json.loads(results.read_text()).get("status")
        except (OSError, ValueError):
            continue  # a damaged file: the report lists that job
        if status == "finished":
            jobs.append(results.parent)
    return jobs


def snapshot(sweep_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Copy ``sweep.json`` and the kept files of every finished job; returns the job names."""
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir)
    if not (sweep_dir / "sweep.json").is_file():
        raise UserError(
            f"{sweep_dir} has no sweep.json: not a sweep directory written by "
            "`pml-proxy-anchor sweep`. Fix: pass the folder the sweep wrote its jobs into."
        )
    jobs_dir = out_dir / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(sweep_dir / "sweep.json", jobs_dir / "sweep.json")
    names = []
    for job in finished_jobs(sweep_dir):
        target = jobs_dir / job.name
        target.mkdir(exist_ok=True)
        for name in KEPT:
            if (job / name).is_file():
                shutil.copy2(job / name, target / name)
        names.append(job.name)
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the sweep directory (with sweep.json and job folders)")
    parser.add_argument("out_dir", help="the results folder, e.g. reproduce/results/omniglot/X")
    args = parser.parse_args(argv)
    from pml_proxy_anchor.sweeps import report

    try:
        names = snapshot(args.sweep_dir, args.out_dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"kept {len(names)} finished job(s) in {Path(args.out_dir) / 'jobs'}")
    return report.main([str(Path(args.out_dir) / "jobs"), "--out", args.out_dir])


if __name__ == "__main__":
    raise SystemExit(main())
