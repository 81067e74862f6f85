"""The summary of a sweep: its jobs read from a sweep directory, grouped by parameter setting.

A sweep directory holds one run directory (written by ``pml-proxy-anchor train``) per job, at
depth 1 or 2 (``SWEEP/job`` or ``SWEEP/group/job``); a folder is a job when it carries the run
marker or a ``results.json``. The optional ``sweep.json`` of the launcher names the experiment,
the swept parameters (``params`` or ``parameters``: dotted config keys, or config groups such as
``method`` whose value is in each job's ``params`` there), the budget, and the jobs (a job listed
there without a run directory is reported as not started).

:func:`summarize` reads every job and returns a :class:`Summary`:

* **parameters**: the parameters of ``sweep.json`` except ``train.seed``, plus any other config
  key that differs between jobs of one listed setting (so different configs are never averaged
  together; a miner that follows the loss is no extra parameter). Without ``sweep.json``: every
  flattened config key whose value differs between the finished jobs, except ``train.seed``,
  ``run_dir`` and bookkeeping (:data:`NOT_PARAMETERS`, paths). A spec (``loss``, ``miner``,
  ``sampler``, a regularizer) whose class differs between jobs is one categorical parameter
  shown by its class name (``MultiSimilarityLoss``, with the arguments that differ when one
  class comes with several); a spec whose class is the same everywhere is flattened
  (``loss.ProxyAnchorLoss.alpha``).
* **budget**: the keys that fix a run's compute and data (:func:`is_budget_key`: ``data.*``
  except paths, ``train.epochs``, ``train.iterations_per_epoch``). They must agree between all
  jobs unless swept; otherwise :class:`BudgetMismatchError` names the jobs and values.
* **rows**: one per parameter setting over its finished jobs (one per seed): mean and sample
  standard deviation (ddof=1; 0 with one seed) of the final Recall@K (the last evaluated epoch,
  ``results.json`` ``final``), the epochs to 95 % and the seconds of each seed.
* **failed**: every job that is not ``finished`` (failed, interrupted, running, stopped early) or
  whose ``results.json`` / ``config.yaml`` is missing or damaged, with its status and error; the
  other jobs are still reported.

Definitions: ``epochs_to_95`` of a run is the first epoch whose Recall@1 reaches 95 % of the best
Recall@1 of that run; ``seconds`` is the run's total training time (``elapsed_seconds`` of its
last epoch).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tqdm
from omegaconf import OmegaConf

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.registry import close_matches, parse_spec, spec_name
from pml_proxy_anchor.training.config import SPEC_PATHS
from pml_proxy_anchor.training.config_schema import with_schema_defaults
from pml_proxy_anchor.training.record import RESULTS_JSON, RunRecord
from pml_proxy_anchor.training.run_dir import CONFIG_FILE, MARKER

SWEEP_FILE = "sweep.json"
PARAMETER_FIELDS = ("params", "parameters")  # sweep.json's list of swept keys, either name
SEED_KEY = "train.seed"
MAX_DEPTH = 2
PROGRESS_MIN_JOBS = 20  # a progress bar from this many jobs on
FRACTION_OF_BEST = 0.95  # epochs_to_95
FRACTION_TOLERANCE = 1e-12  # R@1 >= 0.95 * best, up to rounding
#: Config keys that never make a parameter (they do not change what a run learns).
NOT_PARAMETERS = frozenset(
    {
        "run_dir",
        "train.seed",
        "train.device",
        "train.num_workers",
        "train.log_freq",
        "train.dist_timeout_s",
        "train.stop_after_epoch",
        "eval.batch_size",
        "data.skip_corrupt",
    }
)
#: Budget keys outside ``data.*`` (see :func:`is_budget_key`).
BUDGET_TRAIN_KEYS = ("train.epochs", "train.iterations_per_epoch")
STD_DEFINITION = "sample standard deviation over seeds (ddof=1); 0 with one seed"
DEFINITIONS = {
    "recall_at_K": "Recall@K of the last evaluated epoch of each run (results.json 'final')",
    "epochs_to_95": "per seed: the first epoch whose Recall@1 reaches 95 % of that run's best "
    "Recall@1",
    "seconds": "per seed: the run's total training time (elapsed_seconds of its last epoch)",
    "seeds": "train.seed of each run; epochs_to_95 and seconds are in the same order",
}
_ABSENT = "<absent>"


class SweepDirectoryError(UserError, FileNotFoundError):
    """The sweep directory does not exist or is not a directory."""


class EmptySweepDirectoryError(UserError, ValueError):
    """The sweep directory holds no job (no run directory at depth 1 or 2)."""


class SweepFileError(UserError, ValueError):
    """``sweep.json`` is damaged or names a parameter that no job's config has."""


class BudgetMismatchError(UserError, ValueError):
    """Jobs with different budgets (epochs, data) in one report."""


class DuplicateJobError(UserError, ValueError):
    """Two jobs with the same parameter setting and the same seed."""


# ---------------------------------------------------------------------- config helpers
def is_budget_key(key: str) -> bool:
    """Whether a flattened config key fixes a run's compute or data: ``data.*`` except paths
    and ``data.skip_corrupt``, ``train.epochs`` and ``train.iterations_per_epoch``."""
    if key in BUDGET_TRAIN_KEYS:
        return True
    return key.startswith("data.") and not _is_path_key(key) and key not in NOT_PARAMETERS


def _is_path_key(key: str) -> bool:
    return key.rsplit(".", 1)[-1].endswith("root")


def flatten(config: Mapping[str, Any], keep: Iterable[str] = (), prefix: str = "") -> dict:
    """``{dotted key: value}`` of a nested mapping; lists and the keys in ``keep`` stay whole."""
    keep = frozenset(keep)
    out: dict[str, Any] = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value and key not in keep:
            out.update(flatten(value, keep, f"{key}."))
        else:
            out[key] = value
    return out


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key of a nested mapping; raises KeyError when absent."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def canonical(value: Any) -> str:
    """A string equal for equal config values (grouping and comparing)."""
    return json.dumps(value, sort_keys=True, default=str)


def format_value(value: Any) -> str:
    """A value as shown in tables and plots: ``0.001``, ``true``, ``null``, a class name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        name = spec_name(value)
        return name if name is not None else canonical(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------- jobs
@dataclasses.dataclass
class Job:
    """One job of a sweep: its run directory, config and results (or why they are unusable)."""

    name: str  # the path relative to the sweep directory
    path: Path
    config: dict[str, Any] | None = None
    record: RunRecord | None = None
    status: str = "unknown"
    error: str | None = None
    sweep_params: dict[str, Any] = dataclasses.field(default_factory=dict)  # from sweep.json

    def value(self, key: str) -> Any:
        """The value of a parameter: the config's key, else the job's entry in ``sweep.json``
        (a config group such as ``method``), else a marker for absent."""
        value = _value(self.config or {}, key)
        return self.sweep_params.get(key, _ABSENT) if value == _ABSENT else value

    @property
    def finished(self) -> bool:
        return self.status == "finished" and self.error is None

    @property
    def seed(self) -> Any:
        try:
            return lookup(self.config or {}, "train.seed")
        except KeyError:
            return None

    def failure(self) -> dict[str, Any]:
        return {"job": self.name, "status": self.status, "error": self.error or ""}


def _is_job_dir(path: Path) -> bool:
    return (path / MARKER).is_file() or (path / RESULTS_JSON).is_file()


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """The run directories at depth 1 or 2 of ``sweep_dir`` (a job's own folders not searched)."""
    found: list[Path] = []

    def visit(folder: Path, depth: int) -> None:
        for sub in _subdirs(folder):
            if _is_job_dir(sub):
                found.append(sub)
            elif depth < MAX_DEPTH:
                visit(sub, depth + 1)

    visit(sweep_dir, 1)
    return found


def _read_config(path: Path) -> dict[str, Any]:
    """A job's saved config, with the schema keys added since it ran set to their defaults (a
    run from before ``train.precision`` existed ran in fp32 and groups with fp32 runs)."""
    loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if not isinstance(loaded, dict):
        raise ValueError(f"it holds a {type(loaded).__name__}, not a mapping")
    return with_schema_defaults(loaded)


def _check_history(record: RunRecord) -> str | None:
    """Why the history of a finished run cannot be summarized, or None."""
    tested = 0
    for entry in record.history:
        epoch = entry.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            return f"a history entry has epoch {epoch!r}, not an integer"
        for key, value in entry.items():
            if key.startswith("recall_at_") or key in ("seconds", "elapsed_seconds"):
                if not is_number(value) or not math.isfinite(value):
                    return f"epoch {epoch} has {key} = {value!r}, not a finite number"
                if key.startswith("recall_at_") and not 0.0 <= value <= 1.0:
                    return f"epoch {epoch} has {key} = {value!r}, outside 0..1"
        tested += "recall_at_1" in entry
    if not tested:
        return "no evaluated epoch (no recall_at_1 in the history)"
    return None


def read_job(path: Path, sweep_dir: Path) -> Job:
    """A job read from its run directory; a missing or damaged file makes it a failed job."""
    job = Job(name=path.relative_to(sweep_dir).as_posix(), path=path)
    config_file = path / CONFIG_FILE
    try:
        job.config = _read_config(config_file)
    except FileNotFoundError:
        job.status, job.error = "missing", f"no {CONFIG_FILE} in {path}"
    except Exception as err:  # a damaged YAML file, whatever the parser raises
        job.status = "corrupt"
        job.error = f"{config_file} cannot be read: " + " ".join(str(err).split())
    try:
        job.record = RunRecord.read(path)
    except UserError as err:  # ResultsFileError: not JSON, not an object
        job.status, job.error = "corrupt", str(err)
        return job
    except Exception as err:  # fields of the wrong type (from_dict)
        job.status = "corrupt"
        job.error = f"{path / RESULTS_JSON} is not a run's results ({type(err).__name__}: {err})"
        return job
    if job.record is None:
        job.status = "missing"
        job.error = f"no {RESULTS_JSON} in {path} (the run ended before its first epoch)"
        return job
    if job.error is not None:
        return job
    job.status = job.record.status
    if job.status != "finished":
        job.error = job.record.error or _not_finished_reason(job.record)
        return job
    problem = _check_history(job.record)
    if problem is not None:
        job.status, job.error = "corrupt", f"{path / RESULTS_JSON}: {problem}"
    elif job.seed is None or not isinstance(job.seed, int):
        job.status = "corrupt"
        job.error = f"{config_file} has train.seed = {job.seed!r}, not an integer"
    return job


def _not_finished_reason(record: RunRecord) -> str:
    done, planned = record.epochs_completed, record.epochs
    if record.status == "stopped":
        return (
            f"stopped after epoch {done} of {planned} (train.stop_after_epoch); continue it with "
            "`pml-proxy-anchor train RUN_DIR/config.yaml --resume`"
        )
    if record.status == "running":
        return f"still running, or killed, at epoch {done} of {planned}"
    return f"status {record.status!r} at epoch {done} of {planned}"


def read_jobs(sweep_dir: Path) -> list[Job]:
    """Every job of ``sweep_dir`` (a tqdm progress bar for many)."""
    dirs = find_job_dirs(sweep_dir)
    bar = tqdm.tqdm(dirs, desc="reading jobs", unit="job", disable=len(dirs) < PROGRESS_MIN_JOBS)
    return [read_job(path, sweep_dir) for path in bar]


def read_sweep_file(sweep_dir: Path) -> dict[str, Any] | None:
    """The content of ``sweep.json`` (checked), or None when there is none."""
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise SweepFileError(
            f"{path} is not valid JSON ({err}). Fix: delete it (the report then infers the "
            "parameters from the jobs' configs) or write it again with the launcher."
        ) from err
    if not isinstance(data, dict):
        raise SweepFileError(f"{path} holds a {type(data).__name__}, expected a JSON object.")
    for field in PARAMETER_FIELDS:
        params = data.get(field, [])
        if not isinstance(params, list) or not all(isinstance(p, str) and p for p in params):
            raise SweepFileError(
                f"{path}: {field!r} must be a list of dotted config keys, e.g. "
                f'["optimizer.lr"]; got {params!r}.'
            )
    if "experiment" in data and not isinstance(data["experiment"], str):
        raise SweepFileError(f"{path}: 'experiment' must be a string; got {data['experiment']!r}.")
    if not isinstance(data.get("budget") or {}, dict):
        raise SweepFileError(f"{path}: 'budget' must be an object; got {data['budget']!r}.")
    jobs = data.get("jobs") or []
    if not isinstance(jobs, list) or not all(
        isinstance(j, dict)
        and isinstance(j.get("name"), str)
        and isinstance(j.get("params") or {}, dict)
        for j in jobs
    ):
        raise SweepFileError(
            f"{path}: 'jobs' must be a list of objects with a 'name' (the job's folder) and "
            "optionally 'params' (an object) and 'status'."
        )
    return data


def _listed_parameters(meta: Mapping[str, Any] | None) -> list[str] | None:
    """The swept parameters named by ``sweep.json`` (``params`` or ``parameters``) without
    ``train.seed`` (the seeds of a setting are averaged), or None without a list."""
    if not meta or not any(field in meta for field in PARAMETER_FIELDS):
        return None
    listed: list[str] = []
    for field in PARAMETER_FIELDS:
        listed += [p for p in meta.get(field, []) if p not in listed and p != SEED_KEY]
    return listed


def _pending(meta: Mapping[str, Any] | None, jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """The jobs of ``sweep.json`` without a run directory (never started), as failures."""
    found = {job.name for job in jobs}
    return [
        {
            "job": entry["name"],
            "status": str(entry.get("status") or "pending"),
            "error": entry.get("error") or "no run directory: the job has not started",
        }
        for entry in (meta or {}).get("jobs") or []
        if entry["name"] not in found
    ]


# ---------------------------------------------------------------------- summary
@dataclasses.dataclass
class Curve:
    """Recall@1 of one run per evaluated epoch, with the elapsed seconds."""

    epochs: list[int]
    seconds: list[float]
    recall_at_1: list[float]


@dataclasses.dataclass
class Row:
    """One parameter setting: its finished jobs (one per seed) summarized."""

    params: dict[str, Any]  # name -> value as written to summary.json
    key: tuple[str, ...]  # the canonical raw values (grouping, sorting)
    sort_key: tuple
    jobs: list[str]
    seeds: list[int]
    recalls: dict[int, list[float]]  # K -> per seed
    epochs_to_95: list[int]
    seconds: list[float]
    curves: list[Curve]

    @property
    def label(self) -> str:
        """The setting in a few words: ``alpha=32, margin=0.1``."""
        if not self.params:
            return "all runs"
        return ", ".join(f"{short_name(k)}={format_value(v)}" for k, v in self.params.items())

    def recall(self, k: int) -> dict[str, float]:
        return mean_std(self.recalls[k])

    def common_epochs(self) -> list[int]:
        """The epochs every seed of this setting evaluated (none without curves)."""
        if not self.curves:
            return []
        return sorted(set.intersection(*(set(c.epochs) for c in self.curves)))

    def recall_at_1_per_epoch(self) -> dict[str, list]:
        """``{"epoch", "mean", "std"}``: Recall@1 over the seeds at :meth:`common_epochs`."""
        epochs = self.common_epochs()
        per_seed = [[c.recall_at_1[c.epochs.index(e)] for e in epochs] for c in self.curves]
        stats = [mean_std(values) for values in zip(*per_seed)]
        return {
            "epoch": epochs,
            "mean": [stat["mean"] for stat in stats],
            "std": [stat["std"] for stat in stats],
        }

    def to_dict(self, k_values: Sequence[int]) -> dict[str, Any]:
        out: dict[str, Any] = {"params": dict(self.params), "seeds": list(self.seeds)}
        for k in k_values:
            out[f"recall_at_{k}"] = self.recall(k)
        out["epochs_to_95"] = list(self.epochs_to_95)
        out["seconds"] = list(self.seconds)
        out["recall_at_1_per_epoch"] = self.recall_at_1_per_epoch()
        return out


@dataclasses.dataclass
class Summary:
    """A sweep's summary: what ``summary.json`` holds (:meth:`to_dict`)."""

    experiment: str
    budget: dict[str, Any]
    param_names: list[str]
    k_values: list[int]
    rows: list[Row]
    failed: list[dict[str, Any]]
    jobs: int
    plots: list[str] = dataclasses.field(default_factory=list)
    categorical: list[str] = dataclasses.field(default_factory=list)
    files: list[Path] = dataclasses.field(default_factory=list)  # what write_report wrote

    @property
    def all_failed(self) -> bool:
        return not self.rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "budget": dict(self.budget),
            "rows": [row.to_dict(self.k_values) for row in self.rows],
            "param_names": list(self.param_names),
            "k_values": list(self.k_values),
            "std": STD_DEFINITION,
            "definitions": dict(DEFINITIONS),
            "jobs": {"total": self.jobs, "finished": self.jobs - len(self.failed)},
            "failed": [dict(f) for f in self.failed],
            "plots": list(self.plots),
        }


def short_name(key: str) -> str:
    """A parameter's name in tables and legends: the last part of a spec's key
    (``loss.ProxyAnchorLoss.alpha`` -> ``alpha``), the dotted key otherwise."""
    for spec in SPEC_PATHS:
        if key.startswith(f"{spec}.") and key.count(".") > spec.count(".") + 1:
            return key.rsplit(".", 1)[-1]
    return key


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std"}``: the sample standard deviation (ddof=1), 0 for one value."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std}


def epochs_to_fraction(record: RunRecord, fraction: float = FRACTION_OF_BEST) -> int:
    """The first epoch whose Recall@1 reaches ``fraction`` of the run's best Recall@1."""
    tested = [
        (int(r["epoch"]), float(r["recall_at_1"])) for r in record.history if "recall_at_1" in r
    ]
    best = max(r1 for _, r1 in tested)
    threshold = fraction * best - FRACTION_TOLERANCE
    return next(epoch for epoch, r1 in tested if r1 >= threshold)


def total_seconds(record: RunRecord) -> float:
    """The run's training time: ``elapsed_seconds`` of its last epoch (the sum of the epochs'
    ``seconds`` for a record without it)."""
    last = record.history[-1]
    if "elapsed_seconds" in last:
        return float(last["elapsed_seconds"])
    return float(sum(r.get("seconds", 0.0) for r in record.history))


def curve(record: RunRecord) -> Curve:
    tested = [r for r in record.history if "recall_at_1" in r]
    elapsed, seconds = [], 0.0
    for entry in record.history:
        seconds += float(entry.get("seconds", 0.0))
        if "recall_at_1" in entry:
            elapsed.append(float(entry.get("elapsed_seconds", seconds)))
    return Curve(
        epochs=[int(r["epoch"]) for r in tested],
        seconds=elapsed,
        recall_at_1=[float(r["recall_at_1"]) for r in tested],
    )


def final_recalls(record: RunRecord) -> dict[int, float]:
    """``{K: Recall@K}`` of the last evaluated epoch."""
    final = record.final or {"metrics": {}}
    out = {}
    for key, value in final["metrics"].items():
        suffix = key[len("recall_at_") :]
        if key.startswith("recall_at_") and suffix.isdigit():
            out[int(suffix)] = float(value)
    return out


def _differing(flats: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys (in first-seen order) whose canonical values differ between the mappings."""
    keys: dict[str, None] = {}
    for flat in flats:
        keys.update(dict.fromkeys(flat))
    return [key for key in keys if len({canonical(flat.get(key, _ABSENT)) for flat in flats}) > 1]


def _categorical_specs(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The spec paths whose class name differs between the configs."""
    out = []
    for path in SPEC_PATHS:
        names = set()
        for config in configs:
            try:
                value = lookup(config, path)
            except KeyError:
                value = None
            names.add(spec_name(value) if value is not None else None)
        if len(names) > 1:
            out.append(path)
    return out


def _flat(config: Mapping[str, Any], keep: Sequence[str]) -> dict[str, Any]:
    return {
        key: value
        for key, value in flatten(config, keep).items()
        if key not in NOT_PARAMETERS and not _is_path_key(key)
    }


def _value(config: Mapping[str, Any], key: str) -> Any:
    try:
        return lookup(config, key)
    except KeyError:
        return _ABSENT


def choose_parameters(jobs: Sequence[Job], listed: Sequence[str] | None) -> list[str]:
    """The parameter keys of a sweep (see the module docstring)."""
    configs = [job.config or {} for job in jobs]
    keep = _categorical_specs(configs)
    flats = [_flat(config, keep) for config in configs]
    differing = [key for key in _differing(flats) if not is_budget_key(key)]
    if listed is None:
        return differing
    params = list(listed)
    for key in differing:
        if any(key == p or key.startswith(f"{p}.") or p.startswith(f"{key}.") for p in params):
            continue
        groups: dict[tuple, set[str]] = {}
        for job in jobs:
            setting = tuple(canonical(job.value(p)) for p in params)
            groups.setdefault(setting, set()).add(canonical(job.value(key)))
        if any(len(values) > 1 for values in groups.values()):
            params.append(key)  # differs within a listed setting: a parameter too
    return params


def check_listed_parameters(listed: Sequence[str], jobs: Sequence[Job]) -> None:
    """Every parameter of ``sweep.json`` is a key of some job's config or of its ``params`` in
    ``sweep.json`` (a config group); did-you-mean if not."""
    known: set[str] = set()
    for job in jobs:
        flat = flatten(job.config or {})
        known.update(flat, job.sweep_params)
        for key in flat:  # the sections and specs above the leaves too
            parts = key.split(".")
            known.update(".".join(parts[:i]) for i in range(1, len(parts)))
    for key in listed:
        if key not in known:
            close = close_matches(key, known)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise SweepFileError(
                f"{SWEEP_FILE} names the parameter {key!r}, but no job's config.yaml has that "
                f"key.{hint} Fix: list dotted config keys in 'params' (e.g. 'optimizer.lr')."
            )


def check_budget(jobs: Sequence[Job], params: Sequence[str]) -> dict[str, Any]:
    """The budget shared by every job; :class:`BudgetMismatchError` when a key not swept differs."""
    configs = {job.name: job.config for job in jobs if job.config is not None}
    keys: dict[str, None] = {}
    for config in configs.values():
        keys.update(dict.fromkeys(k for k in flatten(config) if is_budget_key(k)))
    budget: dict[str, Any] = {}
    mixed = []
    for key in sorted(keys):
        if any(key == p or key.startswith(f"{p}.") for p in params):
            continue  # swept
        by_value: dict[str, tuple[Any, list[str]]] = {}
        for name, config in configs.items():
            value = _value(config, key)
            by_value.setdefault(canonical(value), (value, []))[1].append(name)
        if len(by_value) == 1:
            budget[key] = next(iter(by_value.values()))[0]
        else:
            parts = "; ".join(
                f"{format_value(value)} in {', '.join(names)}" for value, names in by_value.values()
            )
            mixed.append(f"{key}: {parts}")
    if mixed:
        raise BudgetMismatchError(
            "runs with different budgets mixed in one report: "
            + " | ".join(mixed)
            + ". Fix: report each budget separately (move the jobs into their own sweep "
            "directories), or list the key in sweep.json 'params' if it is what the sweep varies."
        )
    return budget


def _row_params(
    params: Sequence[str], finished: Sequence[Job]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``{param: {canonical raw value: value for summary.json}}`` and the categorical params.

    A spec value is written as its class name; when one class comes with different arguments,
    the arguments that differ are added: ``ProxyAnchorLoss(alpha=16)``.
    """
    shown: dict[str, dict[str, Any]] = {}
    categorical = []
    for param in params:
        raw = {}
        for job in finished:
            value = job.value(param)
            raw.setdefault(canonical(value), value)
        if not all(is_number(v) for v in raw.values()):
            categorical.append(param)
        shown[param] = {c: _spec_label(v, raw.values()) for c, v in raw.items()}
    return shown, categorical


def _spec_label(value: Any, others: Iterable[Any]) -> Any:
    if value == _ABSENT:
        return None
    if not isinstance(value, (Mapping, str)) or spec_name(value) is None:
        return value
    name, args = parse_spec(value)
    same_class = [parse_spec(o)[1] for o in others if spec_name(o) == name]
    differing = sorted(
        {
            k
            for o in same_class
            for k in set(o) | set(args)
            if canonical(o.get(k)) != canonical(args.get(k))
        }
    )
    if not differing:
        return name
    return f"{name}(" + ", ".join(f"{k}={format_value(args.get(k))}" for k in differing) + ")"


def _sort_key(values: Sequence[Any]) -> tuple:
    return tuple((0, v, "") if is_number(v) else (1, 0, format_value(v)) for v in values)


def summarize(sweep_dir: str | Path) -> Summary:
    """Read the sweep directory and summarize it (see the module docstring)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists():
        raise SweepDirectoryError(
            f"sweep directory {sweep_dir} does not exist. Fix: pass the folder a sweep wrote its "
            "jobs into (the multirun folder)."
        )
    if not sweep_dir.is_dir():
        raise SweepDirectoryError(
            f"{sweep_dir} is a file, not a sweep directory. Fix: pass the folder holding the "
            "jobs' run directories."
        )
    meta = read_sweep_file(sweep_dir)
    jobs = read_jobs(sweep_dir)
    pending = _pending(meta, jobs)
    if not jobs:
        listed = f" ({SWEEP_FILE} lists {len(pending)} jobs, none started)" if pending else ""
        raise EmptySweepDirectoryError(
            f"the sweep directory {sweep_dir} holds no job: no run directory (with "
            f"{MARKER} or {RESULTS_JSON}) at depth 1 or 2{listed}. Fix: check the path, or run "
            "the sweep first."
        )
    entries = {entry["name"]: entry for entry in (meta or {}).get("jobs") or []}
    for job in jobs:
        job.sweep_params = dict(entries.get(job.name, {}).get("params") or {})
    listed = _listed_parameters(meta)
    if listed is not None:
        check_listed_parameters(listed, jobs)
    finished = [job for job in jobs if job.finished]
    params = choose_parameters(finished, listed)
    budget = check_budget(jobs, params)
    if meta and meta.get("budget"):  # its other entries (a note); the configs' values win
        budget.update({k: v for k, v in meta["budget"].items() if k not in budget})
    shown, categorical = _row_params(params, finished)

    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in finished:
        key = tuple(canonical(job.value(p)) for p in params)
        groups.setdefault(key, []).append(job)
    k_values = sorted(
        set.intersection(*(set(final_recalls(job.record)) for job in finished))  # type: ignore[arg-type]
        if finished
        else set()
    )
    rows = [_row(key, group, params, shown, k_values) for key, group in groups.items()]
    rows.sort(key=lambda row: row.sort_key)
    experiment = (meta or {}).get("experiment") or sweep_dir.resolve().name
    return Summary(
        experiment=experiment,
        budget=budget,
        param_names=list(params),
        k_values=k_values,
        rows=rows,
        failed=[job.failure() for job in jobs if not job.finished] + pending,
        jobs=len(jobs) + len(pending),
        categorical=categorical,
    )


def _row(
    key: tuple[str, ...],
    group: list[Job],
    params: Sequence[str],
    shown: Mapping[str, Mapping[str, Any]],
    k_values: Sequence[int],
) -> Row:
    group = sorted(group, key=lambda job: (job.seed, job.name))
    seeds = [int(job.seed) for job in group]
    for a, b in zip(group, group[1:]):
        if a.seed == b.seed:
            raise DuplicateJobError(
                f"jobs {a.name} and {b.name} have the same parameters and the same seed "
                f"({a.seed}); each seed of a setting must be one job. Fix: remove one of them "
                "from the sweep directory."
            )
    records = [job.record for job in group]
    values = {p: shown[p][c] for p, c in zip(params, key)}
    return Row(
        params=values,
        key=key,
        sort_key=_sort_key([json.loads(c) for c in key]),
        jobs=[job.name for job in group],
        seeds=seeds,
        recalls={k: [final_recalls(r)[k] for r in records] for k in k_values},  # type: ignore[arg-type]
        epochs_to_95=[epochs_to_fraction(r) for r in records],  # type: ignore[arg-type]
        seconds=[total_seconds(r) for r in records],  # type: ignore[arg-type]
        curves=[curve(r) for r in records],  # type: ignore[arg-type]
    )
