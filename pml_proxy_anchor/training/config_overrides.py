"""Command-line overrides of a run config, written in Hydra's override grammar.

- ``key=value`` changes a key that exists after composition (every key of the data set counts);
- ``+key=value`` adds a key that does not exist yet and refuses one that does;
- ``++key=value`` sets a key whether it exists or not;
- ``~key`` deletes a key (``~key=value``: only while it has that value); the schema's own keys
  (:func:`~.config_schema.is_schema_key`) are set, not deleted.

Hydra's grammar reads the values: ``1e-4`` is a float, ``true``, ``null``, ``[1, 2]``,
``{Name: {kwarg: 1}}``, quoted strings (``'a,b'``), ``int(3.5)``. Two spellings read as YAML keep
working as before: ``.inf`` / ``-.inf`` / ``.nan``, and a value Hydra's grammar cannot read (an
``=`` or an apostrophe in a path: ``run_dir=runs/lr=1e-4``) is read as YAML. Several values
(``a=1,2``, ``range(...)``) are a sweep: ``pml-proxy-anchor sweep``, not a single run.

A mapping value is merged like a config layer (:func:`~.config_schema.merge_layer`): a registry
spec naming another class replaces the spec.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Collection
from typing import Any

from omegaconf import OmegaConf

from pml_proxy_anchor.training.config_schema import (
    CLOSED_SECTIONS,
    is_schema_key,
    merge_layer,
    schema_default,
    unknown_key_error,
)
from pml_proxy_anchor.training.errors import ConfigKeyError, ConfigValueError

WHERE = "the command-line overrides"
ACTIONS = ("set", "add", "force_add", "delete")
_YAML_FLOATS = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
_EXAMPLES = "e.g. train.epochs=2, +model.extra=1 to add a key, ~model.extra to delete one"


@dataclasses.dataclass(frozen=True)
class Override:
    """One override: its action (:data:`ACTIONS`) on a dotted key, with a value."""

    text: str  # as given
    action: str
    key: str
    value: Any = None
    raw: str = ""  # the value as written
    has_value: bool = True  # False for ``~key``


def parse_override(text: Any) -> Override:
    """``text`` read with Hydra's override grammar (a :class:`ConfigValueError` naming the
    problem otherwise)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if not isinstance(text, str) or ("=" not in text and not text.lstrip().startswith("~")):
        raise ConfigValueError(f"override {text!r} is not of the form key=value ({_EXAMPLES}).")
    head, _, raw = text.partition("=")
    if not all(part.strip() for part in head.strip().lstrip("+~").split(".")):
        raise ConfigValueError(
            f"override {text!r} has an empty key part; expected e.g. train.epochs=2."
        )
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_override(text)
        value = _value(parsed, text) if "=" in text else None
    except HydraException as hydra_error:
        # A value Hydra's grammar cannot read (an `=` in a path), under a valid key: YAML.
        try:
            parsed = parser.parse_override(f"{head}=0")
            value = _yaml_value(raw)
        except (HydraException, ValueError):
            raise ConfigValueError(
                f"override {text!r} is not valid in Hydra's override grammar: "
                f"{str(hydra_error).strip()} ({_EXAMPLES}; quote a value with special "
                "characters: key='a b,c')."
            ) from None
    if parsed.package is not None:
        raise ConfigValueError(
            f"override {text!r}: a package (@...) applies to config groups; a run's overrides "
            "set keys (e.g. train.epochs=2)."
        )
    action = {"DEL": "delete", "ADD": "add", "FORCE_ADD": "force_add"}.get(parsed.type.name, "set")
    return Override(text, action, parsed.key_or_group, value, raw.strip(), "=" in text)


def parse_value(raw: str) -> Any:
    """The value ``raw`` of ``key=raw``, read as :func:`parse_override` reads it."""
    return parse_override(f"key={raw}").value


def apply_override(cfg: dict[str, Any], override: Override, known: Collection[str] = ()) -> None:
    """Apply ``override`` to the plain config ``cfg`` in place. ``known``: dotted keys that may
    be set without ``+`` although ``cfg`` lacks them (the data set's keys)."""
    parts = override.key.split(".")
    adding = override.action in ("add", "force_add")
    node: Any = cfg
    for depth, part in enumerate(parts[:-1]):
        dotted = ".".join(parts[: depth + 1])
        if not isinstance(node, dict) or (part not in node and not adding):
            raise unknown_key_error(dotted, _keys_of(node), WHERE)
        if node.get(part) is None and override.action != "delete":
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigValueError(
                f"override {override.text!r}: {dotted} is a value, not a section."
            )
    last = parts[-1]
    if override.action == "delete":
        _delete(node, last, override)
        return
    if override.action == "add" and last in node:
        raise ConfigKeyError(
            f"override {override.text!r}: {override.key} already exists (value "
            f"{node[last]!r}); a leading + only adds a new key. Fix: use "
            f"{override.key}={override.raw} to change it."
        )
    if override.action == "set" and last not in node and override.key not in known:
        raise _unknown_error(node, override, known)
    value = copy.deepcopy(override.value)
    node[last] = merge_layer(node[last], value, f"{override.key}.") if last in node else value


def _delete(node: dict[str, Any], last: str, override: Override) -> None:
    if last not in node:
        raise unknown_key_error(override.key, _keys_of(node), WHERE)
    if is_schema_key(override.key):
        raise ConfigKeyError(
            f"override {override.text!r}: {override.key} is a key of the config schema and "
            f"cannot be deleted. Fix: set it instead ({override.key}=VALUE; the default is "
            f"{schema_default(override.key)!r})."
        )
    if override.has_value and node[last] != override.value:
        raise ConfigValueError(
            f"override {override.text!r}: {override.key} is {node[last]!r}, not "
            f"{override.value!r}; ~key=value deletes a key only while it has that value. Fix: "
            f"~{override.key}."
        )
    del node[last]


def _unknown_error(node: Any, override: Override, known: Collection[str]) -> ConfigKeyError:
    key = override.key
    parent = key[: -len(key.rsplit(".", 1)[-1])]
    siblings = [
        k[len(parent) :] for k in known if k.startswith(parent) and "." not in k[len(parent) :]
    ]
    candidates = list(dict.fromkeys([*_keys_of(node), *siblings]))
    error = unknown_key_error(key, candidates, WHERE)
    first = key.split(".")[0]
    if first not in CLOSED_SECTIONS and "." in key and not siblings:
        return ConfigKeyError(f"{error} To add a new key, write +{key}={override.raw}.")
    return error


def _value(parsed: Any, text: str) -> Any:
    """The value Hydra parsed; a sweep is refused; YAML's special floats are floats."""
    if parsed.is_sweep_override():
        key, raw = parsed.key_or_group, text.partition("=")[2].strip()
        raise ConfigValueError(
            f"override {text!r} gives several values (a sweep in Hydra's grammar); a run takes "
            f"one. Fix: a list is {key}=[{raw}], a string with commas is quoted ({key}='{raw}'); "
            "to run one training per value: pml-proxy-anchor sweep."
        )
    value = parsed.value()
    raw = text.partition("=")[2].strip()
    if isinstance(value, str) and raw.lower() in _YAML_FLOATS:
        return _YAML_FLOATS[raw.lower()]
    return value


def _yaml_value(raw: str) -> Any:
    """``raw`` read as YAML, as OmegaConf reads a config file (``1e-4`` is a float); a
    ``ValueError`` when it is not YAML."""
    try:
        return OmegaConf.to_container(OmegaConf.create("value: " + raw), resolve=False)["value"]
    except Exception as err:  # OmegaConf wraps YAML errors in several types
        raise ValueError(str(err)) from None


def _keys_of(node: Any) -> list[str]:
    return list(node) if isinstance(node, dict) else []
