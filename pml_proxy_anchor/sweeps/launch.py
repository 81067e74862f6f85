"""``pml-proxy-anchor sweep EXPERIMENT [OVERRIDES...]``: many trainings from one command, on Hydra.

Hydra is the sweep layer on top of this package's config loader. The experiment file is Hydra's
primary config (:mod:`.experiment`); its ``hydra.sweeper.params`` and the command line, in
Hydra's override grammar (``key=a,b``, ``range(1,4)``, ``choice(...)``, ``method=glob(*)``),
define the jobs; Hydra's ``BasicSweeper`` expands them and the launcher chosen with
``hydra/launcher=basic|joblib|submitit_slurm`` (``configs/hydra/launcher/``) runs them, each job
through :func:`pml_proxy_anchor.sweeps.job.run_sweep_job`. Always a multirun.

How Hydra is driven: :class:`hydra._internal.hydra.Hydra` (the object behind ``@hydra.main``)
with an explicit config search path -- the experiment's folder, the package's ``configs/sweeps``
(the ``method`` group) and ``configs`` (``hydra/launcher``) -- and :meth:`Hydra.multirun`. Unlike
``@hydra.main`` this neither reads ``sys.argv`` nor calls ``sys.exit``: errors reach the caller
as exceptions (:class:`~.errors.SweepConfigError`, a ``UserError``). Tested with hydra-core 1.3.

Before any job runs, :func:`plan_sweep` checks the whole sweep:

1. composes the experiment (base_config, budget, chosen_lr, sweeper params, launcher);
2. expands the jobs exactly as Hydra's ``BasicSweeper`` does and loads every job's training
   config with :func:`~pml_proxy_anchor.training.load_config` -- an unknown key fails here with
   the loader's did-you-mean message, naming the job; a sweep with nothing swept, or with no job,
   is refused;
3. gives the training config's keys to Hydra (a config stored in Hydra's ``ConfigStore`` and
   added as ``+pml_proxy_anchor_training=base``), so Hydra's own override checks pass;
4. checks the sweep directory: a folder this tool did not make is refused; a job folder holding a
   run of another config is refused (naming the keys) before anything is written.

Layout: ``SWEEP_DIR`` (default ``sweeps/<experiment>``; ``--sweep-dir`` or ``hydra.sweep.dir=``)
holds ``sweep.json`` (:mod:`.record`), Hydra's ``multirun.yaml`` and one run directory per job,
named by Hydra's ``${hydra.job.override_dirname}`` of the swept parameters (seeds included), e.g.
``loss.ProxyAnchorLoss.alpha=8,train.seed=2``. Hydra writes nothing into a job's folder
(``hydra.output_subdir=null``, job logging not configured, ``hydra.job.chdir=false``), so the
folder is the run directory. Running the same command again resumes the sweep: finished jobs are
skipped, unfinished ones resume, new ones start.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.sweeps.errors import EmptySweepError, SweepConfigError
from pml_proxy_anchor.sweeps.experiment import (
    SWEEP_KEY,
    TRAINING_GROUP,
    Experiment,
    JobSpec,
    SweepSettings,
    builtin_experiments,
    chosen_source,
    experiment_summary,
    flatten_settings,
    format_value,
    is_experiment_key,
    job_spec,
    parse_overrides,
    read_chosen_lr,
    resolve_base_config,
    resolve_experiment,
    sweeps_config_dir,
)
from pml_proxy_anchor.sweeps.record import SWEEP_JSON, JobRecord, SweepRecord, status_on_disk
from pml_proxy_anchor.sweeps.reuse import REUSE_KEY, check_reuse_from, copied_from
from pml_proxy_anchor.training.config import builtin_config_dir, to_dict
from pml_proxy_anchor.training.run_dir import RunDirectory, is_run_directory

DEFAULT_SWEEP_ROOT = "sweeps"
# Hydra settings every sweep needs (given after the user's, so they win).
HYDRA_SETTINGS = (
    "hydra.sweep.subdir=${hydra.job.override_dirname}",
    "hydra.output_subdir=null",
    "hydra.job.chdir=false",
    "hydra/job_logging=none",
    "hydra/hydra_logging=none",
)
HYDRA_DEFAULT_SWEEP_DIR = "multirun/"  # Hydra's own default: replaced by sweeps/<experiment>
MAX_NAME_BYTES = 255
# See job.py: the launcher YAMLs are validated against the plugins' schemas of the same name.
_SCHEMA_WARNING = r"(?s).*is validated against ConfigStore schema with the same name"


@dataclasses.dataclass
class SweepPlan:
    """A checked sweep: its settings, jobs and record, and what Hydra needs to launch it."""

    experiment: Experiment
    settings: SweepSettings
    sweep_dir: Path
    launcher: str
    jobs: list[JobSpec]
    record: SweepRecord
    hydra_overrides: list[str]  # everything Hydra's multirun gets
    hydra: Any  # hydra._internal.hydra.Hydra

    def launch(self) -> int:
        """Run the jobs through Hydra; write ``sweep.json``; 0, or 1 when a job failed."""
        from hydra.core.utils import JobStatus

        from pml_proxy_anchor.sweeps.job import run_sweep_job
        from pml_proxy_anchor.training import RunInterrupted

        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_SCHEMA_WARNING)
                batches = self.hydra.multirun(
                    config_name=self.experiment.config_name,
                    task_function=run_sweep_job,
                    overrides=self.hydra_overrides,
                    with_log_configuration=False,
                )
        except KeyboardInterrupt:
            self.record.refresh_from_disk()
            self.record.write()
            raise RunInterrupted(
                f"sweep interrupted; {self.record.path} lists each job's state. Continue with the "
                "same command: finished jobs are skipped, the interrupted one resumes from its "
                "last epoch."
            ) from None
        except BaseException:
            self.record.refresh_from_disk()
            self.record.write()
            raise
        finally:
            from hydra.core.global_hydra import GlobalHydra

            GlobalHydra.instance().clear()
        known = {job.name for job in self.record.jobs}
        for batch in batches:
            for result in batch:
                if result.status == JobStatus.COMPLETED:
                    outcome = dict(result.return_value)
                else:  # an error outside the job's own handling
                    outcome = {"status": "failed", "error": repr(result._return_value)}
                    outcome["name"] = str(result.hydra_cfg.hydra.job.override_dirname)
                if outcome.get("name") in known:
                    self.record.update(outcome["name"], outcome)
        self.record.write()
        print(summary_text(self.record))
        return 1 if self.record.failed() else 0


def summary_text(record: SweepRecord) -> str:
    counts: dict[str, int] = {}
    for job in record.jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    lines = [
        f"sweep {record.experiment}: {len(record.jobs)} jobs in {record.sweep_dir} ("
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + f"); record: {record.path}"
    ]
    for job in record.failed():
        lines.append(f"  FAILED {job.name}: {job.error}")
    if record.failed():
        lines.append(
            "Fix the cause and run the same command again: finished jobs are skipped, failed "
            "ones resume from their last epoch (or start again)."
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- Hydra
def _is_hydra_override(text: str) -> bool:
    key = text.split("=", 1)[0].lstrip("+~")
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _create_hydra(experiment: Experiment) -> Any:
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    search_path = create_config_search_path(str(experiment.search_dir))
    main = SearchPathQuery(provider="main")
    # After the experiment's folder: the shared config groups, then hydra/launcher configs.
    search_path.append("pml-proxy-anchor", f"file://{builtin_config_dir()}", anchor=main)
    search_path.append("pml-proxy-anchor", f"file://{sweeps_config_dir()}", anchor=main)
    GlobalHydra.instance().clear()
    return Hydra.create_main_hydra2(task_name="sweep", config_search_path=search_path)


def _store_training(node: dict[str, Any]) -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group=TRAINING_GROUP, name="base", node=node, package="_global_")


def _compose(hydra: Any, experiment: Experiment, overrides: list[str]) -> DictConfig:
    from hydra.errors import HydraException
    from hydra.types import RunMode

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SCHEMA_WARNING)
            return hydra.compose_config(
                config_name=experiment.config_name,
                overrides=overrides,
                run_mode=RunMode.MULTIRUN,
                with_log_configuration=False,
            )
    except HydraException as err:
        raise SweepConfigError(f"experiment {experiment.name}: {err}".strip()) from None


def _groups(cfg: DictConfig) -> list[str]:
    return [
        str(g)
        for g in cfg.hydra.runtime.choices
        if not str(g).startswith("hydra/") and g != TRAINING_GROUP
    ]


# ---------------------------------------------------------------------- the plan
def plan_sweep(
    experiment_name: str, overrides: Sequence[str] = (), sweep_dir: str | Path | None = None
) -> SweepPlan:
    """Check a sweep completely (every job's config, the sweep directory) without running it.

    Hydra's global state stays set up for :meth:`SweepPlan.launch` (which clears it when it
    returns); when the check fails it is cleared here."""
    from hydra.core.global_hydra import GlobalHydra

    try:
        return _plan_sweep(experiment_name, overrides, sweep_dir)
    except BaseException:
        GlobalHydra.instance().clear()
        raise


def _plan_sweep(
    experiment_name: str, overrides: Sequence[str], sweep_dir: str | Path | None
) -> SweepPlan:
    experiment = resolve_experiment(experiment_name)
    overrides = [str(o) for o in overrides]
    hydra_overrides = [o for o in overrides if _is_hydra_override(o)]
    task = [o for o in overrides if not _is_hydra_override(o)]
    if sweep_dir is not None:
        hydra_overrides.append(f"hydra.sweep.dir={format_value(str(sweep_dir))}")
    hydra = _create_hydra(experiment)
    _store_training({})  # a placeholder, to read the experiment's settings
    fixed = [*hydra_overrides, *HYDRA_SETTINGS, f"+{TRAINING_GROUP}=base"]

    # 1. The experiment's settings (command-line values of its own keys included).
    parsed_task = parse_overrides(task, hydra.config_loader)
    experiment_keys = [o for o in parsed_task if is_experiment_key(o.key_or_group)]
    for override in experiment_keys:
        if override.is_sweep_override():
            raise SweepConfigError(
                f"{override.input_line}: {override.key_or_group} is a setting of the experiment "
                "and cannot be swept. Fix: sweep training keys (e.g. train.epochs=4,8)."
            )
    probe = _compose(hydra, experiment, [*fixed, *(o.input_line for o in experiment_keys)])
    sweeper = str(OmegaConf.select(probe, "hydra.sweeper._target_", default=""))
    if not sweeper.endswith("BasicSweeper"):
        raise SweepConfigError(
            f"experiment {experiment.name} uses the sweeper {sweeper}; sweeps of "
            "pml-proxy-anchor need Hydra's basic sweeper (hydra/sweeper=basic), whose job list "
            "is known in advance (resumable folders)."
        )
    raw_dir = OmegaConf.to_container(probe.hydra.sweep, resolve=False)["dir"]  # type: ignore[index]
    if str(raw_dir).startswith(HYDRA_DEFAULT_SWEEP_DIR):
        default_dir = Path(DEFAULT_SWEEP_ROOT) / experiment.name
        fixed.insert(0, f"hydra.sweep.dir={format_value(str(default_dir))}")
    launcher = str(probe.hydra.runtime.choices.get("hydra/launcher"))
    groups = _groups(probe)
    base_config = resolve_base_config(OmegaConf.select(probe, "base_config"), experiment)
    budget = flatten_settings(
        OmegaConf.to_container(probe.budget, resolve=True) if "budget" in probe else None,
        f"experiment {experiment.name}: budget",
    )
    chosen_raw = probe.get("chosen_lr")
    chosen = read_chosen_lr(
        OmegaConf.to_container(chosen_raw) if OmegaConf.is_config(chosen_raw) else chosen_raw,
        experiment,
    )

    reuse_raw = probe.get(REUSE_KEY)
    reuse_from = check_reuse_from(
        OmegaConf.to_container(reuse_raw) if OmegaConf.is_config(reuse_raw) else reuse_raw,
        f"experiment {experiment.name}",
    )

    # 2. The jobs, as Hydra's BasicSweeper expands them.
    params_node = OmegaConf.select(probe, "hydra.sweeper.params")
    params = OmegaConf.to_container(params_node, resolve=False) if params_node else {}
    assert isinstance(params, dict)
    param_texts = [f"{key}={value}" for key, value in params.items()]
    job_task = [o.input_line for o in parsed_task if not is_experiment_key(o.key_or_group)]
    parsed = parse_overrides([*param_texts, *job_task], hydra.config_loader)
    parameters = list(
        dict.fromkeys(
            [o.key_or_group for o in parsed[: len(param_texts)]]
            + [o.key_or_group for o in parsed[len(param_texts) :] if o.is_sweep_override()]
        )
    )
    for override in parsed:
        if override.key_or_group == "run_dir":
            raise SweepConfigError(
                f"{override.input_line}: each job runs in its own folder of the sweep directory "
                "(SWEEP_DIR/<job>). Fix: drop run_dir; choose the sweep directory with "
                "--sweep-dir or hydra.sweep.dir=."
            )
    if not parameters:
        raise EmptySweepError(
            f"experiment {experiment.name} sweeps nothing: it has no hydra.sweeper.params and no "
            "override on the command line has several values. Fix: give a parameter several "
            "values (e.g. train.seed=1,2,3), or run one training with `pml-proxy-anchor train`."
        )
    empty = [
        o.input_line
        for o in parsed
        if o.is_sweep_override() and o.is_discrete_sweep() and not list(o.sweep_string_iterator())
    ]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.errors import HydraException

    try:
        (job_lists,) = BasicSweeper.split_arguments(parsed, None)
    except HydraException as err:
        raise SweepConfigError(f"experiment {experiment.name}: {err}") from None
    if empty or not job_lists:
        raise EmptySweepError(
            f"the sweep of experiment {experiment.name} has no job: "
            f"{', '.join(empty) or 'a swept parameter'} has no value. Fix: give it at least one "
            "value (e.g. range(1,4) is 1, 2, 3; range(1,1) is empty)."
        )

    settings = SweepSettings(
        experiment=experiment.name,
        experiment_file=str(experiment.file),
        base_config=base_config,
        budget=budget,
        chosen_lr=chosen,
        chosen_lr_source=chosen_source(chosen_raw, experiment),
        parameters=parameters,
        reuse_from=reuse_from,
    )
    base_cfg = settings.load([])  # the base config and the budget, checked

    # 3. The training keys for Hydra; the job folders named by the swept parameters only.
    _store_training({**to_dict(base_cfg), SWEEP_KEY: settings.to_dict()})
    keys = [o.key_or_group for o in parsed_task] + [TRAINING_GROUP]
    excluded = sorted({k for k in keys if k not in parameters})
    exclude = ",".join(f"'{k}'" for k in excluded)
    fixed.append(f"hydra.job.config.override_dirname.exclude_keys=[{exclude}]")
    master_overrides = [*fixed, *task]
    master = _compose(hydra, experiment, master_overrides)
    sweep_dir_path = Path(str(master.hydra.sweep.dir))

    # 4. Every job's training config, with the group contents of its choices.
    probes: dict[tuple[str, ...], DictConfig] = {}
    jobs: list[JobSpec] = []
    configs = []
    for index, texts in enumerate(job_lists):
        group_texts = tuple(t for t in texts if t.split("=", 1)[0].lstrip("+") in groups)
        if group_texts not in probes:
            probes[group_texts] = _compose(hydra, experiment, [*fixed, *group_texts])
        group_cfg = probes[group_texts]
        name = ",".join(sorted(t for t in texts if t.split("=", 1)[0].lstrip("+") in parameters))
        try:
            spec = job_spec(
                group_cfg,
                group_cfg.hydra,
                settings,
                texts=[*texts, f"+{TRAINING_GROUP}=base"],
                name=name,
                sweep_dir=sweep_dir_path,
            )
            cfg = spec.config(settings)
        except UserError as err:
            raise SweepConfigError(
                f"job {index + 1} of {len(job_lists)} ({' '.join(texts)}): {err}"
            ) from None
        _check_name(spec.name, experiment)
        jobs.append(spec)
        configs.append(cfg)
    _check_sweep_dir(sweep_dir_path, experiment, jobs, configs)

    common = {
        o.key_or_group: o.value()
        for o in parse_overrides(job_task)
        if o.key_or_group not in parameters
    }
    budget_values = {
        text.split("=", 1)[0]: parse_overrides([text])[0].value() for text in settings.budget
    }
    resolved = {
        key: OmegaConf.select(configs[0], key)
        for key in ("data.name", "train.epochs")
        if key not in parameters
    }
    record = SweepRecord(
        sweep_dir=sweep_dir_path,
        experiment=experiment.name,
        experiment_file=str(experiment.file),
        base_config=base_config,
        parameters=parameters,
        budget={**resolved, **budget_values, **common},
        launcher=launcher,
        command=shlex.join(["pml-proxy-anchor", "sweep", experiment_name, *overrides]),
        jobs=[
            JobRecord(
                name=spec.name,
                overrides=[t for t in spec.overrides if not t.startswith(f"+{TRAINING_GROUP}=")],
                params=spec.params,
                seed=int(cfg.train.seed),
                status=status_on_disk(spec.run_dir),
                reused_from=copied_from(spec.run_dir),
            )
            for spec, cfg in zip(jobs, configs)
        ],
    )
    return SweepPlan(
        experiment=experiment,
        settings=settings,
        sweep_dir=sweep_dir_path,
        launcher=launcher,
        jobs=jobs,
        record=record,
        hydra_overrides=master_overrides,
        hydra=hydra,
    )


def _check_name(name: str, experiment: Experiment) -> None:
    if "/" in name or "\\" in name or len(name.encode()) > MAX_NAME_BYTES or name in (".", ".."):
        raise SweepConfigError(
            f"experiment {experiment.name}: the job folder name {name!r} (the swept parameters "
            "and their values) is not a usable folder name (a '/' in a value, or longer than "
            f"{MAX_NAME_BYTES} bytes). Fix: sweep short values; for whole settings (a loss with "
            "its miner and sampler) use a config group such as method=... (configs/sweeps/method)."
        )


def _check_sweep_dir(
    sweep_dir: Path, experiment: Experiment, jobs: list[JobSpec], configs: list[DictConfig]
) -> None:
    """Refuse a folder the tool did not make, another experiment's sweep, a job folder that is
    not a run directory, and runs of another config -- before anything is written."""
    from pml_proxy_anchor.sweeps.record import read_sweep
    from pml_proxy_anchor.training.run import check_resume_config

    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise SweepConfigError(f"sweep directory {sweep_dir} exists and is not a directory.")
    if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
        if not (sweep_dir / SWEEP_JSON).is_file():
            raise SweepConfigError(
                f"sweep directory {sweep_dir} is not empty and holds no {SWEEP_JSON}: it was not "
                "made by `pml-proxy-anchor sweep`; refusing to write into it. Fix: choose another "
                "--sweep-dir (a new or empty folder)."
            )
        previous = read_sweep(sweep_dir).get("experiment")
        if previous != experiment.name:
            raise SweepConfigError(
                f"sweep directory {sweep_dir} holds the sweep of experiment {previous!r}, not "
                f"{experiment.name!r}. Fix: choose another --sweep-dir."
            )
    mismatched = []
    for spec, cfg in zip(jobs, configs):
        folder = RunDirectory(spec.run_dir)
        if not spec.run_dir.exists():
            continue
        if not is_run_directory(spec.run_dir):
            if folder.entries():
                raise SweepConfigError(
                    f"job folder {spec.run_dir} holds files ({', '.join(folder.entries()[:5])}) "
                    "but no run made by pml-proxy-anchor; refusing to write into it. Fix: move "
                    "them away, or choose another --sweep-dir."
                )
            continue
        try:
            check_resume_config(spec.run_dir, cfg)
        except UserError as err:
            mismatched.append(f"{spec.name}: {str(err).split('(', 1)[-1].split(')')[0]}")
    if mismatched:
        raise SweepConfigError(
            f"sweep directory {sweep_dir} holds runs of another config ({'; '.join(mismatched[:3])}"
            f"{'; ...' if len(mismatched) > 3 else ''}). Only train.epochs and a few other keys "
            "may change when a sweep continues. Fix: choose another --sweep-dir, or run the "
            'command the sweep started with (sweep.json, "command").'
        )


# ---------------------------------------------------------------------- the command
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pml-proxy-anchor sweep",
        description=(
            "Run many trainings from one command (Hydra multirun): every combination of the "
            "swept parameters, resumable. EXPERIMENT is a built-in experiment "
            "(configs/sweeps/<dataset>/<experiment>.yaml) or a YAML file."
        ),
        epilog=(
            "examples:\n"
            "  pml-proxy-anchor sweep --list\n"
            "  pml-proxy-anchor sweep omniglot/alpha_delta\n"
            "  pml-proxy-anchor sweep omniglot/batch_size hydra/launcher=joblib train.seed=1,2\n"
            "  pml-proxy-anchor sweep my_sweep.yaml optimizer.lr=1e-4,3e-4 --sweep-dir sweeps/lr\n"
            "  pml-proxy-anchor sweep --choose-lr sweeps/omniglot/compare_lr --out chosen.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiment", nargs="?", help="built-in experiment name or YAML path")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides: key=value, key=a,b,c, hydra/launcher=joblib"
    )
    parser.add_argument("--sweep-dir", help="where the sweep goes (default sweeps/<experiment>)")
    parser.add_argument(
        "--dry-run", action="store_true", help="check every job and list them; run nothing"
    )
    parser.add_argument("--list", action="store_true", help="list the built-in experiments")
    parser.add_argument(
        "-m", "--multirun", action="store_true", help="accepted for Hydra users: always a multirun"
    )
    parser.add_argument(
        "--choose-lr",
        metavar="SWEEP_DIR",
        help="write the best learning rate of each method of a learning-rate sweep (--out)",
    )
    parser.add_argument("--out", help="with --choose-lr: the JSON file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``pml-proxy-anchor sweep ...``; returns the exit code (1 when a job failed).

    Errors a user can fix raise :class:`~pml_proxy_anchor.errors.UserError` (the command line
    prints them with exit code 2)."""
    from hydra.core.global_hydra import GlobalHydra

    args = _parser().parse_intermixed_args(argv)
    if args.choose_lr:
        from pml_proxy_anchor.sweeps.chosen_lr import choose_lr_command

        return choose_lr_command(args.choose_lr, args.out)
    if args.list or args.experiment is None:
        print("Built-in sweep experiments (pml-proxy-anchor sweep NAME):")
        for name in builtin_experiments():
            print(f"  {name:28s} {experiment_summary(name)}")
        return 0
    try:
        plan = plan_sweep(args.experiment, args.overrides, sweep_dir=args.sweep_dir)
        print(
            f"sweep {plan.experiment.name}: {len(plan.jobs)} jobs over "
            f"{', '.join(plan.settings.parameters)} in {plan.sweep_dir} "
            f"(launcher {plan.launcher}; base config {plan.settings.base_config})"
        )
        for job in plan.record.jobs:
            print(f"  [{job.status:>11s}] {job.name}")
        if args.dry_run:
            return 0
        plan.record.write()
        return plan.launch()
    finally:
        GlobalHydra.instance().clear()


__all__ = ["SweepPlan", "main", "plan_sweep", "summary_text"]
