"""Errors of the training stack: each names what was wrong, what was expected and the fix."""

from __future__ import annotations


class ConfigKeyError(ValueError):
    """A config file or a command-line override names a key that does not exist."""


class ConfigValueError(ValueError):
    """A config value has the wrong type or range, or a mandatory value is missing."""


class ConfigMismatchError(ValueError):
    """``--resume`` was asked with a config that differs from the one the run started with."""


class RunDirectoryExistsError(RuntimeError):
    """The run directory holds a run and neither ``--resume`` nor ``--overwrite`` was given."""


class CheckpointNotFoundError(FileNotFoundError):
    """No checkpoint where one was expected (``--resume``, ``eval``, ``load_embedder``)."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


class DeviceNotAvailableError(RuntimeError):
    """The config asks for a device (e.g. CUDA) that this machine does not have."""
