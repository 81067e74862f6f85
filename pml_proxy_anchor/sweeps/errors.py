"""Errors of sweeps: each names what was wrong (the experiment, the parameter, the job) and the fix.

All derive from :class:`pml_proxy_anchor.errors.UserError` (the command line prints them as
``error: ...`` with exit code 2) and from the built-in type a caller would expect.
"""

from __future__ import annotations

from pml_proxy_anchor.errors import UserError


class SweepConfigError(UserError, ValueError):
    """A sweep cannot start: an unknown experiment or parameter, a value our config loader
    refuses for some job, a job name that is not a folder name, a sweep directory holding runs of
    another config."""


class EmptySweepError(SweepConfigError):
    """The sweep has no swept parameter, or a swept parameter has no value (no job to run)."""


class ExperimentNotFoundError(UserError, FileNotFoundError):
    """EXPERIMENT is neither a built-in sweep experiment nor an existing YAML file."""
