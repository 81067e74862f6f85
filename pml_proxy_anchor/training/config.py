"""Run configuration: YAML files composed with OmegaConf, dotted command-line overrides, key checks.

A config is named by a file path (``configs/omniglot.yaml``, ``.yaml`` optional) or by the name of
a built-in config (``omniglot``, ``cub200_bninception``; :func:`builtin_configs` lists them). The
built-in configs ship inside the package, so a name works from any directory after
``pip install``; a file of that name in the current directory comes first, and
``configs/<name>.yaml`` falls back to the built-in config when no such file exists.

Composition, lowest to highest priority:

1. :data:`DEFAULTS` -- every key the training stack knows, with a neutral default (the schema);
2. the files named under ``defaults:`` in the config file (paths relative to it, ``.yaml``
   optional, recursively), in order; a bare name with no file next to the config (``base`` in a
   copied config) is the built-in config of that name;
3. the config file itself;
4. overrides ``a.b=value`` (``value`` parsed as YAML: ``1e-4``, ``true``, ``null``, ``[1, 2]``);
   ``+a.b=value`` adds a key that does not exist yet (and refuses one that does). Every key of
   the data set (``pml_proxy_anchor.data.data_defaults(name)``) can be set as ``data.key=value``;
   after the overrides the ``data:`` section holds all of them, unset ones at their defaults.

Checks: in the closed sections (the top level, ``optimizer``, ``scheduler``, ``train``, ``eval``,
``regularizers``) every key must be one of :data:`DEFAULTS`. ``data`` and ``model`` are read by
the data and model builders: ``data`` keys are checked against the data set's own list at load,
``model`` keys by the model builder. An override must name a key that
exists after composition. An unknown key raises :class:`ConfigKeyError` naming it and the closest
known keys (difflib). ``loss``, ``miner``, ``sampler`` and the regularizers are registry specs
(``{Name: {kwargs}}`` or ``Name``, see :func:`pml_proxy_anchor.registry.parse_spec`): a layer
naming another class replaces the spec instead of merging into it, and every name in them must be
registered and of the slot's kind (a loss for ``loss``, a reducer for a loss's ``reducer``, ...).

Numbers must be finite and in range. The learning rate must lie in (0, :data:`MAX_LR`]: the paper
uses 1e-4, and a step above 1e6 overflows float32 arithmetic inside the optimizer (``lr=1e38``
would fail there with a message naming no key); a large but representable rate that makes
training diverge is caught by the run's NaN check. ``eval.k_values`` must contain 1 (the best
epoch is chosen by Recall@1).
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from pml_proxy_anchor import registry
from pml_proxy_anchor.training.errors import (
    ConfigFileNotFoundError,
    ConfigKeyError,
    ConfigValueError,
)

DEFAULTS: dict[str, Any] = {
    "run_dir": None,
    "data": {"name": "???", "root": None},
    "model": {"backbone": "???", "embedding_size": 512, "pretrained": None},
    "loss": {"ProxyAnchorLoss": {"margin": 0.1, "alpha": 32}},
    "miner": None,
    "sampler": None,
    "regularizers": {"embedding_regularizer": None, "weight_regularizer": None},
    "optimizer": {
        "name": "AdamW",
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "proxy_lr_multiplier": 100.0,
        "proxy_weight_decay": None,  # null: the same as weight_decay (the paper's recipe)
    },
    "scheduler": {"step": 10, "gamma": 0.5},
    "train": {
        "epochs": 60,
        "batch_size": 180,
        "warm_epochs": 1,
        "bn_freeze": True,
        "grad_clip": 10.0,
        "num_workers": 4,
        "seed": 1,
        "device": "auto",
        "iterations_per_epoch": None,
        "stop_after_epoch": None,
        "log_freq": 50,
        "proxies": "replicated",
        "dist_timeout_s": 1800.0,
    },
    "eval": {"k_values": None, "batch_size": 128, "interval": 1},
}
SPEC_SECTIONS = ("loss", "miner", "sampler")
SECTIONS = ("data", "model", "regularizers", "optimizer", "scheduler", "train", "eval")
CLOSED_SECTIONS = ("optimizer", "scheduler", "train", "eval", "regularizers")
REGULARIZERS = ("embedding_regularizer", "weight_regularizer")
SPEC_PATHS = (*SPEC_SECTIONS, *(f"regularizers.{key}" for key in REGULARIZERS))
# The kind of object each spec slot of the config takes (registry.KINDS).
SPEC_KINDS = {
    "loss": "losses",
    "miner": "miners",
    "sampler": "samplers",
    **{f"regularizers.{key}": "regularizers" for key in REGULARIZERS},
}
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "AdamW": torch.optim.AdamW,
    "Adam": torch.optim.Adam,
    "SGD": torch.optim.SGD,
    "RMSprop": torch.optim.RMSprop,
}
PROXY_MODES = ("replicated", "sharded")  # train.proxies (pml_proxy_anchor.distributed)
MAX_LR = 1e6  # optimizer.lr, proxy_lr_multiplier and the weight decays: see the module docstring
FILLED_LOSS_ARGUMENTS = ("num_classes", "embedding_size")  # filled in from the data and model
BASE_CONFIG = "base"  # the recipe the built-in configs share; not runnable on its own


def builtin_config_dir() -> Path:
    """The folder of the built-in configs.

    Installed: ``pml_proxy_anchor/configs`` inside the package (the wheel maps the repository's
    ``configs/`` there); in a source checkout: the repository's ``configs/`` (the same files).
    """
    packaged = Path(__file__).resolve().parents[1] / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "configs"


def builtin_configs() -> list[str]:
    """The names of the built-in configs (``load_config(name)`` takes them), sorted.

    ``base`` -- the recipe the others share -- is not listed: it names no data set.
    """
    folder = builtin_config_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem != BASE_CONFIG)


def builtin_config_summary(name: str) -> str:
    """The first comment line of the built-in config ``name`` (what it trains), for listings."""
    for line in builtin_config_path(name).read_text().splitlines():
        if line.startswith("#") and line.lstrip("# ").strip():
            return line.lstrip("# ").strip()
    return ""


def builtin_config_path(name: str) -> Path:
    """The file of the built-in config ``name`` (a :class:`ConfigFileNotFoundError` with the
    closest names otherwise)."""
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    path = builtin_config_dir() / f"{stem}.yaml"
    if path.is_file():
        return path
    known = builtin_configs()
    close = difflib.get_close_matches(stem, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ConfigFileNotFoundError(
        f"there is no built-in config {name!r}.{hint} Built-in configs: {', '.join(known)}."
    )


def load_config(path: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> DictConfig:
    """Compose a config (a file path, a built-in config name or a mapping) with its defaults
    and ``overrides``; validate it."""
    if isinstance(path, Mapping):
        layers = [(_plain(path), "<mapping>")]
    elif isinstance(path, (str, Path)):
        layers = _file_layers(resolve_config_path(path), seen=())
    else:
        raise ConfigValueError(
            f"a config is a file path, a built-in config name or a mapping; got {path!r}."
        )
    if isinstance(overrides, str):
        overrides = [overrides]
    merged = copy.deepcopy(DEFAULTS)
    for layer, source in layers:
        _check_layer(layer, source)
        merged = _merge(merged, layer, prefix="")
    data_keys = {f"data.{key}" for key in _data_defaults(_final_data_name(merged, overrides))}
    for override in overrides:
        _apply_override(merged, override, known=data_keys)
    if overrides:
        _check_layer(merged, "the command-line overrides")  # a +key in a closed section
    if isinstance(merged.get("data"), dict):  # every key of the data set, at its default
        merged["data"] = {**_data_defaults(merged["data"].get("name")), **merged["data"]}
    cfg = OmegaConf.create(merged)
    validate(cfg)
    return cfg


def resolve_config_path(path: str | Path) -> Path:
    """The config file ``path`` names: the file itself (``.yaml`` optional), else a built-in
    config (``omniglot``, or ``configs/omniglot.yaml`` when no such file exists here)."""
    path = Path(path)
    found = _existing_yaml(path)
    if found is not None:
        return found
    # A folder of the same name (e.g. a sweep directory "omniglot/") never hides a built-in.
    if len(path.parts) == 1 or (len(path.parts) == 2 and path.parts[0] == "configs"):
        stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
        if (builtin_config_dir() / f"{stem}.yaml").is_file():
            return builtin_config_dir() / f"{stem}.yaml"
    if path.is_dir():
        raise ConfigFileNotFoundError(
            f"config path {path} is a directory; expected a YAML file such as "
            f"{path / 'omniglot.yaml'} or a built-in config name ({', '.join(builtin_configs())})."
        )
    here = path.parent if path.parent.is_dir() else Path(".")
    nearby = sorted(p.name for p in here.glob("*.yaml"))
    close = difflib.get_close_matches(path.stem, builtin_configs(), n=3, cutoff=0.5)
    hint = f" Did you mean the built-in config {' or '.join(close)}?" if close else ""
    files = f" Config files in {here}: {', '.join(nearby)}." if nearby else ""
    raise ConfigFileNotFoundError(
        f"config file {path} does not exist.{hint}{files} Built-in configs (usable by name "
        f"from any directory): {', '.join(builtin_configs())}."
    )


def to_dict(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as plain python containers (interpolations resolved)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return copy.deepcopy(dict(cfg))


def loss_spec(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """``cfg.loss`` as ``{Name: {arguments}}`` with ``cfg.regularizers`` merged into the
    arguments (the loss takes them as ``embedding_regularizer`` / ``weight_regularizer``)."""
    plain = to_dict(cfg)
    name, args = registry.parse_spec(plain.get("loss"), "loss")
    for key, spec in (plain.get("regularizers") or {}).items():
        if spec is None:
            continue
        if args.get(key) is not None:
            raise ConfigValueError(
                f"the {key.replace('_', ' ')} is set twice: regularizers.{key} and "
                f"loss.{name}.{key}. Fix: keep one of them (regularizers.{key}=null)."
            )
        args[key] = spec
    return {name: args}


def validate(cfg: DictConfig) -> None:
    """Types and ranges of the values the training stack reads; names and kinds of the specs."""
    for key in ("data.name", "model.backbone"):
        if OmegaConf.is_missing(cfg, key.split(".")[0]) or OmegaConf.select(cfg, key) in (
            None,
            "???",
        ):
            raise ConfigValueError(
                f"config key {key} is mandatory and has no value. Fix: set it in the config file "
                f"or pass {key}=VALUE on the command line."
            )
    _check_data(cfg)
    if cfg.run_dir is not None and (not isinstance(cfg.run_dir, str) or not cfg.run_dir.strip()):
        raise ConfigValueError(
            f"config key run_dir={cfg.run_dir!r} must be a directory path (a string) or null."
        )
    _require(cfg, "train.epochs", int, minimum=1)
    _require(cfg, "train.batch_size", int, minimum=2)
    _require(cfg, "train.warm_epochs", int, minimum=0)
    _require(cfg, "train.num_workers", int, minimum=0)
    _require(cfg, "train.seed", int, minimum=0)
    _require(cfg, "train.log_freq", int, minimum=1)
    _require(cfg, "scheduler.step", int, minimum=1)
    _require(cfg, "eval.batch_size", int, minimum=1)
    _require(cfg, "eval.interval", int, minimum=1)
    _require(cfg, "optimizer.lr", float, minimum=0.0, strict=True, maximum=MAX_LR)
    _require(cfg, "optimizer.weight_decay", float, minimum=0.0, maximum=MAX_LR)
    _require(cfg, "optimizer.proxy_lr_multiplier", float, minimum=0.0, strict=True, maximum=MAX_LR)
    _require(cfg, "scheduler.gamma", float, minimum=0.0, strict=True)
    if cfg.optimizer.proxy_weight_decay is not None:
        _require(cfg, "optimizer.proxy_weight_decay", float, minimum=0.0, maximum=MAX_LR)
    for key in ("train.grad_clip", "train.iterations_per_epoch", "train.stop_after_epoch"):
        if OmegaConf.select(cfg, key) is not None:
            _require(cfg, key, float if key.endswith("clip") else int, minimum=1e-12)
    _require(cfg, "train.dist_timeout_s", float, minimum=0.0, strict=True)
    if not isinstance(cfg.train.bn_freeze, bool):
        raise ConfigValueError(
            f"config key train.bn_freeze={cfg.train.bn_freeze!r} must be true or false."
        )
    if not isinstance(cfg.train.device, str):
        raise ConfigValueError(
            f"config key train.device={cfg.train.device!r} must be auto, cpu, cuda or cuda:N."
        )
    if cfg.train.proxies not in PROXY_MODES:
        raise ConfigValueError(
            f"train.proxies={cfg.train.proxies!r} is not supported; expected one of "
            f"{', '.join(PROXY_MODES)} (replicated: every process holds all proxies; sharded: "
            "each process holds C/N of them, for very many classes)."
        )
    optimizer_class(cfg.optimizer.name)
    _check_k_values(cfg.eval.k_values)
    _check_specs(cfg)


def _check_data(cfg: DictConfig) -> None:
    """``data.name`` is a known data set and every ``data.*`` key one it reads, with a valid
    value (the data set's own checks, run here so that a typo stops the run before it starts)."""
    from pml_proxy_anchor.data import lookup

    lookup(str(cfg.data.name)).read_config(to_dict(cfg.data))


def optimizer_class(name: Any) -> type[torch.optim.Optimizer]:
    """The ``torch.optim`` class of ``optimizer.name`` (:data:`OPTIMIZERS`)."""
    try:
        return registry.choose(name, OPTIMIZERS, "optimizer.name")
    except registry.RegistryError as err:
        raise ConfigValueError(f"{err} (The paper uses AdamW.)") from None


def _check_k_values(k_values: Any) -> None:
    if k_values is None:
        return
    example = "eval.k_values=[1,2,4,8] (or null: the data set's paper Ks)"
    if isinstance(k_values, (str, bytes)) or not isinstance(k_values, Sequence):
        raise ConfigValueError(
            f"config key eval.k_values={k_values!r} must be a list of Ks. Fix: {example}."
        )
    ks = list(k_values)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigValueError(
            f"config key eval.k_values={ks!r} must be a non-empty list of integers >= 1. "
            f"Fix: {example}."
        )
    if 1 not in ks:
        raise ConfigValueError(
            f"eval.k_values must contain 1: the best epoch is chosen by Recall@1; got {ks!r}. "
            f"Fix: eval.k_values=[{','.join(str(k) for k in [1, *ks])}]."
        )


def _check_specs(cfg: DictConfig) -> None:
    """Every spec names registered classes of its slot's kind; a set ``num_classes`` or
    ``embedding_size`` is an integer; the loss takes the regularizers it is given."""
    plain = to_dict(cfg)
    if plain.get("loss") is None:
        raise ConfigValueError(
            "config key loss is null; a run needs a loss. Fix: loss={ProxyAnchorLoss: {}} "
            "(the default) or another loss spec."
        )
    for path, kind in SPEC_KINDS.items():
        spec = OmegaConf.select(cfg, path)
        if spec is not None:
            registry.check(_plain_value(spec), kind=kind, where=path)
    spec = loss_spec(cfg)
    loss_cls = registry.check(spec, kind="losses", where="loss")
    ((name, args),) = spec.items()
    for key in FILLED_LOSS_ARGUMENTS:
        value = args.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigValueError(
                f"config key loss.{name}.{key}={value!r} must be an integer. It is filled in "
                f"from the {'train split' if key == 'num_classes' else 'model'}; remove the key "
                "to use that value."
            )
    _check_loss_takes_regularizers(loss_cls, name, plain.get("regularizers") or {})


def _check_loss_takes_regularizers(
    loss_cls: type, name: str, regularizers: Mapping[str, Any]
) -> None:
    from pytorch_metric_learning.losses.mixins import (
        EmbeddingRegularizerMixin,
        WeightRegularizerMixin,
    )

    mixins = {
        "embedding_regularizer": EmbeddingRegularizerMixin,
        "weight_regularizer": WeightRegularizerMixin,
    }
    for key, mixin in mixins.items():
        if regularizers.get(key) is None or issubclass(loss_cls, mixin):
            continue
        what = "learned weights (proxies)" if key == "weight_regularizer" else "embeddings"
        raise ConfigValueError(
            f"regularizers.{key} is set, but the loss {name} takes no {key}: it has no "
            f"{what} to regularize. Fix: regularizers.{key}=null, or a loss that takes one "
            "(ProxyAnchorLoss takes both)."
        )


def _plain_value(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _require(
    cfg: DictConfig,
    key: str,
    kind: type,
    minimum: float,
    strict: bool = False,
    maximum: float | None = None,
) -> None:
    value = OmegaConf.select(cfg, key)
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type:
        raise ConfigValueError(
            f"config key {key}={value!r} must be a{'n integer' if kind is int else ' number'}."
            f" Fix: pass {key}=<{kind.__name__}>."
        )
    if not math.isfinite(value):
        raise ConfigValueError(f"config key {key}={value!r} must be a finite number.")
    too_small = value <= minimum if strict else value < minimum
    if too_small:
        relation = ">" if strict else ">="
        raise ConfigValueError(f"config key {key}={value!r} must be {relation} {minimum:g}.")
    if maximum is not None and value > maximum:
        raise ConfigValueError(
            f"config key {key}={value!r} must be <= {maximum:g}: larger values overflow the "
            "float32 arithmetic of the optimizer step (the paper's lr is 1e-4)."
        )


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(mapping, DictConfig):
        return OmegaConf.to_container(mapping, resolve=False)  # type: ignore[return-value]
    return copy.deepcopy(dict(mapping))


def _file_layers(path: Path, seen: tuple[Path, ...]) -> list[tuple[dict[str, Any], str]]:
    """The layers of ``path`` with their sources: its ``defaults:`` files (recursively), then
    the file itself."""
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigValueError(f"config files include each other in a cycle: {chain}")
    try:
        content = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    except Exception as err:  # OmegaConf wraps YAML errors in several types
        raise ConfigValueError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(content, dict):
        raise ConfigValueError(f"config file {path} must hold a mapping at the top level.")
    defaults = content.pop("defaults", None) or []
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigValueError(
            f"config file {path}: `defaults:` must be a list of config files, e.g. "
            f"defaults: [base]; got {defaults!r}."
        )
    layers: list[tuple[dict[str, Any], str]] = []
    for name in defaults:
        layers += _file_layers(_default_file(path, name), seen=(*seen, path.resolve()))
    return [*layers, (content, str(path))]


def _default_file(config: Path, name: str) -> Path:
    """The file an entry of ``config``'s ``defaults:`` list names."""
    wanted = Path(name) if Path(name).is_absolute() else config.parent / name
    found = _existing_yaml(wanted)
    if found is not None:
        return found
    bare = len(Path(name).parts) == 1
    if bare and (builtin_config_dir() / f"{Path(name).stem}.yaml").is_file():
        return builtin_config_dir() / f"{Path(name).stem}.yaml"
    builtins = ", ".join([BASE_CONFIG, *builtin_configs()])
    raise ConfigFileNotFoundError(
        f"config file {config} lists {name!r} in its `defaults:`, but {wanted} (or "
        f"{wanted}.yaml) does not exist. Fix: put {Path(name).name}.yaml next to {config.name}, "
        f"change the `defaults:` entry to the path of an existing file (relative to "
        f"{config.parent}), or to a built-in config: {builtins}."
    )


def _existing_yaml(path: Path) -> Path | None:
    candidates = [path]
    if path.name and not path.name.endswith((".yaml", ".yml")):
        candidates.append(path.with_name(path.name + ".yaml"))
    return next((c for c in candidates if c.is_file()), None)


def _known_keys(section: str) -> list[str]:
    return list(DEFAULTS[section]) if section else list(DEFAULTS)


def _unknown_key_error(key: str, known: Sequence[str], where: str) -> ConfigKeyError:
    short = key.rsplit(".", 1)[-1]
    prefix = key[: -len(short)]
    close = difflib.get_close_matches(short, list(known), n=3, cutoff=0.5)
    hint = (
        f" Did you mean {' or '.join(prefix + c for c in close)}?"
        if close
        else f" Known keys here: {', '.join(prefix + k for k in known)}."
    )
    return ConfigKeyError(f"unknown config key {key!r} in {where}.{hint}")


def _check_layer(layer: Mapping[str, Any], source: str) -> None:
    """Known keys in the closed sections; every section a mapping."""
    for key in layer:
        if key not in DEFAULTS:
            raise _unknown_key_error(str(key), _known_keys(""), source)
    for section in SECTIONS:
        values = layer.get(section)
        if section in layer and values is not None and not isinstance(values, Mapping):
            raise ConfigValueError(
                f"config section {section} in {source} must be a mapping of keys to values "
                f"(e.g. {section}: {{{next(iter(DEFAULTS[section]))}: ...}}); got {values!r}."
            )
        if section in CLOSED_SECTIONS and isinstance(values, Mapping):
            for key in values:
                if key not in DEFAULTS[section]:
                    raise _unknown_key_error(f"{section}.{key}", _known_keys(section), source)


def _merge(base: Any, layer: Any, prefix: str) -> Any:
    """Deep merge; a registry spec naming another class replaces the old spec."""
    if prefix.rstrip(".") in SPEC_PATHS:
        name = registry.spec_name(base)
        if name is None or name != registry.spec_name(layer):
            return copy.deepcopy(layer)
        if isinstance(layer, str):
            return copy.deepcopy(base)
    if isinstance(base, dict) and isinstance(layer, Mapping):
        merged = dict(base)
        for key, value in layer.items():
            merged[key] = _merge(base.get(key), value, f"{prefix}{key}.")
        return merged
    return copy.deepcopy(layer)


def _data_defaults(name: Any) -> dict[str, Any]:
    """The data set's ``data:`` keys with their defaults; empty for an unknown or missing name
    (the data set's own lookup reports a wrong name, see :func:`validate`)."""
    from pml_proxy_anchor.data import DataConfigError, data_defaults

    if not isinstance(name, str) or name in ("", "???"):
        return {}
    try:
        return data_defaults(name)
    except DataConfigError:
        return {}


def _final_data_name(cfg: Mapping[str, Any], overrides: Sequence[str]) -> Any:
    """``data.name`` after the overrides (the last ``data.name=...`` wins)."""
    name = (cfg.get("data") or {}).get("name") if isinstance(cfg.get("data"), Mapping) else None
    for override in overrides:
        if isinstance(override, str) and "=" in override:
            key, raw = override.split("=", 1)
            if key.strip().lstrip("+") == "data.name":
                try:
                    name = _parse_value(raw)
                except Exception:  # reported by _apply_override
                    pass
    return name


def _apply_override(cfg: dict[str, Any], override: Any, known: Collection[str] = ()) -> None:
    """Apply ``key=value`` (the key must exist, or be in ``known``: a key of the data set) or
    ``+key=value`` (the key must not be set yet)."""
    if not isinstance(override, str) or "=" not in override:
        raise ConfigValueError(
            f"override {override!r} is not of the form key=value (e.g. train.epochs=2, "
            "+model.extra=1 to add a key)."
        )
    key, raw = override.split("=", 1)
    key = key.strip()
    add = key.startswith("+")
    key = key[1:] if add else key
    parts = key.split(".")
    if not all(part.strip() for part in parts):
        raise ConfigValueError(
            f"override {override!r} has an empty key part; expected e.g. train.epochs=2."
        )
    try:
        value = _parse_value(raw)
    except Exception as err:  # OmegaConf wraps YAML errors in several types
        raise ConfigValueError(
            f"override {override!r}: the value is not valid YAML: {err}"
        ) from err
    node: Any = cfg
    for depth, part in enumerate(parts[:-1]):
        dotted = ".".join(parts[: depth + 1])
        if not isinstance(node, dict) or (part not in node and not add):
            raise _unknown_key_error(dotted, _keys_of(node), "the command-line overrides")
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigValueError(f"override {override!r}: {dotted} is a value, not a section.")
    last = parts[-1]
    if add and last in node:
        raise ConfigKeyError(
            f"override {override!r}: {key} already exists (value {node[last]!r}); a leading + "
            f"only adds a new key. Fix: use {key}={raw} to change it."
        )
    if last not in node and not add and key not in known:
        parent = key[: -len(last)]
        siblings = [
            k[len(parent) :] for k in known if k.startswith(parent) and "." not in k[len(parent) :]
        ]
        candidates = list(dict.fromkeys([*_keys_of(node), *siblings]))
        error = _unknown_key_error(key, candidates, "the command-line overrides")
        if parts[0] not in CLOSED_SECTIONS and len(parts) > 1 and not siblings:
            error = ConfigKeyError(f"{error} To add a new key, write +{key}={raw}.")
        raise error
    node[last] = value


def _parse_value(raw: str) -> Any:
    """A YAML scalar or flow collection, parsed as OmegaConf parses files (1e-4 is a float)."""
    if not raw.strip():
        return None
    return OmegaConf.to_container(OmegaConf.create("value: " + raw), resolve=False)["value"]


def _keys_of(node: Any) -> list[str]:
    return list(node) if isinstance(node, dict) else []
