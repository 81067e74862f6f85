"""Sweep experiments: where they are, what they declare, and how a job's overrides become a config.

An *experiment* is a Hydra primary config (YAML) that names a training config and the parameters
to sweep; ``pml-proxy-anchor sweep EXPERIMENT`` runs one training per combination. The built-in
experiments live in the package's ``configs/sweeps/<dataset>/<experiment>.yaml``
(:func:`builtin_experiments`: ``omniglot/alpha_delta``, ``cub200/compare``, ...); any other YAML
file works by path. An experiment file holds::

    defaults:                  # optional: config groups whose options are swept (see below)
      - /method: proxy_anchor
      - _self_
    base_config: omniglot      # the training config: a built-in name or a YAML path (relative
                               # to the experiment file), loaded by training.load_config
    budget:                    # settings of every job (nested keys; registry specs replace)
      train: {epochs: 6}
    chosen_lr: chosen_lr.json  # optional: the learning rate of each `method` option
    reuse_from: [compare_lr]   # optional: sweeps whose finished runs with a job's exact config
                               # are copied instead of run again (see :mod:`.reuse`)
    hydra:
      sweeper:
        params:                # Hydra's sweep syntax: a,b,c / range(a,b,step) / choice(...)
          loss.ProxyAnchorLoss.alpha: 4,8,16,32,64
          train.seed: 1,2,3

Keys of the training config are swept with Hydra's override grammar, on the command line too
(``loss.ProxyAnchorLoss.alpha=4,8``). Settings that must change together (a loss with its miner
and sampler) are a Hydra *config group*: ``configs/sweeps/method/<option>.yaml`` holds training
keys (``loss``, ``miner``, ``sampler``, ...) and ``method=proxy_anchor,multi_similarity`` sweeps
its options. ``chosen_lr`` maps each ``method`` option to its learning rate (a JSON or YAML file,
or a mapping); a job sets ``optimizer.lr`` from it (see :mod:`.chosen_lr`).

A job's training config is ``load_config(base_config, budget + group contents + chosen lr + the
job's own overrides + [run_dir=...])`` (:func:`job_spec`): this package's loader, with its
checks, did-you-mean hints and spec-replacing merge, on the values Hydra parsed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from pml_proxy_anchor import registry
from pml_proxy_anchor.sweeps.errors import ExperimentNotFoundError, SweepConfigError
from pml_proxy_anchor.training.config import SPEC_PATHS, builtin_config_dir, load_config

GROUPS_DIR = "method"  # config groups shared by the experiments, in configs/sweeps/
TRAINING_GROUP = "pml_proxy_anchor_training"  # the training config, stored for Hydra (launch.py)
SWEEP_KEY = "pml_sweep"  # the resolved experiment settings inside every job's config
# The experiment's own keys (not training keys).
EXPERIMENT_KEYS = ("base_config", "budget", "chosen_lr", "train_images", "reuse_from")
METHOD_GROUP = "method"


def sweeps_config_dir() -> Path:
    """The folder of the built-in sweep experiments (``configs/sweeps`` of the package)."""
    return builtin_config_dir() / "sweeps"


def builtin_experiments() -> list[str]:
    """The names of the built-in experiments (``omniglot/alpha_delta``, ...), sorted."""
    root = sweeps_config_dir()
    if not root.is_dir():
        return []
    return sorted(
        f"{path.parent.name}/{path.stem}"
        for path in root.glob("*/*.yaml")
        if path.parent.name != GROUPS_DIR
    )


def experiment_summary(name: str) -> str:
    """The first comment line of a built-in experiment (what it sweeps), for listings."""
    for line in (sweeps_config_dir() / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#") and line.lstrip("# ").strip():
            return line.lstrip("# ").strip()
    return ""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An experiment file: its name (``omniglot/alpha_delta``, or the file's stem) and path."""

    name: str
    file: Path

    @property
    def search_dir(self) -> Path:
        """Hydra's primary config folder: the experiment's own folder."""
        return self.file.parent

    @property
    def config_name(self) -> str:
        return self.file.stem


def resolve_experiment(text: str) -> Experiment:
    """The experiment ``text`` names: an existing YAML file (``.yaml`` optional) or a built-in
    experiment; otherwise an :class:`ExperimentNotFoundError` with the closest names."""
    if not isinstance(text, str) or not text.strip():
        raise ExperimentNotFoundError(
            f"a sweep needs an experiment: a built-in name ({', '.join(builtin_experiments())}) "
            f"or the path of a YAML file; got {text!r}."
        )
    path = Path(text)
    for candidate in (path, path.with_name(path.name + ".yaml")):
        if candidate.is_file() and candidate.suffix in (".yaml", ".yml"):
            return Experiment(name=candidate.stem, file=candidate.resolve())
    stem = text[: -len(".yaml")] if text.endswith(".yaml") else text
    known = builtin_experiments()
    if stem in known:
        return Experiment(name=stem, file=sweeps_config_dir() / f"{stem}.yaml")
    close = registry.close_matches(stem, known, n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ExperimentNotFoundError(
        f"there is no sweep experiment {text!r} (no such YAML file, and no built-in experiment of "
        f"that name).{hint} Built-in experiments: {', '.join(known)}."
    )


# ---------------------------------------------------------------------- values and overrides
def format_value(value: Any) -> str:
    """``value`` as text our config loader parses back to the same value (YAML flow style)."""
    text = yaml.safe_dump({"v": value}, default_flow_style=True, width=math.inf, sort_keys=False)
    text = text.strip()
    assert text.startswith("{v: ") and text.endswith("}"), text
    return text[len("{v: ") : -1]


def flatten_settings(settings: Any, where: str, prefix: str = "") -> list[str]:
    """Nested settings (``{train: {epochs: 6}}``) as our overrides (``train.epochs=6``).

    A registry spec (``loss``, ``miner``, ``sampler``, ``regularizers.*``) stays one value, so it
    replaces the base config's spec (``loss={MultiSimilarityLoss: {...}}``).
    """
    if settings is None:
        return []
    if not isinstance(settings, Mapping):
        raise SweepConfigError(
            f"{where} must be a mapping of config keys to values (e.g. {{train: {{epochs: 6}}}}); "
            f"got {settings!r}."
        )
    out: list[str] = []
    for key, value in settings.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and dotted not in SPEC_PATHS:
            out += flatten_settings(value, where, prefix=f"{dotted}.")
        else:
            out.append(f"{dotted}={format_value(value)}")
    return out


def parse_overrides(texts: Sequence[str], config_loader: Any = None) -> list[Override]:
    """Hydra's parse of override strings (``key=value``, sweeps, ``+key=``, groups)."""
    from hydra.errors import HydraException

    parser = OverridesParser.create(config_loader=config_loader)
    try:
        return parser.parse_overrides(list(texts))
    except HydraException as err:
        raise SweepConfigError(f"{err}".strip()) from None


def config_override(override: Override) -> str:
    """A parsed (non-sweep) Hydra override as our loader's ``key=value`` / ``+key=value``."""
    key = override.key_or_group
    if override.is_delete():
        raise SweepConfigError(
            f"override {override.input_line!r}: deleting a key (~key) is not supported by the "
            f"training config. Fix: set it to null ({key}=null)."
        )
    if override.package is not None:
        raise SweepConfigError(
            f"override {override.input_line!r}: a package (@...) applies to config groups only."
        )
    prefix = "+" if override.is_add() else ""
    return f"{prefix}{key}={format_value(override.value())}"


def is_experiment_key(key: str) -> bool:
    return key.split(".")[0] in EXPERIMENT_KEYS


# ---------------------------------------------------------------------- experiment settings
def resolve_base_config(base_config: Any, experiment: Experiment) -> str:
    """``base_config`` of the experiment: a path relative to the experiment file (made absolute)
    or a built-in config name / path as :func:`load_config` takes it."""
    if not isinstance(base_config, str) or not base_config.strip():
        raise SweepConfigError(
            f"experiment {experiment.file}: base_config must name the training config (a "
            f"built-in config such as omniglot, or a YAML path); got {base_config!r}."
        )
    relative = experiment.file.parent / base_config
    for candidate in (relative, relative.with_name(relative.name + ".yaml")):
        if candidate.is_file():
            return str(candidate.resolve())
    return base_config


def chosen_source(value: Any, experiment: Experiment) -> str | None:
    """Where a ``chosen_lr`` comes from, for messages: the file's path, or None (a mapping)."""
    if not isinstance(value, str):
        return None
    return str(Path(value) if os.path.isabs(value) else experiment.file.parent / value)


def read_chosen_lr(value: Any, experiment: Experiment) -> dict[str, float | None] | None:
    """The ``chosen_lr`` of an experiment: None, a mapping, or a JSON/YAML file (relative to the
    experiment file) mapping each ``method`` option to its learning rate (null: not chosen)."""
    if value is None:
        return None
    source = "chosen_lr"
    if isinstance(value, str):
        path = Path(str(chosen_source(value, experiment)))
        if not path.is_file():
            raise SweepConfigError(
                f"experiment {experiment.name}: chosen_lr file {path} does not exist. Fix: run "
                f"the learning-rate sweep and write it (pml-proxy-anchor sweep --choose-lr "
                f"SWEEP_DIR --out {path.name}), then pass chosen_lr=/path/to/{path.name}."
            )
        try:
            text = path.read_text(encoding="utf-8")
            value = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError, OSError, UnicodeDecodeError) as err:
            raise SweepConfigError(f"chosen_lr file {path} is not valid JSON/YAML: {err}") from None
        source = str(path)
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, Mapping):
        raise SweepConfigError(
            f"{source} must map each method to its learning rate, e.g. "
            f'{{"proxy_anchor": 0.001}}; got {value!r}.'
        )
    chosen: dict[str, float | None] = {}
    for method, lr in value.items():
        ok = lr is None or (
            isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr)
        )
        if not ok or (lr is not None and lr <= 0):
            raise SweepConfigError(
                f"{source}: the learning rate of {method!r} must be a positive number or null "
                f"(not chosen yet); got {lr!r}."
            )
        chosen[str(method)] = None if lr is None else float(lr)
    return chosen


@dataclasses.dataclass
class SweepSettings:
    """An experiment's settings, resolved: what every job of the sweep shares."""

    experiment: str
    experiment_file: str
    base_config: str
    budget: list[str]  # our overrides, applied to every job first
    chosen_lr: dict[str, float | None] | None
    chosen_lr_source: str | None
    parameters: list[str]  # the swept keys and groups (they name the job folders)
    reuse_from: list[str] = dataclasses.field(default_factory=list)  # see :mod:`.reuse`

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, node: Any) -> SweepSettings:
        plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        return cls(**dict(plain))

    def load(self, overrides: Sequence[str]) -> DictConfig:
        """The training config of a job with ``overrides`` (after the budget)."""
        return load_config(self.base_config, [*self.budget, *overrides])


# ---------------------------------------------------------------------- one job
@dataclasses.dataclass
class JobSpec:
    """One job of a sweep: its folder, its overrides and the overrides our loader gets."""

    name: str  # the folder in the sweep directory: Hydra's override_dirname of the swept keys
    run_dir: Path
    overrides: list[str]  # the job's overrides as Hydra passes them (swept and common)
    params: dict[str, Any]  # the swept parameters' values
    config_overrides: list[str]  # after the budget: group contents, chosen lr, own overrides

    def config(self, settings: SweepSettings) -> DictConfig:
        return settings.load([*self.config_overrides, f"run_dir={format_value(str(self.run_dir))}"])


def job_spec(
    task_cfg: DictConfig,
    hydra_node: DictConfig,
    settings: SweepSettings,
    texts: Sequence[str] | None = None,
    name: str | None = None,
    sweep_dir: str | Path | None = None,
) -> JobSpec:
    """The :class:`JobSpec` of a job.

    ``task_cfg``: the job's composed config (it holds the config groups' contents);
    ``hydra_node``: its Hydra node (``HydraConfig.get()`` inside a job) for the group choices,
    the job's overrides, its folder name (``hydra.job.override_dirname``) and the sweep
    directory. ``texts``, ``name``, ``sweep_dir`` replace the last three (the sweep command
    plans every job before Hydra composes it).
    """
    texts = [str(t) for t in (hydra_node.overrides.task if texts is None else texts)]
    choices = hydra_node.runtime.choices
    groups = [g for g in choices if not str(g).startswith("hydra/") and g != TRAINING_GROUP]
    own: list[str] = []
    params: dict[str, Any] = {}
    for override in parse_overrides(texts):
        key = override.key_or_group
        if key == TRAINING_GROUP or is_experiment_key(key):
            continue
        if key in settings.parameters:
            params[key] = override.value()
        if key not in groups:
            own.append(config_override(override))
    layers: list[str] = []
    for group in groups:
        content = OmegaConf.select(task_cfg, str(group).replace("/", "."))
        plain = OmegaConf.to_container(content, resolve=True) if content is not None else None
        layers += flatten_settings(plain, f"config group {group}={choices[group]}")
    sets_lr = any(text.split("=", 1)[0].lstrip("+") == "optimizer.lr" for text in own)
    if settings.chosen_lr is not None and not sets_lr:  # an explicit optimizer.lr wins
        layers.append(f"optimizer.lr={format_value(chosen_lr_of(settings, choices))}")
    name = str(hydra_node.job.override_dirname) if name is None else name
    folder = hydra_node.sweep.dir if sweep_dir is None else sweep_dir
    return JobSpec(
        name=name,
        run_dir=Path(os.path.abspath(str(folder))) / name,
        overrides=texts,
        params=params,
        config_overrides=[*layers, *own],
    )


def chosen_lr_of(settings: SweepSettings, choices: Mapping[str, Any]) -> float:
    """The chosen learning rate of the job's ``method`` option (``choices``: Hydra's group
    choices of the job)."""
    source = settings.chosen_lr_source or "chosen_lr"
    method = choices.get(METHOD_GROUP)
    if method is None:
        raise SweepConfigError(
            f"experiment {settings.experiment} sets chosen_lr but has no `{METHOD_GROUP}` config "
            f"group to choose by. Fix: add `- /{METHOD_GROUP}: proxy_anchor` to its defaults, "
            "or remove chosen_lr."
        )
    assert settings.chosen_lr is not None
    lr = settings.chosen_lr.get(str(method))
    if lr is None:
        state = "is null (not chosen yet)" if method in settings.chosen_lr else "is missing"
        raise SweepConfigError(
            f"the chosen learning rate of method {method!r} {state} in {source}. Fix: run the "
            "learning-rate sweep first (e.g. pml-proxy-anchor sweep omniglot/compare_lr), write "
            "its choice with `pml-proxy-anchor sweep --choose-lr SWEEP_DIR --out chosen_lr.json` "
            "and pass chosen_lr=/path/to/chosen_lr.json (or set optimizer.lr=VALUE for every "
            "job)."
        )
    return lr
