"""Names to classes over this package and pytorch-metric-learning (PML), and ``build(spec)``.

A *spec* is a plain name (``"MeanReducer"``) or a dict with exactly one key, the class name, whose
value holds the constructor arguments::

    build({"ProxyAnchorLoss": {"num_classes": 100, "embedding_size": 512,
                               "distance": {"CosineSimilarity": {}},
                               "reducer": {"MeanReducer": {}}}})

Arguments are built recursively: a nested dict with exactly one key that is a registered name is
an object. ``"ProxyAnchorLoss"`` is this package's loss, ``"pml.ProxyAnchorLoss"`` PML's built-in;
every other PML loss, miner, reducer, distance, regularizer and sampler is available under its
own name and under ``"pml.<name>"``. Losses declared by other packages under the entry-point
group ``pytorch_metric_learning.losses`` are added too (never overriding a name above).
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

_REGISTRY: dict[str, type] = {}
_KIND_OF: dict[str, str] = {}
_LOADED = False


class RegistryError(UserError, KeyError, ValueError):
    """Unknown name or malformed spec; the message lists the closest registered names."""

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
    """Add ``cls`` under ``name`` (e.g. a project-specific loss); returns ``cls``."""
    _load()
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


def _unknown(name: str) -> RegistryError:
    close = close_matches(name, _REGISTRY)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "no close match."
    return RegistryError(
        f"unknown name {name!r}: {hint} (registry.names() lists all {len(_REGISTRY)} names)"
    )


def get(name: str) -> type:
    """The class registered under ``name``; ``RegistryError`` with close matches otherwise."""
    _load()
    if not isinstance(name, str):
        raise RegistryError(f"a registry name must be a string; got {name!r}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown(name) from None


def _looks_like_class_name(key: Any) -> bool:
    return isinstance(key, str) and key[:1].isupper() or str(key).startswith("pml.")


def _is_object_spec(value: Any) -> bool:
    if not isinstance(value, Mapping) or len(value) != 1:
        return False
    ((key, args),) = value.items()
    if key in _REGISTRY:
        return args is None or isinstance(args, Mapping)
    if _looks_like_class_name(key) and (args is None or isinstance(args, Mapping)):
        raise _unknown(str(key))
    return False


def _build_value(value: Any) -> Any:
    if _is_object_spec(value):
        return build(value)
    if isinstance(value, Mapping):
        return {k: _build_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_build_value(v) for v in value)
    return value


def build(spec: str | Mapping[str, Any], **overrides: Any) -> Any:
    """Instantiate a spec (see the module docstring); ``overrides`` are extra constructor
    arguments for the top-level object (e.g. ``labels=`` for a sampler)."""
    _load()
    if isinstance(spec, str):
        return get(spec)(**overrides)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise RegistryError(
            "a spec is a name or a dict with exactly one key (the class name) mapping to its "
            f"arguments, e.g. {{'MeanReducer': {{}}}}; got {spec!r}"
        )
    ((name, args),) = spec.items()
    cls = get(str(name))
    if args is not None and not isinstance(args, Mapping):
        raise RegistryError(f"the arguments of {name!r} must be a dict (or null); got {args!r}")
    kwargs = {str(k): _build_value(v) for k, v in dict(args or {}).items()}
    kwargs.update(overrides)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise RegistryError(
            f"could not build {name!r} with arguments {sorted(kwargs)}: {err}"
        ) from err
