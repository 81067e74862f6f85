"""Errors raised by the data sets: a missing data set, a corrupt image, a malformed file, a bad key.

Every class derives from :class:`~pml_proxy_anchor.errors.UserError` (something the user can fix)
and from the built-in type a caller would expect. One function, :func:`dataset_not_found`, builds
every "data set missing" message so that they all say the same three things: which path is
missing, the layout expected under the root, and the page to download the data set from (nothing
is downloaded automatically).
"""

from __future__ import annotations

import os

from pml_proxy_anchor.errors import UserError


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A data root, an annotation file or an image file of a data set does not exist."""


class CorruptImageError(UserError, ValueError):
    """An image file exists but cannot be decoded."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"cannot read image {path!r}: {reason}. Expected a readable JPEG/PNG file. "
            "Fix: replace the file with a good copy from the original archive, or construct the "
            "data set with skip_corrupt=True to drop unreadable images (their count is reported)."
        )


class AnnotationError(UserError, ValueError):
    """An annotation file of a data set is malformed (the message names the file and the line).

    Raised instead of dropping or miscounting images: an id that does not join across files, a
    duplicated id or path, a class number that is not an integer or lies outside the data set's
    classes.
    """


class DataConfigError(UserError, ValueError):
    """The ``data:`` section of a config is wrong: an unknown name or key, a bad value."""


def restore_hint(what: str = "the file") -> str:
    """The fix for a damaged annotation file (the same words everywhere)."""
    return f"Fix: restore {what} from the original archive (it was edited or cut short)."


def dataset_not_found(
    missing: str | os.PathLike[str],
    *,
    dataset: str,
    root: str | os.PathLike[str],
    layout: str,
    download_page: str | None,
    what: str = "file",
    hint: str | None = None,
) -> DatasetNotFoundError:
    """Build the error for a missing path of a data set (the one place that words this message).

    Args:
        missing: the path that was looked for and not found.
        dataset: the data set's display name, e.g. ``"CUB-200-2011"``.
        root: the root the user gave.
        layout: the expected tree under the root, one entry per line.
        download_page: the official page to get the data set from (``None`` for user data).
        what: a word for the missing thing ("file", "folder", "data root", "image file").
        hint: an extra line of advice, printed last.
    """
    lines = [
        f"{dataset}: {what} not found: {os.fspath(missing)!r} (data root: {os.fspath(root)!r}).",
        "Expected layout under the data root:",
        *("    " + line for line in layout.strip("\n").splitlines()),
    ]
    if download_page:
        lines.append(
            f"Fix: download {dataset} from {download_page} (nothing is downloaded automatically), "
            "extract it and pass the folder that holds the files above as the root."
        )
    else:
        lines.append("Fix: pass a root laid out as above.")
    if hint:
        lines.append(hint)
    return DatasetNotFoundError("\n".join(lines))
