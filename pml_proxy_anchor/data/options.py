"""The keys of a ``data:`` config section: each a default and a check of its value.

:class:`DataOption` is one key (``data.skip_corrupt``, ``data.image_size``, ...); a data set's
record lists the options it reads, and :func:`read_options` turns a user's section into a complete,
checked dict: an unknown key gets a did-you-mean, a value of the wrong type (``augment: "false"``,
``class_rotations: 2.5``) a message naming ``data.<key>`` and what was expected. Nothing is
silently converted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pml_proxy_anchor.registry import close_matches

from .errors import DataConfigError


@dataclass(frozen=True)
class DataOption:
    """One key of the ``data:`` section: its default and a checker of values.

    ``check(value)`` returns the value to use or raises :class:`ValueError` whose message says
    what was expected (it is prefixed with ``data.<key>`` by :func:`read_options`).
    """

    default: Any
    check: Callable[[Any], Any]
    help: str = ""


def boolean(value: Any) -> bool:
    """``true``/``false`` only (a string such as ``"false"`` would otherwise count as true)."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {value!r} ({type(value).__name__})")


def optional_path(value: Any) -> str | None:
    """A folder or file path (a string), or null."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value
    raise ValueError(f"expected a path (a string) or null, got {value!r}")


def integer(minimum: int, optional: bool = False) -> Callable[[Any], int | None]:
    """An integer ``>= minimum`` (a whole float such as ``224.0`` is accepted), or null."""

    def check(value: Any) -> int | None:
        if value is None and optional:
            return None
        whole = isinstance(value, float) and math.isfinite(value) and value.is_integer()
        if (isinstance(value, int) and not isinstance(value, bool)) or whole:
            if int(value) >= minimum:
                return int(value)
        expected = f"an integer >= {minimum}" + (" or null" if optional else "")
        raise ValueError(f"expected {expected}, got {value!r}")

    return check


def choice(*allowed: Any, normalize: Callable[[Any], Any] = lambda v: v) -> Callable[[Any], Any]:
    """One of ``allowed`` (after ``normalize``)."""

    def check(value: Any) -> Any:
        try:
            normalized = normalize(value)
        except (TypeError, ValueError, AttributeError):
            normalized = object()
        if isinstance(value, bool) or normalized not in allowed:
            raise ValueError(
                f"expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}"
            )
        return normalized

    return check


def read_options(
    section: Mapping[str, Any], options: Mapping[str, DataOption], dataset: str
) -> dict[str, Any]:
    """``section`` (without ``name``) checked against ``options``, defaults filled in.

    Raises:
        DataConfigError: an unknown key (with the closest known ones) or a bad value; the message
            names ``data.<key>``.
    """
    out: dict[str, Any] = {}
    for key, value in section.items():
        if key not in options:
            close = close_matches(str(key), options, n=2)
            hint = f" Did you mean {' or '.join(f'data.{c}' for c in close)}?" if close else ""
            raise DataConfigError(
                f"unknown key data.{key} for data set {dataset!r}.{hint} Known keys of "
                f"{dataset!r}: {', '.join('data.' + k for k in ['name', *options])}."
            )
        try:
            out[key] = options[key].check(value)
        except ValueError as err:
            raise DataConfigError(
                f"data.{key} of data set {dataset!r}: {err}. {options[key].help}".rstrip()
            ) from None
    for key, option in options.items():
        out.setdefault(key, option.default)
    return out
