"""The run-directory policy (training/run_dir.py): marker, lock, overwrite, resume.

No training here: ``run()`` claims its directory before it builds anything, so each refusal is
checked through the real ``run()`` in well under a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.training import CheckpointNotFoundError, load_config, run
from pml_proxy_anchor.training.run_dir import (
    LOCK_FILE,
    MARKER,
    RunDirectory,
    RunDirectoryInUseError,
    RunDirectoryRefusedError,
    is_run_directory,
    run_dir_for_config_file,
)
from tests.training.fixture_run import fixture_overrides


def _cfg(run_dir: Path, data_root: Path | None = None) -> object:
    return load_config(fixture_overrides(data_root or run_dir.parent / "no_data", run_dir))


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _made_run(path: Path, *, finished_epoch: bool = True) -> Path:
    """A run directory as the tool leaves it (marker and the tool's entries)."""
    directory = RunDirectory(path)
    directory.claim(resume=False, overwrite=False)
    directory.begin("run_dir: x\n", resume=False)
    directory.release()
    (path / "checkpoints").mkdir()
    if finished_epoch:
        (path / "checkpoints" / "last.pt").write_bytes(b"state")
    (path / "logs" / "csv").mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"status": "finished", "epochs": 2}))
    return path


def test_a_users_folder_with_common_names_is_never_touched(tmp_path: Path) -> None:
    """config.yaml and logs/ do not make a run directory; --overwrite does not delete it."""
    project = tmp_path / "my_project"
    (project / "logs").mkdir(parents=True)
    (project / "logs" / "notes.txt").write_text("mine")
    (project / "config.yaml").write_text("mine: 1\n")
    (project / "checkpoints").mkdir()
    before = _tree(project)
    for overwrite in (False, True):
        with pytest.raises(RunDirectoryRefusedError, match=r"not empty \(checkpoints, config\.ya"):
            run(_cfg(project), overwrite=overwrite)
    assert _tree(project) == before
    assert sorted(p.name for p in project.iterdir()) == ["checkpoints", "config.yaml", "logs"]
    assert not is_run_directory(project)


def test_overwrite_refuses_a_run_directory_holding_foreign_files(tmp_path: Path) -> None:
    run_dir = _made_run(tmp_path / "run")
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "checkpoints" / "my_copy.pt").write_bytes(b"mine")
    before = _tree(run_dir)
    with pytest.raises(
        RunDirectoryRefusedError, match=r"did not write \(checkpoints/my_copy\.pt, notes\.txt\)"
    ):
        run(_cfg(run_dir), overwrite=True)
    assert _tree(run_dir) == before


def test_a_finished_run_needs_overwrite_or_resume(tmp_path: Path) -> None:
    run_dir = _made_run(tmp_path / "run")
    with pytest.raises(
        RunDirectoryRefusedError, match=r"finished run \(0 of 2.*--resume.*--overwrite"
    ):
        run(_cfg(run_dir))
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == b"state"


def test_replacing_a_marked_run_removes_only_the_tools_entries(tmp_path: Path) -> None:
    run_dir = _made_run(tmp_path / "run")
    old_id = json.loads((run_dir / MARKER).read_text())["run_id"]
    directory = RunDirectory(run_dir)
    directory.claim(resume=False, overwrite=True)
    directory.begin("run_dir: new\n", resume=False)
    directory.release()
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([MARKER, LOCK_FILE, "config.yaml"])
    marker = json.loads((run_dir / MARKER).read_text())
    assert marker["run_id"] != old_id and marker["version"] == 1
    assert marker["written"] == [
        "config.yaml",
        "checkpoints/",
        "logs/",
        "results.json",
        "results.md",
        "plots/",
    ]
    assert (run_dir / "config.yaml").read_text() == "run_dir: new\n"


def test_resume_keeps_the_run_id_and_deletes_nothing(tmp_path: Path) -> None:
    run_dir = _made_run(tmp_path / "run")
    (run_dir / "notes.txt").write_text("mine")  # anything may sit beside a run being resumed
    old_id = json.loads((run_dir / MARKER).read_text())["run_id"]
    directory = RunDirectory(run_dir)
    directory.claim(resume=True, overwrite=False)
    directory.begin("run_dir: x\n", resume=True)
    directory.release()
    assert json.loads((run_dir / MARKER).read_text())["run_id"] == old_id
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == b"state"


def test_resume_without_a_finished_epoch_says_to_start_over(tmp_path: Path) -> None:
    run_dir = _made_run(tmp_path / "run", finished_epoch=False)
    with pytest.raises(CheckpointNotFoundError, match=r"never finished an epoch.*--overwrite"):
        RunDirectory(run_dir).claim(resume=True, overwrite=False)
    with pytest.raises(CheckpointNotFoundError, match=r"not a run directory made by"):
        RunDirectory(tmp_path / "elsewhere").claim(resume=True, overwrite=False)


def test_a_live_run_is_refused_with_its_pid(tmp_path: Path) -> None:
    run_dir = _made_run(tmp_path / "run")
    holder = RunDirectory(run_dir)
    holder.claim(resume=True, overwrite=False)
    try:
        assert RunDirectory(run_dir).in_use()
        for kwargs in ({}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(RunDirectoryInUseError, match=rf"PID {os.getpid()} holds"):
                run(_cfg(run_dir), **kwargs)  # type: ignore[arg-type]
    finally:
        holder.release()
    assert not RunDirectory(run_dir).in_use()
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == b"state"


def test_a_killed_runs_lock_is_free_at_once(tmp_path: Path) -> None:
    """The OS releases the flock of a process killed with SIGKILL: the run can be resumed."""
    run_dir = _made_run(tmp_path / "run")
    holder = textwrap.dedent(
        f"""
        import fcntl, os, sys, time
        handle = open({str(run_dir / LOCK_FILE)!r}, "a+")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.seek(0); handle.truncate(); handle.write(f"{{os.getpid()}}\\n"); handle.flush()
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryInUseError, match=rf"PID {child.pid} holds"):
            RunDirectory(run_dir).claim(resume=True, overwrite=False)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    directory = RunDirectory(run_dir)
    directory.claim(resume=True, overwrite=False)
    assert (run_dir / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    directory.release()


def test_a_run_that_fails_to_build_leaves_no_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "new_run"
    with pytest.raises(UserError):  # the fixture's data root does not exist
        run(_cfg(run_dir, tmp_path / "missing_data"))
    assert not (tmp_path / "runs").exists()


def test_run_dir_for_config_file_only_for_a_marked_run(tmp_path: Path) -> None:
    run_dir = _made_run(tmp_path / "run")
    assert run_dir_for_config_file(run_dir / "config.yaml") == run_dir
    assert run_dir_for_config_file(str(run_dir / "config.yaml")) == run_dir
    assert run_dir_for_config_file(run_dir) is None
    assert run_dir_for_config_file(run_dir / "results.json") is None
    plain = tmp_path / "project"
    plain.mkdir()
    (plain / "config.yaml").write_text("a: 1\n")
    assert run_dir_for_config_file(plain / "config.yaml") is None
    assert run_dir_for_config_file(tmp_path / "missing" / "config.yaml") is None


def test_a_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(RunDirectoryRefusedError, match="is not a directory"):
        run(_cfg(target))
    assert target.read_text() == "x"


def test_an_older_run_directory_without_the_marker_can_be_resumed(tmp_path: Path) -> None:
    """Resuming deletes nothing, so a run made before the marker existed may continue."""
    run_dir = _made_run(tmp_path / "run")
    (run_dir / MARKER).unlink()
    directory = RunDirectory(run_dir)
    directory.claim(resume=True, overwrite=False)
    directory.begin("run_dir: x\n", resume=True)
    directory.release()
    assert is_run_directory(run_dir)
    with pytest.raises(RunDirectoryRefusedError):  # but never replaced without its marker
        (run_dir / MARKER).unlink()
        RunDirectory(run_dir).claim(resume=False, overwrite=True)
