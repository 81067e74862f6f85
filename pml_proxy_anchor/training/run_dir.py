"""The run-directory policy: what is a run directory, when it may be replaced, who holds it.

A directory is a run directory only if it carries the marker file :data:`MARKER`
(``.pml-proxy-anchor-run.json``) that :meth:`RunDirectory.begin` writes: a run id, the marker's
format version, the time the run was created and the entries the tool writes
(:data:`TOOL_ENTRIES`: ``config.yaml``, ``checkpoints/``, ``logs/``, ``results.json``,
``results.md``, ``plots/``). Common names such as ``config.yaml`` or ``logs/`` prove nothing: a
user's project folder may hold them. The rules, checked by :meth:`RunDirectory.claim`:

- a missing or empty directory: a new run;
- a non-empty directory without the marker: refused, never deleted, the entries named;
- a marked run that finished at least one epoch (``checkpoints/last.pt``): refused unless
  ``resume`` (continue it) or ``overwrite`` (replace it);
- replacing a marked run (``overwrite``, or a run that never finished an epoch) removes only the
  tool's entries; anything else in the directory makes it refuse, naming what is there;
- ``resume`` needs ``checkpoints/last.pt`` (an older run directory without the marker may be
  resumed too; nothing is deleted by resuming).

For its whole life a run holds an OS lock (``fcntl.flock``) on :data:`LOCK_FILE` in the
directory, with its PID written inside: a second launch on a live run is refused naming that PID.
The OS releases the lock when the process ends in any way (even ``kill -9``), so a killed run can
be resumed at once. (Where ``fcntl`` does not exist, e.g. Windows, there is no lock.)
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Any

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.training.checkpoint import BEST, LAST
from pml_proxy_anchor.training.errors import CheckpointNotFoundError, RunDirectoryExistsError
from pml_proxy_anchor.training.record import RESULTS_JSON, RESULTS_MD, RunRecord, write_text_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

MARKER = ".pml-proxy-anchor-run.json"
LOCK_FILE = ".pml-proxy-anchor-run.lock"
MARKER_VERSION = 1
CONFIG_FILE = "config.yaml"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
PLOTS = "plots"
TOOL_ENTRIES = (CONFIG_FILE, CHECKPOINTS, LOGS, RESULTS_JSON, RESULTS_MD, PLOTS)
# What the tool writes inside its folders (besides its temporary files ".NAME.tmp-PID").
TOOL_FOLDER_CONTENT = {
    CHECKPOINTS: (LAST, BEST),
    PLOTS: ("curves.png", "retrieval_grid.png", "embedding_projection.png"),
}


class RunDirectoryRefusedError(RunDirectoryExistsError, UserError):
    """The run directory cannot be used as asked (not a run directory, a finished run, foreign
    files in a run directory to replace)."""


class RunDirectoryInUseError(RunDirectoryExistsError, UserError):
    """Another live process holds the run directory's lock."""


def is_run_directory(path: str | Path) -> bool:
    """Whether ``path`` is a directory carrying the tool's run marker."""
    return (Path(path) / MARKER).is_file()


def run_dir_for_config_file(path: str | Path) -> Path | None:
    """The run directory when ``path`` is the ``config.yaml`` inside a marked run directory
    (``pml-proxy-anchor train RUN_DIR/config.yaml --resume`` continues RUN_DIR, wherever the
    directory was copied or moved), else None."""
    path = Path(path)
    if path.name != CONFIG_FILE or not path.is_file():
        return None
    return path.parent if is_run_directory(path.parent) else None


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:8])
    return shown + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")


class RunDirectory:
    """One run's directory: :meth:`claim` (check and lock), :meth:`begin` (write the marker and
    the config), :meth:`release` (unlock). Only the main process of a run uses it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_file = self.path / CONFIG_FILE
        self.marker_file = self.path / MARKER
        self.lock_file = self.path / LOCK_FILE
        self.last_checkpoint = self.path / CHECKPOINTS / LAST
        self._lock: IO[str] | None = None
        self._created: list[Path] = []  # folders this process made, removed if never begun
        self._begun = False

    # ------------------------------------------------------------------ questions
    def entries(self) -> list[str]:
        """Names in the directory, the lock file left out."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK_FILE)

    def foreign_entries(self) -> list[str]:
        """What is in the directory that the tool did not write (relative paths)."""
        foreign = []
        for name in self.entries():
            if name in (MARKER, *TOOL_ENTRIES) or _is_temporary(name):
                expected = TOOL_FOLDER_CONTENT.get(name)
                folder = self.path / name
                if expected is not None and folder.is_dir():
                    foreign += [
                        f"{name}/{p.name}"
                        for p in sorted(folder.iterdir())
                        if p.name not in expected and not _is_temporary(p.name)
                    ]
                continue
            foreign.append(name)
        return foreign

    def marker(self) -> dict[str, Any] | None:
        """The content of the marker file, None without one."""
        if not self.marker_file.is_file():
            return None
        try:
            data = json.loads(self.marker_file.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return {}
        return data if isinstance(data, dict) else {}

    def in_use(self) -> bool:
        """Whether a live process holds the directory's lock (another than this object)."""
        if fcntl is None or self._lock is not None or not self.lock_file.is_file():
            return False
        with open(self.lock_file, encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False

    def finished_epochs(self) -> bool:
        return self.last_checkpoint.is_file()

    # ------------------------------------------------------------------ the policy
    def claim(self, *, resume: bool, overwrite: bool) -> None:
        """Check that this run may use the directory as asked, then lock it for the run's life.

        Nothing is deleted or written here but the lock file (and the directory when it did not
        exist): a run that fails while building its data or model leaves everything as it was.
        """
        path = self.path
        if path.exists() and not path.is_dir():
            raise RunDirectoryRefusedError(
                f"run directory {path} exists and is not a directory. Fix: choose another "
                "--run-dir."
            )
        marked = is_run_directory(path)
        if not resume and not marked and self.entries():
            raise RunDirectoryRefusedError(
                f"run directory {path} is not empty ({_names(self.entries())}) and does not "
                f"look like a run directory made by pml-proxy-anchor (no {MARKER}); refusing "
                "to write into it or delete anything in it, --overwrite included. Fix: choose "
                "another --run-dir (an empty or new folder)."
            )
        self._acquire_lock()
        try:
            if resume:
                self._check_resumable()
            elif marked:
                self._check_replaceable(overwrite)
        except BaseException:
            self.release()
            raise

    def _check_resumable(self) -> None:
        if self.finished_epochs():
            return
        if is_run_directory(self.path):
            hint = (
                "the run in it never finished an epoch, so there is nothing to resume. Fix: start "
                "it again with --overwrite (or drop --resume)."
            )
        else:
            hint = (
                "it is not a run directory made by pml-proxy-anchor (or the path is wrong). Fix: "
                "pass the run's directory (--run-dir), or drop --resume to start a new run."
            )
        raise CheckpointNotFoundError(f"--resume: no checkpoint at {self.last_checkpoint}; {hint}")

    def _check_replaceable(self, overwrite: bool) -> None:
        if self.finished_epochs() and not overwrite:
            record = RunRecord.read(self.path, strict=False)
            status = record.status if record else "unfinished"
            done = f"{record.epochs_completed} of {record.epochs}" if record else "some"
            raise RunDirectoryRefusedError(
                f"run directory {self.path} already holds a {status} run ({done} epochs). "
                "Fix: pass --resume to continue it, --overwrite to replace it, or --run-dir to "
                "write elsewhere."
            )
        foreign = self.foreign_entries()
        if foreign:
            raise RunDirectoryRefusedError(
                f"run directory {self.path} holds files that pml-proxy-anchor did not write "
                f"({_names(foreign)}); refusing to replace the run, so that nothing of yours is "
                "deleted. Fix: move those files out of the directory, or choose another "
                "--run-dir."
            )

    # ------------------------------------------------------------------ writing
    def begin(self, config_yaml: str, *, resume: bool) -> None:
        """Start using the directory: a new run first removes the tool's entries of an old one
        (:meth:`claim` made sure nothing else is there) and gets a new run id; then the marker
        and ``config.yaml`` (``config_yaml``, the run's resolved config) are written."""
        if not resume:
            for name in TOOL_ENTRIES:
                target = self.path / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
        kept = (self.marker() or {}) if resume else {}
        marker = {
            "tool": "pml-proxy-anchor",
            "version": MARKER_VERSION,
            "run_id": kept.get("run_id") or uuid.uuid4().hex,
            "created": kept.get("created")
            or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "written": [f"{n}/" if n in (CHECKPOINTS, LOGS, PLOTS) else n for n in TOOL_ENTRIES],
        }
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.marker_file, json.dumps(marker, indent=2) + "\n")
        write_text_atomic(self.config_file, config_yaml)
        self._begun = True

    # ------------------------------------------------------------------ the lock
    def _acquire_lock(self) -> None:
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = missing  # leaf first
        handle = open(self.lock_file, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise RunDirectoryInUseError(
                    f"run directory {self.path} is in use by a live run (process PID {holder} "
                    f"holds {self.lock_file}). Fix: wait for it to end, stop it (kill {holder}), "
                    "or pass another --run-dir."
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        """Unlock; a directory this process created and never began is removed again."""
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            self._lock.seek(0)
            self._lock.truncate()
        self._lock.close()  # closing the file releases the flock
        self._lock = None
        if self._created and not self._begun:
            with contextlib.suppress(OSError):
                self.lock_file.unlink()
                for folder in self._created:
                    folder.rmdir()  # only empty ones: stops at anything else written there

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
