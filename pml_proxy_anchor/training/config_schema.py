"""The schema of a run config: every key the training stack knows, and how layers merge.

:data:`DEFAULTS` is the lowest layer of every config (:func:`~.config.load_config`). In the closed
sections (the top level, ``optimizer``, ``scheduler``, ``train``, ``eval``, ``regularizers``) every
key must be one of it (:func:`check_layer`); ``data`` and ``model`` are open (their keys are
checked by the data set and the model builder). ``loss``, ``miner``, ``sampler`` and the
regularizers are registry specs (:data:`SPEC_PATHS`): :func:`merge_layer` replaces a spec when a
layer names another class, and merges it when the layer names the same class.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pml_proxy_anchor import registry
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
        "num_workers": "auto",  # auto: data.workers.default_num_workers for the device
        "seed": 1,
        "device": "auto",
        "iterations_per_epoch": None,
        "stop_after_epoch": None,
        "log_freq": 50,
        "proxies": "replicated",
        "dist_timeout_s": 1800.0,
        "precision": "fp32",  # fp32 | tf32 | bf16 | fp16 (training.precision)
        "channels_last": False,  # speed switches (training.speed), off unless measured to win
        "compile": False,
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


def with_schema_defaults(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A run's saved config with the closed sections' keys it lacks set to their defaults.

    A run started by an older version, before a key such as ``train.precision`` existed, ran as
    that key's default does; comparing its config with a current one (resume, a sweep skipping
    or reusing a finished run) must not count the new key as a change."""
    out = copy.deepcopy(dict(saved))
    for section in CLOSED_SECTIONS:
        node = out.get(section)
        if isinstance(node, Mapping):
            out[section] = {**copy.deepcopy(DEFAULTS[section]), **dict(node)}
    return out


def known_keys(section: str) -> list[str]:
    """The schema's keys of ``section`` (``""``: the top level)."""
    return list(DEFAULTS[section]) if section else list(DEFAULTS)


def is_schema_key(key: str) -> bool:
    """Whether the dotted ``key`` is one the schema defines (a section or a key of a section,
    not an argument inside a registry spec)."""
    parts = key.split(".")
    if parts[0] not in DEFAULTS:
        return False
    return len(parts) == 1 or (
        len(parts) == 2 and parts[0] in SECTIONS and parts[1] in DEFAULTS[parts[0]]
    )


def schema_default(key: str) -> Any:
    """The :data:`DEFAULTS` value of a schema key (:func:`is_schema_key`)."""
    value: Any = DEFAULTS
    for part in key.split("."):
        value = value[part]
    return value


def unknown_key_error(key: str, known: Sequence[str], where: str) -> ConfigKeyError:
    """A :class:`ConfigKeyError` naming ``key`` and the closest of ``known`` (difflib)."""
    short = key.rsplit(".", 1)[-1]
    prefix = key[: -len(short)]
    close = difflib.get_close_matches(short, list(known), n=3, cutoff=0.5)
    hint = (
        f" Did you mean {' or '.join(prefix + c for c in close)}?"
        if close
        else f" Known keys here: {', '.join(prefix + k for k in known)}."
    )
    return ConfigKeyError(f"unknown config key {key!r} in {where}.{hint}")


def check_layer(layer: Mapping[str, Any], source: str) -> None:
    """Known keys at the top level and in the closed sections; every section a mapping."""
    for key in layer:
        if key not in DEFAULTS:
            raise unknown_key_error(str(key), known_keys(""), source)
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
                    raise unknown_key_error(f"{section}.{key}", known_keys(section), source)


def merge_layer(base: Any, layer: Any, prefix: str = "") -> Any:
    """``layer`` merged over ``base`` (deeply); a registry spec naming another class replaces the
    old spec. ``prefix``: the dotted path of ``base`` followed by a dot (``""`` at the top)."""
    if prefix.rstrip(".") in SPEC_PATHS:
        name = registry.spec_name(base)
        if name is None or name != registry.spec_name(layer):
            return copy.deepcopy(layer)
        if isinstance(layer, str):
            return copy.deepcopy(base)
    if isinstance(base, dict) and isinstance(layer, Mapping):
        merged = dict(base)
        for key, value in layer.items():
            merged[key] = merge_layer(base.get(key), value, f"{prefix}{key}.")
        return merged
    return copy.deepcopy(layer)
