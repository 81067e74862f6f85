"""One job of a sweep: Hydra's task function, run by every launcher (in-process or in a worker).

:func:`run_sweep_job` turns the job's Hydra config into our training config
(:func:`~pml_proxy_anchor.sweeps.experiment.job_spec`: ``load_config(base_config, budget +
overrides)``) and runs it in its folder of the sweep directory, ``SWEEP_DIR/<name>``:

- a run there that reached its end (``finished`` or ``stopped``) with the same config is skipped:
  nothing is recomputed;
- a run with ``checkpoints/last.pt`` is resumed (``training.run(cfg, resume=True)``: a run
  interrupted, failed or killed continues from its last epoch; a larger ``train.epochs`` extends
  a finished one; any other change of the config is refused, naming the keys);
- a run of another sweep named by the experiment's ``reuse_from`` that reached its end with
  exactly this config is copied here instead of run again (:mod:`.reuse`);
- otherwise a new run starts (Hydra created the folder empty; nothing else is written there).

A job never raises for a failed run: it returns ``{"status": "failed", "error": ...}`` so the
launcher goes on with the other jobs (the sweep reports the failures at the end). Ctrl-C still
stops the sweep.

Torch threads: ``PML_PROXY_ANCHOR_THREADS`` (environment) if set, else ``cpu_count // n_jobs``
under the joblib launcher (each job in its own process), else torch's default. The thread count
is restored after the job, so jobs that share a process (the basic launcher) do not leak it;
``training.run`` re-seeds every generator and closes its TensorBoard writer, so one job's state
does not reach the next.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.sweeps.experiment import SWEEP_KEY, JobSpec, SweepSettings, job_spec
from pml_proxy_anchor.sweeps.record import DONE
from pml_proxy_anchor.sweeps.reuse import copy_run, find_finished_run, reuse_dirs
from pml_proxy_anchor.training.checkpoint import LAST
from pml_proxy_anchor.training.config import to_dict
from pml_proxy_anchor.training.config_schema import with_schema_defaults
from pml_proxy_anchor.training.record import RunRecord
from pml_proxy_anchor.training.run import read_saved_config
from pml_proxy_anchor.training.run_dir import CHECKPOINTS, CONFIG_FILE, is_run_directory

THREADS_ENV = "PML_PROXY_ANCHOR_THREADS"
# Hydra 1.3 validates our launcher YAMLs against the plugins' schemas of the same name (wanted) and
# warns that this matching is deprecated; a joblib or submitit worker imports this module (to
# unpickle the task function) before it composes the job's config, so the filter applies there.
warnings.filterwarnings(
    "ignore", message=r"(?s).*is validated against ConfigStore schema with the same name"
)


def job_threads(launcher: Any, cpu_count: int | None = None) -> int | None:
    """Torch threads for a job: ``$PML_PROXY_ANCHOR_THREADS``, else ``cpu_count // n_jobs``
    under the joblib launcher, else None (torch's default)."""
    from pml_proxy_anchor.sweeps.errors import SweepConfigError

    value = os.environ.get(THREADS_ENV)
    if value is not None:
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise SweepConfigError(
                f"{THREADS_ENV}={value!r} must be a whole number >= 1 (torch threads per job)."
            )
        return threads
    target = str(OmegaConf.select(launcher, "_target_", default="") or "")
    if "joblib" not in target.lower():
        return None
    cpus = cpu_count or os.cpu_count() or 1
    n_jobs = int(OmegaConf.select(launcher, "n_jobs", default=1) or 1)
    if n_jobs < 0:  # joblib: -1 is every core, -2 all but one, ...
        n_jobs = max(1, cpus + 1 + n_jobs)
    return max(1, cpus // max(1, n_jobs))


def same_config(saved: dict[str, Any] | None, cfg: DictConfig) -> bool:
    """Whether a run's saved config equals ``cfg`` (its ``run_dir`` aside: a moved sweep
    directory is still the same run; keys added to the schema since the run started count as
    their defaults, :func:`~pml_proxy_anchor.training.config_schema.with_schema_defaults`)."""
    if saved is None:
        return False
    current = to_dict(cfg)
    return {**with_schema_defaults(saved), "run_dir": None} == {**current, "run_dir": None}


def run_job(spec: JobSpec, settings: SweepSettings) -> dict[str, Any]:
    """Skip, resume or start the job's run (see the module docstring); its outcome."""
    from pml_proxy_anchor.training import run

    cfg = spec.config(settings)
    run_dir = spec.run_dir
    last = run_dir / CHECKPOINTS / LAST
    if is_run_directory(run_dir) and last.is_file():
        record = RunRecord.read(run_dir, strict=False)
        saved = read_saved_config(run_dir / CONFIG_FILE)
        if record is not None and record.status in DONE and same_config(saved, cfg):
            return {"status": record.status, "action": "skipped"}
        results = run(cfg, resume=True)
        return {"status": results["status"], "action": "resumed"}
    if not is_run_directory(run_dir) and settings.reuse_from:
        source = find_finished_run(cfg, reuse_dirs(settings.reuse_from, run_dir.parent))
        if source is not None:
            copy_run(source, run_dir)
            record = RunRecord.read(run_dir, strict=False)
            status = record.status if record is not None else "finished"
            return {"status": status, "action": "reused", "reused_from": str(source)}
    results = run(cfg)
    return {"status": results["status"], "action": "started"}


def run_sweep_job(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's task function for one job: run it (:func:`run_job`) with the job's torch threads;
    returns ``{"name", "status", "action", "error", "seconds", "threads"}``."""
    hydra_node = HydraConfig.get()
    settings = SweepSettings.from_config(cfg[SWEEP_KEY])
    started = time.perf_counter()
    threads_before = torch.get_num_threads()
    outcome: dict[str, Any] = {"name": str(hydra_node.job.override_dirname), "error": None}
    try:
        spec = job_spec(cfg, hydra_node, settings)
        threads = job_threads(hydra_node.launcher)
        if threads is not None:
            torch.set_num_threads(threads)
        outcome["threads"] = torch.get_num_threads()
        outcome.update(run_job(spec, settings))
    except KeyboardInterrupt:
        raise
    except Exception as err:  # a failed job must not stop the sweep
        if not isinstance(err, UserError):
            traceback.print_exc()
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        outcome.update(status="failed", error=message)
    finally:
        torch.set_num_threads(threads_before)
    outcome["seconds"] = round(time.perf_counter() - started, 3)
    return outcome
