"""The record of a sweep, ``SWEEP_DIR/sweep.json``: what ran, with which settings, and how it ended.

:class:`SweepRecord` is the only writer of ``sweep.json`` (atomically, through
:func:`pml_proxy_anchor.training.record.write_text_atomic`). The sweep command writes it before
the first job starts (every job ``pending``, or the status its run directory already holds) and
again when the launcher returns (or the sweep is interrupted); the live status of a job is its
run's ``results.json``. Fields::

    {
      "experiment": "omniglot/alpha_delta",     # the experiment's name
      "experiment_file": "/.../alpha_delta.yaml",
      "base_config": "omniglot",                # the training config every job starts from
      "parameters": ["loss.ProxyAnchorLoss.alpha", "loss.ProxyAnchorLoss.margin"],
      "budget": {"train.epochs": 6, ...},       # what every job shares: the experiment's budget
                                                # and the common command-line overrides, plus
                                                # train.epochs and data.name as resolved
      "launcher": "basic",                      # hydra/launcher
      "command": "pml-proxy-anchor sweep ...",
      "updated": "2025-01-01T12:00:00+00:00",
      "counts": {"finished": 24, "failed": 1},
      "jobs": [{
          "name": "loss.ProxyAnchorLoss.alpha=4,loss.ProxyAnchorLoss.margin=0.1",  # folder
          "overrides": ["loss.ProxyAnchorLoss.alpha=4", ...],   # as Hydra gives them
          "params": {"loss.ProxyAnchorLoss.alpha": 4, "loss.ProxyAnchorLoss.margin": 0.1},
          "seed": 1,                            # train.seed of the job
          "status": "finished",                 # pending | running | finished | stopped |
                                                # failed | interrupted
          "action": "started",                  # this command: started | resumed | skipped
                                                # | reused (copied from another sweep)
          "error": null,                        # why it failed
          "seconds": 73.2,                      # wall time of the job in this command
          "threads": 2,                         # torch threads of the job
          "reused_from": null                   # the run it was copied from (reuse_from)
      }, ...]
    }

The job's results are in ``SWEEP_DIR/<name>/results.json`` (see
:mod:`pml_proxy_anchor.training.record`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections import Counter
from pathlib import Path
from typing import Any

from pml_proxy_anchor.training.record import RunRecord, write_text_atomic
from pml_proxy_anchor.training.run_dir import RunDirectory, is_run_directory

SWEEP_JSON = "sweep.json"
DONE = ("finished", "stopped")  # a run that reached its end (stopped: train.stop_after_epoch)
JOB_STATUSES = ("pending", "running", "finished", "stopped", "failed", "interrupted")


def status_on_disk(run_dir: Path) -> str:
    """A job's status from its run directory: ``pending`` (nothing there yet), the status in its
    ``results.json``, or ``interrupted`` for a ``running`` one whose process is gone."""
    if not is_run_directory(run_dir):
        return "pending"
    record = RunRecord.read(run_dir, strict=False)
    if record is None:
        return "interrupted"  # begun, killed before its first results were written
    if record.status == "running":
        return "running" if RunDirectory(run_dir).in_use() else "interrupted"
    return record.status if record.status in JOB_STATUSES else "interrupted"


@dataclasses.dataclass
class JobRecord:
    name: str
    overrides: list[str]
    params: dict[str, Any]
    seed: int | None
    status: str = "pending"
    action: str | None = None
    error: str | None = None
    seconds: float | None = None
    threads: int | None = None
    reused_from: str | None = None


@dataclasses.dataclass
class SweepRecord:
    """A sweep's record in memory; :meth:`write` is the one writer of ``sweep.json``."""

    sweep_dir: Path
    experiment: str
    experiment_file: str
    base_config: str
    parameters: list[str]
    budget: dict[str, Any]
    launcher: str
    command: str
    jobs: list[JobRecord]

    @property
    def path(self) -> Path:
        return self.sweep_dir / SWEEP_JSON

    def job(self, name: str) -> JobRecord:
        return next(job for job in self.jobs if job.name == name)

    def refresh_from_disk(self) -> None:
        """Every job's status from its run directory (the runs' ``results.json`` are the truth)."""
        for job in self.jobs:
            job.status = status_on_disk(self.sweep_dir / job.name)

    def update(self, name: str, outcome: dict[str, Any]) -> None:
        """Take a job's outcome (what the job function returned) into the record."""
        job = self.job(name)
        for key in ("status", "action", "error", "seconds", "threads", "reused_from"):
            if key in outcome:
                setattr(job, key, outcome[key])

    def failed(self) -> list[JobRecord]:
        return [job for job in self.jobs if job.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "experiment_file": self.experiment_file,
            "base_config": self.base_config,
            "parameters": list(self.parameters),
            "budget": dict(self.budget),
            "launcher": self.launcher,
            "command": self.command,
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "counts": dict(Counter(job.status for job in self.jobs)),
            "jobs": [dataclasses.asdict(job) for job in self.jobs],
        }

    def write(self) -> None:
        """Write ``sweep.json`` (replaced atomically)."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps(self.to_dict(), indent=2) + "\n")


def read_sweep(sweep_dir: str | Path) -> dict[str, Any]:
    """The content of ``SWEEP_DIR/sweep.json`` (a :class:`~.errors.SweepConfigError` naming it
    when it is missing or damaged)."""
    from pml_proxy_anchor.sweeps.errors import SweepConfigError

    path = Path(sweep_dir) / SWEEP_JSON
    if not path.is_file():
        raise SweepConfigError(
            f"{path} does not exist: {sweep_dir} is not a sweep directory made by "
            "`pml-proxy-anchor sweep` (or the sweep never started)."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise SweepConfigError(f"{path} is not valid JSON ({err}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise SweepConfigError(f"{path} does not hold a sweep record (no list of jobs).")
    return data
