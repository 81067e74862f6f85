"""Errors of the training stack: each names what was wrong, what was expected and the fix.

All derive from :class:`pml_proxy_anchor.errors.UserError` (the command line prints them as
``error: ...`` with exit code 2) and from the built-in type a caller would expect.
:class:`ConfigMismatchError` is the package's one error for configs that disagree: a ``--resume``
with a changed config, or the processes of a distributed job resolving different configs.
"""

from __future__ import annotations

from pml_proxy_anchor.errors import ConfigMismatchError, UserError

__all__ = [
    "CheckpointNotFoundError",
    "ConfigFileNotFoundError",
    "ConfigKeyError",
    "ConfigMismatchError",
    "ConfigValueError",
    "DeviceNotAvailableError",
    "NonFiniteLossError",
    "RunDirectoryExistsError",
]


class ConfigKeyError(UserError, ValueError):
    """A config file or a command-line override names a key that does not exist (or, with
    ``+key=value``, one that already exists)."""


class ConfigValueError(UserError, ValueError):
    """A config value has the wrong type or range, or a mandatory value is missing."""


class ConfigFileNotFoundError(UserError, FileNotFoundError):
    """A config file (given, or named in a ``defaults:`` list) does not exist."""


class RunDirectoryExistsError(UserError, RuntimeError):
    """The run directory holds a run and neither ``--resume`` nor ``--overwrite`` was given."""


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """No checkpoint where one was expected (``--resume``, ``eval``, ``load_embedder``)."""


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


class DeviceNotAvailableError(UserError, RuntimeError):
    """The config asks for a device (e.g. CUDA) that this machine does not have."""
