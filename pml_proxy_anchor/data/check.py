"""``data check NAME ROOT``: found vs expected counts of a published data set, per split.

Counts come from the annotation files (fast: no image is opened); image files are then checked
for existence, all of them or a random sample, and the missing ones counted. With ``decode=True``
each checked image is also decoded at full size (several threads, with a progress bar), which
finds truncated or otherwise unreadable files; they are reported by path with the decoder's
reason. The expected counts are those of docs/paper.md section 3.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from .base import decode_error
from .build import get_dataset_class
from .errors import DataConfigError

IMAGE_CHECK_MODES = ("all", "sample", "none")
#: Corrupt files listed per split in the text of a report (``to_dict`` has all of them).
MAX_LISTED_CORRUPT = 100


@dataclass
class SplitCheck:
    """Counts of one split: expected (docs/paper.md) and found (annotation and image files).

    ``corrupt`` lists ``(path, reason)`` of every checked file that exists but does not decode
    (only with ``decode=True``; ``decoded_files`` is then the number of files decoded).
    """

    split: str
    expected_images: int
    found_images: int
    expected_classes: int
    found_classes: int
    checked_files: int
    missing_files: int
    missing_examples: list[str] = field(default_factory=list)
    decoded_files: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)

    @property
    def corrupt_files(self) -> int:
        return len(self.corrupt)

    @property
    def ok(self) -> bool:
        return (
            self.found_images == self.expected_images
            and self.found_classes == self.expected_classes
            and self.missing_files == 0
            and not self.corrupt
        )


@dataclass
class CheckReport:
    """What :func:`check_dataset` found; ``str(report)`` is a table, ``report.ok`` the verdict."""

    dataset: str
    root: str
    images: str
    splits: list[SplitCheck]
    decoded: bool = False

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.splits)

    @property
    def corrupt_paths(self) -> list[str]:
        """Every file found corrupt, over all splits."""
        return [path for s in self.splits for path, _ in s.corrupt]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "root": self.root,
            "images": self.images,
            "decoded": self.decoded,
            "ok": self.ok,
            "splits": [
                {**vars(s), "corrupt_files": s.corrupt_files, "ok": s.ok} for s in self.splits
            ],
        }

    def __str__(self) -> str:
        header = ["split", "images found", "expected", "classes found", "expected", "files missing"]
        if self.decoded:
            header.append("files corrupt")
        header.append("")
        rows = []
        for s in self.splits:
            row = [
                s.split,
                f"{s.found_images:,}",
                f"{s.expected_images:,}",
                f"{s.found_classes:,}",
                f"{s.expected_classes:,}",
                f"{s.missing_files:,} of {s.checked_files:,}"
                if self.images != "none"
                else "not checked",
            ]
            if self.decoded:
                row.append(f"{s.corrupt_files:,} of {s.decoded_files:,}")
            row.append("ok" if s.ok else "MISMATCH")
            rows.append(row)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [f"{self.dataset} at {self.root}", fmt.format(*header).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines += [fmt.format(*r).rstrip() for r in rows]
        for s in self.splits:
            for path in s.missing_examples:
                lines.append(f"missing ({s.split}): {path}")
            for path, reason in s.corrupt[:MAX_LISTED_CORRUPT]:
                lines.append(f"corrupt ({s.split}): {path} ({reason})")
            if s.corrupt_files > MAX_LISTED_CORRUPT:
                lines.append(
                    f"corrupt ({s.split}): ... and {s.corrupt_files - MAX_LISTED_CORRUPT:,} more"
                )
        if self.ok:
            lines.append("OK")
        else:
            lines.append(
                "MISMATCH: see the rows above and reproduce/DATASETS.md in the source repository"
            )
            if any(s.corrupt for s in self.splits):
                lines.append(
                    "Fix for corrupt files: replace them from the original archive, or train with "
                    "data.skip_corrupt=true to drop them (with a warning)."
                )
        return "\n".join(lines)


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataConfigError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def _decode_all(paths: list[str], workers: int, desc: str) -> list[str | None]:
    """:func:`decode_error` of each path, in order, on ``workers`` threads (PIL decodes
    without the GIL), with a progress bar."""
    bar = tqdm(total=len(paths), desc=desc, unit="img")
    try:
        if workers == 1:
            out = []
            for p in paths:
                out.append(decode_error(p))
                bar.update()
            return out
        with ThreadPoolExecutor(max_workers=workers) as pool:
            out = []
            for reason in pool.map(decode_error, paths, chunksize=64):
                out.append(reason)
                bar.update()
            return out
    finally:
        bar.close()


def check_dataset(
    name: str,
    root: str | os.PathLike[str],
    images: str = "all",
    sample_size: int = 1000,
    seed: int = 0,
    max_examples: int = 5,
    decode: bool = False,
    workers: int | None = None,
) -> CheckReport:
    """Compare the data set ``name`` under ``root`` with its expected counts.

    Args:
        name: ``cub200``, ``cars196``, ``sop`` or ``inshop`` (or an alias).
        root: the data set's folder or its parent.
        images: check that ``"all"`` image files exist, a random ``"sample"`` of
            ``sample_size`` per split, or ``"none"``.
        sample_size: files per split checked when ``images="sample"``.
        seed: seed of the sample.
        max_examples: missing paths listed per split.
        decode: also decode each checked image at full size and report the ones that fail
            (truncated, garbage) by path in ``SplitCheck.corrupt``. Slower: about a millisecond
            per image and thread.
        workers: threads that decode (default: the CPU count, at most 8).

    Raises:
        DatasetNotFoundError: the root or an annotation file is missing.
        AnnotationError: an annotation file is malformed (named with its line).
        DataConfigError: a bad argument.
    """
    if images not in IMAGE_CHECK_MODES:
        raise DataConfigError(f"images={images!r}; expected one of {list(IMAGE_CHECK_MODES)}")
    if not isinstance(decode, bool):
        raise DataConfigError(f"decode must be True or False, got {decode!r}.")
    if decode and images == "none":
        raise DataConfigError(
            "decode=True decodes the checked images, but images='none' checks none; "
            "use images='all' (or 'sample')."
        )
    _positive_int(sample_size, "sample_size")
    _positive_int(max_examples, "max_examples", minimum=0)
    workers = min(8, os.cpu_count() or 1) if workers is None else _positive_int(workers, "workers")
    cls = get_dataset_class(name)
    rng = random.Random(seed)
    splits: list[SplitCheck] = []
    resolved = os.fspath(root)
    for split in cls.SPLITS:
        ds = cls(root, split=split)
        resolved = ds.root
        expected_images, expected_classes = cls.EXPECTED_COUNTS[split]
        paths = ds.paths
        if images == "none":
            to_check: list[str] = []
        elif images == "sample" and len(paths) > sample_size:
            to_check = rng.sample(paths, sample_size)
        else:
            to_check = paths
        if decode:
            reasons = _decode_all(to_check, workers, f"{cls.NAME} {split}: decoding images")
            missing = [
                p for p, r in zip(to_check, reasons) if r is not None and not os.path.isfile(p)
            ]
            corrupt = [
                (p, r) for p, r in zip(to_check, reasons) if r is not None and os.path.isfile(p)
            ]
        else:
            missing = [
                p
                for p in tqdm(to_check, desc=f"{cls.NAME} {split}: image files", leave=False)
                if not os.path.isfile(p)
            ]
            corrupt = []
        splits.append(
            SplitCheck(
                split=split,
                expected_images=expected_images,
                found_images=len(ds),
                expected_classes=expected_classes,
                found_classes=int(ds.num_classes),
                checked_files=len(to_check),
                missing_files=len(missing),
                missing_examples=missing[:max_examples],
                decoded_files=len(to_check) - len(missing) if decode else 0,
                corrupt=corrupt,
            )
        )
    return CheckReport(
        dataset=cls.NAME, root=resolved, images=images, splits=splits, decoded=decode
    )
