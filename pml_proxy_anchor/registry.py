"""Names to classes over this package and pytorch-metric-learning (PML), and ``build(spec)``.

A *spec* is a plain name (``"MeanReducer"``) or a dict with exactly one key, the class name, whose
value holds the constructor arguments (or null)::

    build({"ProxyAnchorLoss": {"num_classes": 100, "embedding_size": 512,
                               "distance": {"CosineSimilarity": {}},
                               "reducer": "MeanReducer"}})

:func:`parse_spec` is the one parser of specs in the package (the config loader and the training
builders use it too). Arguments are built recursively: a nested dict with exactly one key that is a
registered name is an object. An argument that takes an object of one kind (:data:`ARGUMENT_KINDS`:
``distance``, ``reducer``, ``embedding_regularizer``, ``weight_regularizer``, ``miner``, ``loss``)
must be a spec of that kind (a bare name is a spec without arguments) or null; anything else, such
as a miner given as ``reducer`` or ``distance: 5``, is refused naming the argument's path.

``"ProxyAnchorLoss"`` is this package's loss, ``"pml.ProxyAnchorLoss"`` PML's built-in; every other
PML loss, miner, reducer, distance, regularizer and sampler is available under its own name and
under ``"pml.<name>"``. Losses declared by other packages under the entry-point group
``pytorch_metric_learning.losses`` are added too (never overriding a name above).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any, TypeVar

from pml_proxy_anchor.errors import UserError

T = TypeVar("T")

ENTRY_POINT_GROUP = "pytorch_metric_learning.losses"
KINDS = ("losses", "miners", "reducers", "distances", "regularizers", "samplers")
# One of each kind, for messages.
_EXAMPLE = {
    "losses": "ProxyAnchorLoss",
    "miners": "MultiSimilarityMiner",
    "reducers": "MeanReducer",
    "distances": "CosineSimilarity",
    "regularizers": "LpRegularizer",
    "samplers": "MPerClassSampler",
}
_SINGULAR = {
    "losses": "loss",
    "miners": "miner",
    "reducers": "reducer",
    "distances": "distance",
    "regularizers": "regularizer",
    "samplers": "sampler",
}
ARGUMENT_KINDS: dict[str, str] = {
    "distance": "distances",
    "reducer": "reducers",
    "embedding_regularizer": "regularizers",
    "weight_regularizer": "regularizers",
    "miner": "miners",
    "loss": "losses",
}
"""Constructor arguments (of any class) that take an object of one kind."""

_REGISTRY: dict[str, type] = {}
_KIND_OF: dict[str, str] = {}
_LOADED = False


class RegistryError(UserError, KeyError, ValueError):
    """Unknown name, malformed spec or a spec of the wrong kind; the message names the place."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def close_matches(name: str, known: Iterable[str], n: int = 5) -> list[str]:
    """The names in ``known`` closest to ``name`` (difflib), case-insensitively as a fallback."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    if not close:  # try case-insensitively, e.g. "proxyanchorloss"
        lowered = {k.lower(): k for k in known}
        close = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=n)]
    return close


def choose(name: Any, table: Mapping[str, T], what: str) -> T:
    """``table[name]``, or a :class:`RegistryError` naming ``what`` and the closest names.

    The one lookup with a did-you-mean hint used for every name-to-thing table of the package
    (registered classes, data sets, backbones, optimizers): ``what`` is the config key or the
    kind of thing, e.g. ``"data.name"``.
    """
    if not isinstance(name, str):
        raise RegistryError(
            f"{what} must be a name (a string), one of {', '.join(sorted(table))}; got {name!r}."
        )
    if name in table:
        return table[name]
    close = close_matches(name, table)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "no close match."
    raise RegistryError(
        f"unknown {what} {name!r}: {hint} Known: {', '.join(sorted(table))}."
        if len(table) <= 30
        else f"unknown {what} {name!r}: {hint}"
    )


def _pml_classes(kind: str) -> dict[str, type]:
    import importlib

    module = importlib.import_module(f"pytorch_metric_learning.{kind}")
    found = {}
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and obj.__module__.startswith("pytorch_metric_learning"):
            found[name] = obj
    return found


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    from .losses import ProxyAnchorLoss

    for kind in KINDS:
        for name, cls in _pml_classes(kind).items():
            _REGISTRY.setdefault(name, cls)
            _REGISTRY[f"pml.{name}"] = cls
            _KIND_OF.setdefault(name, kind)
            _KIND_OF[f"pml.{name}"] = kind
    _REGISTRY["ProxyAnchorLoss"] = ProxyAnchorLoss
    _KIND_OF["ProxyAnchorLoss"] = "losses"
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ep.load()
            _KIND_OF[ep.name] = "losses"
    _LOADED = True


def register(name: str, cls: type, kind: str = "losses", overwrite: bool = False) -> type:
    """Add ``cls`` under ``name`` as one of ``kind`` (e.g. a project-specific loss); returns
    ``cls``."""
    _load()
    if kind not in KINDS:
        raise RegistryError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if name in _REGISTRY and not overwrite and _REGISTRY[name] is not cls:
        raise RegistryError(
            f"the name {name!r} is already registered to {_REGISTRY[name].__qualname__}; "
            "pass overwrite=True to replace it"
        )
    _REGISTRY[name] = cls
    _KIND_OF[name] = kind
    return cls


def names(kind: str | None = None) -> list[str]:
    """All registered names (optionally of one kind: losses, miners, reducers, ...), sorted."""
    _load()
    if kind is not None and kind not in KINDS:
        raise RegistryError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return sorted(n for n in _REGISTRY if kind is None or _KIND_OF.get(n) == kind)


def kind_of(name: str) -> str | None:
    """The kind (``"losses"``, ``"miners"``, ...) of a registered name, None if unknown."""
    _load()
    return _KIND_OF.get(name)


def _at(where: str | None) -> str:
    return f"{where}: " if where else ""


def _unknown(name: str, where: str | None = None) -> RegistryError:
    close = close_matches(name, _REGISTRY)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "no close match."
    return RegistryError(
        f"{_at(where)}unknown name {name!r}: {hint} "
        f"(registry.names() lists all {len(_REGISTRY)} names)"
    )


def get(name: str, where: str | None = None) -> type:
    """The class registered under ``name``; ``RegistryError`` with close matches otherwise.

    ``where`` (e.g. the config key ``"loss"``) is named in the error.
    """
    _load()
    if not isinstance(name, str):
        raise RegistryError(f"{_at(where)}a registry name must be a string; got {name!r}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown(name, where) from None


def parse_spec(spec: Any, where: str = "spec") -> tuple[str, dict[str, Any]]:
    """``(class name, arguments)`` of a spec: ``"Name"`` or ``{Name: {arguments} or null}``.

    The one parser of specs; ``where`` (a config key such as ``"loss"``) is named in the error.
    The name is not looked up (see :func:`get`).
    """
    if isinstance(spec, str):
        if not spec.strip():
            raise RegistryError(f"{where} is an empty name; expected a class name or a spec.")
        return spec, {}
    if isinstance(spec, Mapping) and len(spec) == 1:
        ((name, args),) = spec.items()
        if not isinstance(name, str):
            raise RegistryError(f"{where}: the class name must be a string; got {name!r}.")
        if args is None:
            return name, {}
        if not isinstance(args, Mapping):
            raise RegistryError(
                f"{where}: the arguments of {name!r} must be a mapping of argument names to "
                f"values (or null); got {args!r}. Fix: {{{name}: {{argument: value}}}}."
            )
        return name, {str(k): v for k, v in args.items()}
    raise RegistryError(
        f"{where} must be a spec: a class name such as 'MeanReducer', or a mapping with exactly "
        f"one key, the class name, mapping to its arguments, e.g. {{MeanReducer: {{}}}}; "
        f"got {spec!r}."
    )


def spec_name(spec: Any) -> str | None:
    """The class name of a well-formed spec (see :func:`parse_spec`), else None."""
    try:
        return parse_spec(spec)[0]
    except RegistryError:
        return None


def accepts(cls: type, argument: str) -> bool:
    """Whether the constructor of ``cls`` names ``argument`` (``**kwargs`` does not count)."""
    try:
        parameter = inspect.signature(cls).parameters.get(argument)
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind not in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    )


def _looks_like_class_name(key: Any) -> bool:
    return isinstance(key, str) and (key[:1].isupper() or key.startswith("pml."))


def _is_nested_spec(value: Any) -> bool:
    """Whether an argument value is an object spec (a one-key mapping naming a class)."""
    if not isinstance(value, Mapping) or len(value) != 1:
        return False
    ((key, args),) = value.items()
    if not (args is None or isinstance(args, Mapping)):
        return False
    return key in _REGISTRY or _looks_like_class_name(key)


def _check_kind(name: str, kind: str | None, where: str) -> None:
    if kind is None:
        return
    actual = _KIND_OF.get(name)
    if actual == kind:
        return
    what = f"a {_SINGULAR[actual]}" if actual in _SINGULAR else "not a registered kind"
    raise RegistryError(
        f"{where} names {name!r}, {what}; expected a {_SINGULAR[kind]} such as "
        f"{_EXAMPLE[kind]!r} (registry.names({kind!r}) lists them)."
    )


def _argument(value: Any, where: str, kind: str | None, construct: bool) -> Any:
    if kind is not None:  # an argument that takes an object of one kind
        if value is None:
            return None
        if isinstance(value, (str, Mapping)):
            return _object(value, where, kind, construct, {}, {})
        if _is_instance_of_kind(value, kind):
            return value  # an object built by the caller
        raise RegistryError(
            f"{where} must be a {_SINGULAR[kind]}: a name such as {_EXAMPLE[kind]!r} or "
            f"{{{_EXAMPLE[kind]}: {{arguments}}}}, or null; got {value!r}."
        )
    if _is_nested_spec(value):
        return _object(value, where, None, construct, {}, {})
    if isinstance(value, Mapping):
        return {k: _argument(v, f"{where}.{k}", None, construct) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(
            _argument(v, f"{where}[{i}]", None, construct) for i, v in enumerate(value)
        )
    return value


def _is_instance_of_kind(value: Any, kind: str) -> bool:
    return any(
        isinstance(value, cls) for name, cls in _REGISTRY.items() if _KIND_OF.get(name) == kind
    )


def _object(
    spec: Any,
    where: str,
    kind: str | None,
    construct: bool,
    defaults: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> Any:
    name, args = parse_spec(spec, where)
    cls = get(name, where)
    _check_kind(name, kind, where)
    kwargs = {
        key: _argument(value, f"{where}.{name}.{key}", ARGUMENT_KINDS.get(key), construct)
        for key, value in args.items()
    }
    if not construct:
        return cls
    for key, value in defaults.items():
        if key not in kwargs and accepts(cls, key):
            kwargs[key] = value
    kwargs.update(overrides)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise RegistryError(
            f"could not build {name!r} ({where}) with arguments {sorted(kwargs)}: {err}"
        ) from err


def check(spec: Any, kind: str | None = None, where: str = "spec") -> type:
    """Parse ``spec`` and check every name in it (and the kinds of :data:`ARGUMENT_KINDS`
    arguments) without building anything; returns the top-level class."""
    _load()
    if kind is not None and kind not in KINDS:
        raise RegistryError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return _object(spec, where, kind, False, {}, {})


def build(
    spec: str | Mapping[str, Any],
    *,
    kind: str | None = None,
    where: str = "spec",
    defaults: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    """Instantiate a spec (see the module docstring).

    ``kind`` (one of :data:`KINDS`): the top-level class must be of that kind. ``where``: the
    place of the spec named in errors (a config key such as ``"loss"``). ``defaults``: arguments
    passed where the class's constructor names them and the spec does not set them (e.g.
    ``num_classes``). ``overrides``: extra constructor arguments, always passed (e.g.
    ``labels=`` for a sampler).
    """
    _load()
    if kind is not None and kind not in KINDS:
        raise RegistryError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return _object(spec, where, kind, True, defaults or {}, overrides)
