"""Errors of the models package: the ``model:`` config section and pretrained weight files.

Every class derives from :class:`~pml_proxy_anchor.errors.UserError` (something the user can fix)
and from the built-in type a caller would expect; each message names the key or file, what was
expected and the fix:

- :class:`ModelConfigError` - the ``model:`` section names an unknown backbone or key, or a value
  of the wrong type.
- :class:`WeightsRequiredError` - a paper backbone (BN-Inception, ResNet-50) without
  ``model.pretrained``: training would silently start from random weights.
- :class:`WeightsNotFoundError` - the weight file does not exist (or cannot be downloaded); the
  message says where to get it (built by :func:`weights_not_found`).
- :class:`WeightsFileError` - the file exists but is not a readable PyTorch state_dict (empty,
  truncated, damaged, a directory, or holding other objects than tensors).
- :class:`WeightsMismatchError` - the state_dict does not fit the architecture; lists the missing
  keys, the unexpected keys and the shape mismatches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pml_proxy_anchor.errors import UserError

_MAX_LISTED = 10


class ModelConfigError(UserError, ValueError):
    """The ``model:`` section names an unknown backbone or key, or a value of a wrong type."""


class WeightsRequiredError(ModelConfigError):
    """A backbone that the paper starts from ImageNet weights was given no ``model.pretrained``."""


class WeightsNotFoundError(UserError, FileNotFoundError):
    """A pretrained weight file does not exist (nothing is downloaded behind the user's back)."""


class WeightsFileError(UserError, ValueError):
    """A weight file exists but cannot be used as a state_dict for the architecture."""


class WeightsMismatchError(WeightsFileError):
    """A state_dict's keys or shapes do not match the architecture it is loaded into.

    Attributes:
        missing: keys of the model that the file lacks.
        unexpected: keys of the file that the model does not have.
        shape_mismatches: ``(key, shape in file, shape in model)`` for keys present in both.
    """

    def __init__(
        self,
        source: str,
        architecture: str,
        missing: Sequence[str],
        unexpected: Sequence[str],
        shape_mismatches: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]],
        hint: str,
    ) -> None:
        self.source = source
        self.architecture = architecture
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.shape_mismatches = list(shape_mismatches)
        lines = [f"weight file {source!r} does not match the {architecture} architecture:"]
        if self.missing:
            lines.append(f"  {len(self.missing)} missing key(s): {_listing(self.missing)}")
        if self.unexpected:
            lines.append(f"  {len(self.unexpected)} unexpected key(s): {_listing(self.unexpected)}")
        if self.shape_mismatches:
            shown = [
                f"{key} (file {tuple(file_shape)}, model {tuple(model_shape)})"
                for key, file_shape, model_shape in self.shape_mismatches
            ]
            lines.append(f"  {len(shown)} shape mismatch(es): {_listing(shown)}")
        lines.append(f"Fix: {hint}")
        super().__init__("\n".join(lines))


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f", ... and {len(items) - _MAX_LISTED} more"
    return shown


def weights_not_found(
    path: str | os.PathLike[str], *, architecture: str, how_to_get: str
) -> WeightsNotFoundError:
    """Build the error for a missing weight file (the one place that words this message).

    Args:
        path: the path that was looked for.
        architecture: display name of the network, e.g. ``"BN-Inception"``.
        how_to_get: where to download the expected file, one sentence.
    """
    return WeightsNotFoundError(
        f"{architecture} weight file not found: {os.fspath(path)!r}. {how_to_get} "
        "Pass its local path as the `pretrained` weights (model.pretrained in the config), "
        "or model.pretrained=none to start from random weights on purpose."
    )
