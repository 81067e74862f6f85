"""The record of a run (``results.json`` / ``results.md``) and the package's one atomic file writer.

:class:`RunRecord` holds a run's state in memory -- status, planned and completed epochs, the
per-epoch history, the best epoch, the ``evaluation`` of ``pml-proxy-anchor eval``, the plots --
and is the only code that writes ``results.json`` and ``results.md`` (:meth:`RunRecord.write`).
The training run keeps one and writes it after every epoch and when the run ends (``finished``,
``stopped``, ``failed``, ``interrupted``); ``evaluate`` and the ``report`` command read the file
into one, change it and write it back through the same method.

:func:`write_atomic` is how every file of a run (checkpoints, results, the run marker, the config)
is written: to a temporary file in the same folder, flushed and ``fsync``-ed, then moved into
place with ``os.replace``. A run killed at any moment, a full disk or a folder without write
permission leaves the old file or the new one, never a torn one, and no temporary file; the
failure is a :class:`RunFileWriteError` naming the file and the cause.

``results.json`` fields: ``status`` (running | stopped | finished | failed | interrupted),
``run_dir``, ``dataset``, ``backbone``, ``epochs`` (planned), ``epochs_completed``, ``final`` and
``best`` (epoch and metrics, Recall@K as fractions in 0..1), ``history`` (one record per epoch:
loss, lr, seconds, metrics), ``evaluation``, ``plots``, ``error`` (why a run failed or stopped),
``reference`` (the paper's numbers, %, added on writing).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.training.paper_numbers import reference_numbers
from pml_proxy_anchor.training.report import render_markdown

LOGGER = logging.getLogger("pml_proxy_anchor")

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
BOOKKEEPING = ("epoch", "loss", "lr", "seconds", "elapsed_seconds")
STATUSES = ("running", "stopped", "finished", "failed", "interrupted", "unknown")


class RunFileWriteError(UserError, OSError):
    """A file of a run could not be written (disk full, no permission, read-only file system)."""


class ResultsFileError(UserError, FileNotFoundError):
    """``results.json`` is missing or unreadable where a run's record was expected."""


# ---------------------------------------------------------------------- atomic writes
_CAUSES = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
}
# torch.save reports a short write (a full disk) as a RuntimeError of its zip writer.
_TORCH_SHORT_WRITE = ("inline_container", "unexpected pos", "PytorchStreamWriter failed")


def _write_failure_cause(err: BaseException) -> str | None:
    """A sentence for a failed write, or None when ``err`` is not a write failure."""
    if isinstance(err, OSError):
        return _CAUSES.get(err.errno or 0) or f"{type(err).__name__}: {err.strerror or err}"
    if isinstance(err, RuntimeError) and any(s in str(err) for s in _TORCH_SHORT_WRITE):
        return "the write was cut short, usually because the disk is full"
    return None


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(handle)`` on a temporary file, ``fsync``, ``os.replace``.

    Raises :class:`RunFileWriteError` (naming ``path`` and the cause) when the disk is full or
    the folder cannot be written; ``path`` is then unchanged and no temporary file is left.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        cause = _write_failure_cause(err)
        if cause is None:
            raise
        raise RunFileWriteError(
            f"could not write {path}: {cause}. The previous {path.name} (if any) is unchanged and "
            f"no partial file was left. Fix: free space on (or get write permission for) "
            f"{path.parent}, then continue the run with --resume or run the command again."
        ) from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_atomic` for a UTF-8 text file."""
    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


# ---------------------------------------------------------------------- the record
def _metrics(record: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation metrics of a history record (everything but the bookkeeping)."""
    return {k: v for k, v in record.items() if k not in BOOKKEEPING}


@dataclasses.dataclass
class RunRecord:
    """A run's results in memory; :meth:`write` is the one writer of its results files."""

    run_dir: Path
    dataset: str
    backbone: str
    epochs: int
    status: str = "running"
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    plots: dict[str, Any] | None = None
    error: str | None = None
    recorded_epochs_completed: int = 0  # for a record read from a file without history

    @classmethod
    def for_config(cls, cfg: Any, run_dir: str | Path) -> RunRecord:
        """A new record for the run of ``cfg`` (a DictConfig) in ``run_dir``."""
        return cls(
            run_dir=Path(run_dir),
            dataset=str(cfg.data.name),
            backbone=str(cfg.model.backbone),
            epochs=int(cfg.train.epochs),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], run_dir: str | Path) -> RunRecord:
        """A record from the content of a ``results.json``."""
        return cls(
            run_dir=Path(run_dir),
            dataset=str(data.get("dataset")),
            backbone=str(data.get("backbone")),
            epochs=int(data.get("epochs") or 0),
            status=str(data.get("status", "unknown")),
            history=[dict(r) for r in data.get("history") or []],
            best=dict(data["best"]) if data.get("best") else None,
            evaluation=dict(data["evaluation"]) if data.get("evaluation") else None,
            plots=dict(data["plots"]) if data.get("plots") else None,
            error=data.get("error"),
            recorded_epochs_completed=int(data.get("epochs_completed") or 0),
        )

    @classmethod
    def read(cls, run_dir: str | Path, strict: bool = True) -> RunRecord | None:
        """The record in ``run_dir/results.json``; None when there is none.

        A file that is not valid JSON raises :class:`ResultsFileError` naming it (``strict``) or
        counts as none.
        """
        path = Path(run_dir) / RESULTS_JSON
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            if not strict:
                return None
            raise ResultsFileError(
                f"{path} is not valid JSON ({err}); it was not written by pml-proxy-anchor or was "
                "damaged. Fix: delete it; `pml-proxy-anchor eval` writes a new one from the "
                "checkpoints."
            ) from err
        if not isinstance(data, Mapping):
            if not strict:
                return None
            raise ResultsFileError(f"{path} holds a {type(data).__name__}, not a run's results.")
        return cls.from_dict(data, run_dir)

    @property
    def epochs_completed(self) -> int:
        if self.history:
            return int(self.history[-1]["epoch"])
        return self.recorded_epochs_completed

    @property
    def final(self) -> dict[str, Any] | None:
        """The last tested epoch and its metrics."""
        tested = [r for r in self.history if "recall_at_1" in r]
        if not tested:
            return None
        return {"epoch": tested[-1]["epoch"], "metrics": _metrics(tested[-1])}

    def to_dict(self) -> dict[str, Any]:
        """The content of ``results.json`` (with the paper's reference numbers)."""
        out: dict[str, Any] = {
            "status": self.status,
            "run_dir": str(self.run_dir),
            "dataset": self.dataset,
            "backbone": self.backbone,
            "epochs": self.epochs,
            "epochs_completed": self.epochs_completed,
            "final": self.final,
            "best": self.best,
            "history": self.history,
        }
        if self.evaluation:
            out["evaluation"] = self.evaluation
        if self.plots:
            out["plots"] = self.plots
        if self.error:
            out["error"] = self.error
        out["reference"] = reference_numbers(self.dataset, self.backbone)
        return out

    def write(self) -> None:
        """Write ``results.json`` and ``results.md`` (each replaced atomically)."""
        data = self.to_dict()
        write_text_atomic(self.run_dir / RESULTS_JSON, json.dumps(data, indent=2) + "\n")
        write_text_atomic(self.run_dir / RESULTS_MD, render_markdown(data))

    def end(self, status: str, error: str | None = None) -> None:
        """Set the final status (and the reason) and write; a failed write is only logged,
        so the error that ended the run is the one the user sees."""
        self.status, self.error = status, error
        try:
            self.write()
        except OSError as err:  # RunFileWriteError included
            LOGGER.warning(
                "could not record status %r in %s: %s", status, self.run_dir / RESULTS_JSON, err
            )


def refresh_report(run_dir: str | Path) -> str:
    """Rewrite ``results.md`` (and ``results.json``) of a run from ``results.json``; returns the
    markdown. What the ``report`` command does."""
    record = RunRecord.read(run_dir)
    if record is None:
        raise ResultsFileError(
            f"no {RESULTS_JSON} in {run_dir}; expected a run directory written by "
            "`pml-proxy-anchor train`. Fix: check the path (a run writes results.json after "
            "its first epoch)."
        )
    record.write()
    return (Path(run_dir) / RESULTS_MD).read_text(encoding="utf-8")
