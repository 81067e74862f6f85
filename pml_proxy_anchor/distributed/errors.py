"""Errors of the distributed helpers: a failed or stalled rank, configs that differ across ranks.

Both are errors the user can act on (restart the job, pass the same config to every rank), so they
derive from :class:`pml_proxy_anchor.errors.UserError`; :class:`ConfigMismatchError` is the
package's one class for configs that disagree.
"""

from __future__ import annotations

from pml_proxy_anchor.errors import ConfigMismatchError, UserError

__all__ = ["ConfigMismatchError", "DistributedError", "RankFailureError"]


class DistributedError(UserError, RuntimeError):
    """Base class of the errors raised by :mod:`pml_proxy_anchor.distributed`."""


class RankFailureError(DistributedError):
    """A collective operation failed or timed out: another rank died, hung or was killed."""
