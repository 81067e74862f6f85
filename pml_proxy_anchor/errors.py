"""The one base class of errors a user can fix: bad input, a missing file, a run directory in use.

Every error this package raises on purpose for something the user gave it (a config value, a
path, a tensor, a checkpoint) derives from :class:`UserError`, usually together with the built-in
type a caller would expect (``ValueError``, ``FileNotFoundError``, ``RuntimeError``). Its message
says what was wrong, what was expected and how to fix it. The command line prints these as
``error: ...`` with exit code 2; anything else is a bug (or an out-of-memory condition) and keeps
its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of the errors a user can fix by changing an input; the message names the fix."""

    def __str__(self) -> str:  # KeyError subclasses would otherwise print the repr
        return str(self.args[0]) if self.args else ""


class ConfigMismatchError(UserError, ValueError):
    """Two configs that must agree differ: ``--resume`` with a config other than the one the run
    started with, or the processes of one distributed job resolving different configs."""
