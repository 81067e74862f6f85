"""Run configuration: YAML files composed by Hydra, overrides in Hydra's grammar, key checks.

A config is named by a file path (``configs/omniglot.yaml``, ``.yaml`` optional) or by the name of
a built-in config (``omniglot``, ``cub200_bninception``; :func:`builtin_configs` lists them). The
built-in configs ship inside the package, so a name works from any directory after
``pip install``; a file of that name in the current directory comes first, and
``configs/<name>.yaml`` falls back to the built-in config when no such file exists.

Composition, lowest to highest priority:

1. :data:`DEFAULTS` -- every key the training stack knows, with a neutral default (the schema,
   :mod:`.config_schema`);
2. the files named under ``defaults:`` in the config file, resolved by Hydra on a search path of
   the file's folder, then the built-in configs (:mod:`.config_compose`): ``base`` in a copied
   config is a ``base.yaml`` next to it if there is one, else the built-in ``base``;
3. the config file itself (Hydra's ``_self_``, last unless the file's list places it);
4. overrides in Hydra's override grammar (:mod:`.config_overrides`): ``a.b=value`` (``1e-4``,
   ``true``, ``null``, ``[1, 2]``, ``{Name: {kwarg: 1}}``), ``+a.b=value`` adds a key that does
   not exist yet (and refuses one that does), ``++a.b=value`` adds or changes, ``~a.b`` deletes.
   Every key of the data set (``pml_proxy_anchor.data.data_defaults(name)``) can be set as
   ``data.key=value``; after the overrides the ``data:`` section holds all of them, unset ones at
   their defaults.

Hydra resolves the defaults lists and parses the overrides; the layers are merged here, so that
``loss``, ``miner``, ``sampler`` and the regularizers stay registry specs (``{Name: {kwargs}}`` or
``Name``, see :func:`pml_proxy_anchor.registry.parse_spec`): a layer naming another class replaces
the spec instead of merging into it, and every name in them must be registered and of the slot's
kind (a loss for ``loss``, a reducer for a loss's ``reducer``, ...). Loading a config changes
neither the working directory nor Hydra's global state, so it works inside a running Hydra job
(the sweep jobs call it), and writes nothing.

Checks: in the closed sections (the top level, ``optimizer``, ``scheduler``, ``train``, ``eval``,
``regularizers``) every key must be one of :data:`DEFAULTS`. ``data`` and ``model`` are read by
the data and model builders: ``data`` keys are checked against the data set's own list at load,
``model`` keys by the model builder. An override must name a key that exists after composition.
An unknown key raises :class:`ConfigKeyError` naming it and the closest known keys (difflib); a
``defaults:`` entry that names no file raises :class:`ConfigFileNotFoundError` naming the closest
files and built-in configs.

Numbers must be finite and in range. The learning rate must lie in (0, :data:`MAX_LR`]: the paper
uses 1e-4, and a step above 1e6 overflows float32 arithmetic inside the optimizer (``lr=1e38``
would fail there with a message naming no key); a large but representable rate that makes
training diverge is caught by the run's NaN check. ``eval.k_values`` must contain 1 (the best
epoch is chosen by Recall@1).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from pml_proxy_anchor import registry
from pml_proxy_anchor.training.config_compose import (
    BASE_CONFIG,
    Layer,
    builtin_config_dir,
    builtin_config_path,
    builtin_config_summary,
    builtin_configs,
    file_layers,
    resolve_config_path,
)
from pml_proxy_anchor.training.config_overrides import (
    Override,
    apply_override,
    parse_override,
    parse_value,
)
from pml_proxy_anchor.training.config_schema import (
    CLOSED_SECTIONS,
    DEFAULTS,
    REGULARIZERS,
    SECTIONS,
    SPEC_KINDS,
    SPEC_PATHS,
    SPEC_SECTIONS,
    check_layer,
    merge_layer,
)
from pml_proxy_anchor.training.errors import (
    ConfigFileNotFoundError,
    ConfigKeyError,
    ConfigValueError,
)
from pml_proxy_anchor.training.precision import check_precision

__all__ = [
    "BASE_CONFIG",
    "CLOSED_SECTIONS",
    "DEFAULTS",
    "MAX_LR",
    "OPTIMIZERS",
    "PROXY_MODES",
    "REGULARIZERS",
    "SECTIONS",
    "SPEC_KINDS",
    "SPEC_PATHS",
    "SPEC_SECTIONS",
    "ConfigFileNotFoundError",
    "ConfigKeyError",
    "ConfigValueError",
    "builtin_config_dir",
    "builtin_config_path",
    "builtin_config_summary",
    "builtin_configs",
    "load_config",
    "loss_spec",
    "optimizer_class",
    "resolve_config_path",
    "to_dict",
    "validate",
]
_parse_value = parse_value  # an override's value as load_config reads it (tests/sweeps use it)

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "AdamW": torch.optim.AdamW,
    "Adam": torch.optim.Adam,
    "SGD": torch.optim.SGD,
    "RMSprop": torch.optim.RMSprop,
}
PROXY_MODES = ("replicated", "sharded")  # train.proxies (pml_proxy_anchor.distributed)
MAX_LR = 1e6  # optimizer.lr, proxy_lr_multiplier and the weight decays: see the module docstring
FILLED_LOSS_ARGUMENTS = ("num_classes", "embedding_size")  # filled in from the data and model


def load_config(path: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> DictConfig:
    """Compose a config (a file path, a built-in config name or a mapping) with its defaults
    and ``overrides``; validate it."""
    if isinstance(path, Mapping):
        layers = [Layer(_plain(path), "<mapping>")]
    elif isinstance(path, (str, Path)):
        layers = file_layers(resolve_config_path(path))
    else:
        raise ConfigValueError(
            f"a config is a file path, a built-in config name or a mapping; got {path!r}."
        )
    if isinstance(overrides, str):
        overrides = [overrides]
    merged = copy.deepcopy(DEFAULTS)
    for layer in layers:
        check_layer(layer.content, layer.source)
        merged = merge_layer(merged, layer.content)
    parsed = [parse_override(text) for text in overrides]
    data_keys = {f"data.{key}" for key in _data_defaults(_final_data_name(merged, parsed))}
    for override in parsed:
        apply_override(merged, override, known=data_keys)
    if parsed:
        check_layer(merged, "the command-line overrides")  # a +key in a closed section
    if isinstance(merged.get("data"), dict):  # every key of the data set, at its default
        merged["data"] = {**_data_defaults(merged["data"].get("name")), **merged["data"]}
    cfg = OmegaConf.create(merged)
    validate(cfg)
    return cfg


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
    if cfg.train.num_workers != "auto":
        _require(cfg, "train.num_workers", int, minimum=0, auto=True)
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
    for key in ("bn_freeze", "channels_last", "compile"):
        if not isinstance(cfg.train[key], bool):
            raise ConfigValueError(
                f"config key train.{key}={cfg.train[key]!r} must be true or false."
            )
    check_precision(cfg.train.precision)
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
    auto: bool = False,
) -> None:
    value = OmegaConf.select(cfg, key)
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type:
        what = "n integer" if kind is int else " number"
        raise ConfigValueError(
            f"config key {key}={value!r} must be a{what}{' or auto' if auto else ''}."
            f" Fix: pass {key}=<{kind.__name__}>{' or ' + key + '=auto' if auto else ''}."
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


def _final_data_name(cfg: Mapping[str, Any], overrides: Sequence[Override]) -> Any:
    """``data.name`` after the overrides (the last one that sets it wins)."""
    data = cfg.get("data")
    name = data.get("name") if isinstance(data, Mapping) else None
    for override in overrides:
        if override.action == "delete":
            continue
        if override.key == "data.name":
            name = override.value
        elif override.key == "data" and isinstance(override.value, Mapping):
            name = override.value.get("name", name)
    return name
