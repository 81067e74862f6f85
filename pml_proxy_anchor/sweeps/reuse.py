"""Reusing finished runs of other sweeps: nothing is computed twice.

An experiment may name sweep directories whose finished runs it can take over (``reuse_from``,
paths relative to the parent of its own sweep directory, i.e. sibling sweeps, or absolute)::

    reuse_from: [compare_lr]    # omniglot/compare: its seed-1 job of each method at the chosen
                                # lr is the compare_lr job of that method and lr

Before a job starts a new run, :func:`find_finished_run` looks through those directories for a
run that reached its end (``finished`` or ``stopped``) with exactly the job's training config
(``run_dir`` aside). When one is found, :func:`copy_run` copies its files into the job's folder
(the lock file left out) and records the source in the copy's marker (``copied_from``); the
source is only read. The copy is an ordinary run directory: it can be resumed with more epochs,
and the report reads it like any other job.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pml_proxy_anchor.sweeps.errors import SweepConfigError
from pml_proxy_anchor.sweeps.record import DONE
from pml_proxy_anchor.training.record import RunRecord, write_text_atomic
from pml_proxy_anchor.training.run_dir import (
    CONFIG_FILE,
    LOCK_FILE,
    MARKER,
    RunDirectory,
    is_run_directory,
)

REUSE_KEY = "reuse_from"


def check_reuse_from(value: Any, where: str) -> list[str]:
    """``reuse_from`` of an experiment as a list of paths (None: none)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(item, str) and item.strip() for item in value
    ):
        raise SweepConfigError(
            f"{where}: {REUSE_KEY} must be a list of sweep directories (paths relative to the "
            f"parent of this sweep's directory, or absolute), e.g. [compare_lr]; got {value!r}."
        )
    return [str(item) for item in value]


def reuse_dirs(entries: Sequence[str], sweep_dir: Path) -> list[Path]:
    """The directories ``entries`` name, relative ones taken from ``sweep_dir``'s parent; the
    sweep's own directory is left out."""
    own = Path(os.path.abspath(sweep_dir))
    dirs = []
    for entry in entries:
        path = Path(entry) if os.path.isabs(entry) else own.parent / entry
        path = Path(os.path.abspath(path))
        if path != own:
            dirs.append(path)
    return dirs


def find_finished_run(cfg: DictConfig, dirs: Sequence[Path]) -> Path | None:
    """A run in one of ``dirs`` (their job folders) that reached its end with ``cfg``'s config,
    ``run_dir`` aside; None when there is none. Runs in use by a live process are passed over."""
    from pml_proxy_anchor.sweeps.job import same_config
    from pml_proxy_anchor.training.run import read_saved_config

    for folder in dirs:
        if not folder.is_dir():
            continue
        for candidate in sorted(folder.iterdir()):
            if not candidate.is_dir() or not is_run_directory(candidate):
                continue
            record = RunRecord.read(candidate, strict=False)
            if record is None or record.status not in DONE:
                continue
            if not same_config(read_saved_config(candidate / CONFIG_FILE), cfg):
                continue
            if RunDirectory(candidate).in_use():
                continue
            return candidate
    return None


def copy_run(source: Path, target: Path) -> None:
    """Copy the run in ``source`` into ``target`` (a missing or empty folder), the lock file
    left out; the copy's marker gets ``copied_from`` (the source's path) and ``copied`` (when)."""
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise SweepConfigError(f"cannot copy the run {source} into {target}: it is not empty.")
    for entry in sorted(source.iterdir()):
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)
    marker_file = target / MARKER
    marker = json.loads(marker_file.read_text(encoding="utf-8"))
    marker["copied_from"] = str(source)
    marker["copied"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_text_atomic(marker_file, json.dumps(marker, indent=2) + "\n")


def copied_from(run_dir: Path) -> str | None:
    """The run a job's run directory was copied from (its marker's ``copied_from``), or None."""
    marker = RunDirectory(run_dir).marker() or {}
    source = marker.get("copied_from")
    return str(source) if source else None


__all__ = ["check_reuse_from", "copied_from", "copy_run", "find_finished_run", "reuse_dirs"]
