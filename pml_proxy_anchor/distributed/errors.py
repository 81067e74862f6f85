"""Errors of the distributed helpers: a failed or stalled rank, configs that differ across ranks."""

from __future__ import annotations


class DistributedError(RuntimeError):
    """Base class of the errors raised by :mod:`pml_proxy_anchor.distributed`."""


class RankFailureError(DistributedError):
    """A collective operation failed or timed out: another rank died, hung or was killed."""


class ConfigMismatchError(DistributedError, ValueError):
    """The ranks of one job resolved different configurations."""
