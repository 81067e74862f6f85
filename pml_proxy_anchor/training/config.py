"""Run configuration: YAML files composed with OmegaConf, dotted command-line overrides, key checks.

Composition, lowest to highest priority:

1. :data:`DEFAULTS` -- every key the training stack knows, with a neutral default (the schema);
2. the files named under ``defaults:`` in the config file (paths relative to it, ``.yaml``
   optional, recursively), in order;
3. the config file itself;
4. overrides ``a.b=value`` (``value`` parsed as YAML: ``1e-4``, ``true``, ``null``, ``[1, 2]``).

Checks: in the closed sections (the top level, ``optimizer``, ``scheduler``, ``train``, ``eval``)
every key must be one of :data:`DEFAULTS`. ``data`` and ``model`` are read by the data and model
builders and may carry extra keys in files. An override must name a key that exists after
composition; ``+a.b=value`` adds a new one. An unknown key raises :class:`ConfigKeyError` naming it
and the closest known keys (difflib). ``loss``, ``miner``, ``sampler`` and the regularizers are
registry specs (``{Name: {kwargs}}`` or ``Name``): a layer naming another class replaces the spec
instead of merging into it.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from pml_proxy_anchor.training.errors import ConfigKeyError, ConfigValueError

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
CLOSED_SECTIONS = ("optimizer", "scheduler", "train", "eval")
SPEC_SECTIONS = ("loss", "miner", "sampler")
SPEC_PATHS = (
    *SPEC_SECTIONS,
    "regularizers.embedding_regularizer",
    "regularizers.weight_regularizer",
)
OPTIMIZERS = ("AdamW", "Adam", "SGD", "RMSprop")
PROXY_MODES = ("replicated", "sharded")  # train.proxies (pml_proxy_anchor.distributed)


def load_config(path: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> DictConfig:
    """Compose a config file (or a mapping) with its defaults and ``overrides``; validate it."""
    if isinstance(path, Mapping):
        layers = [_plain(path)]
        source = "<mapping>"
    else:
        layers = _file_layers(Path(path), seen=())
        source = str(path)
    merged = copy.deepcopy(DEFAULTS)
    for layer in layers:
        _check_closed_keys(layer, source)
        merged = _merge(merged, layer, prefix="")
    for override in overrides:
        _apply_override(merged, override)
    cfg = OmegaConf.create(merged)
    validate(cfg)
    return cfg


def to_dict(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as plain python containers (interpolations resolved)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return copy.deepcopy(dict(cfg))


def save_config(cfg: DictConfig | Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config as YAML (read by ``--resume``, ``eval`` and ``embed``)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def validate(cfg: DictConfig) -> None:
    """Types and ranges of the values the training stack reads."""
    for key in ("data.name", "model.backbone"):
        if OmegaConf.is_missing(cfg, key.split(".")[0]) or OmegaConf.select(cfg, key) in (
            None,
            "???",
        ):
            raise ConfigValueError(
                f"config key {key} is mandatory and has no value. Fix: set it in the config file "
                f"or pass {key}=VALUE on the command line."
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
    _require(cfg, "optimizer.lr", float, minimum=0.0, strict=True)
    _require(cfg, "optimizer.weight_decay", float, minimum=0.0)
    _require(cfg, "optimizer.proxy_lr_multiplier", float, minimum=0.0, strict=True)
    _require(cfg, "scheduler.gamma", float, minimum=0.0, strict=True)
    if cfg.optimizer.proxy_weight_decay is not None:
        _require(cfg, "optimizer.proxy_weight_decay", float, minimum=0.0)
    for key in ("train.grad_clip", "train.iterations_per_epoch", "train.stop_after_epoch"):
        if OmegaConf.select(cfg, key) is not None:
            _require(cfg, key, float if key.endswith("clip") else int, minimum=1e-12)
    _require(cfg, "train.dist_timeout_s", float, minimum=0.0, strict=True)
    if cfg.train.proxies not in PROXY_MODES:
        raise ConfigValueError(
            f"train.proxies={cfg.train.proxies!r} is not supported; expected one of "
            f"{', '.join(PROXY_MODES)} (replicated: every process holds all proxies; sharded: "
            "each process holds C/N of them, for very many classes)."
        )
    if cfg.optimizer.name not in OPTIMIZERS:
        raise ConfigValueError(
            f"optimizer.name={cfg.optimizer.name!r} is not supported; expected one of "
            f"{', '.join(OPTIMIZERS)} (the paper uses AdamW)."
        )


def _require(cfg: DictConfig, key: str, kind: type, minimum: float, strict: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type:
        raise ConfigValueError(
            f"config key {key}={value!r} must be a{'n integer' if kind is int else ' number'}."
            f" Fix: pass {key}=<{kind.__name__}>."
        )
    too_small = value <= minimum if strict else value < minimum
    if too_small or value != value:
        relation = ">" if strict else ">="
        raise ConfigValueError(f"config key {key}={value!r} must be {relation} {minimum:g}.")


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(mapping, DictConfig):
        return OmegaConf.to_container(mapping, resolve=False)  # type: ignore[return-value]
    return copy.deepcopy(dict(mapping))


def _file_layers(path: Path, seen: tuple[Path, ...]) -> list[dict[str, Any]]:
    """The layers of ``path``: its ``defaults:`` files (recursively), then the file itself."""
    path = _find_yaml(path)
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
    layers: list[dict[str, Any]] = []
    for name in defaults:
        layers += _file_layers(path.parent / str(name), seen=(*seen, path.resolve()))
    return [*layers, content]


def _find_yaml(path: Path) -> Path:
    for candidate in (path, path.with_name(path.name + ".yaml")):
        if candidate.is_file():
            return candidate
    here = path.parent if path.parent.is_dir() else Path(".")
    known = sorted(p.name for p in here.glob("*.yaml"))
    hint = f" Config files in {here}: {', '.join(known)}." if known else ""
    raise FileNotFoundError(f"config file {path} does not exist.{hint}")


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


def _check_closed_keys(layer: Mapping[str, Any], source: str) -> None:
    for key in layer:
        if key not in DEFAULTS:
            raise _unknown_key_error(key, _known_keys(""), source)
    for section in CLOSED_SECTIONS:
        values = layer.get(section)
        if isinstance(values, Mapping):
            for key in values:
                if key not in DEFAULTS[section]:
                    raise _unknown_key_error(f"{section}.{key}", _known_keys(section), source)


def _spec_name(spec: Any) -> Any:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and len(spec) == 1:
        return next(iter(spec))
    return None


def _merge(base: Any, layer: Any, prefix: str) -> Any:
    """Deep merge; a registry spec naming another class replaces the old spec."""
    if prefix.rstrip(".") in SPEC_PATHS:
        if _spec_name(base) is None or _spec_name(base) != _spec_name(layer):
            return copy.deepcopy(layer)
        if isinstance(layer, str):
            return copy.deepcopy(base)
    if isinstance(base, dict) and isinstance(layer, Mapping):
        merged = dict(base)
        for key, value in layer.items():
            merged[key] = _merge(base.get(key), value, f"{prefix}{key}.")
        return merged
    return copy.deepcopy(layer)


def _apply_override(cfg: dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigValueError(
            f"override {override!r} is not of the form key=value (e.g. train.epochs=2, "
            "+model.extra=1 to add a key)."
        )
    key, raw = override.split("=", 1)
    key = key.strip()
    add = key.startswith("+")
    key = key.lstrip("+")
    try:
        value = _parse_value(raw)
    except Exception as err:  # OmegaConf wraps YAML errors in several types
        raise ConfigValueError(
            f"override {override!r}: the value is not valid YAML: {err}"
        ) from err
    parts = key.split(".")
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
    if last not in node and not add:
        raise _unknown_key_error(key, _keys_of(node), "the command-line overrides")
    node[last] = value


def _parse_value(raw: str) -> Any:
    """A YAML scalar or flow collection, parsed as OmegaConf parses files (1e-4 is a float)."""
    if not raw.strip():
        return None
    return OmegaConf.to_container(OmegaConf.create("value: " + raw), resolve=False)["value"]


def _keys_of(node: Any) -> list[str]:
    return list(node) if isinstance(node, dict) else []
