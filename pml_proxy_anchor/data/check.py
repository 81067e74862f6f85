"""``data check NAME ROOT``: found vs expected counts of a published data set, per split.

Counts come from the annotation files (fast: no image is opened); image files are then checked
for existence, all of them or a random sample, and the missing ones counted. The expected counts
are those of SPEC.md section 3.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from .build import get_dataset_class

IMAGE_CHECK_MODES = ("all", "sample", "none")


@dataclass
class SplitCheck:
    """Counts of one split: expected (SPEC.md) and found (annotation files, image files)."""

    split: str
    expected_images: int
    found_images: int
    expected_classes: int
    found_classes: int
    checked_files: int
    missing_files: int
    missing_examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.found_images == self.expected_images
            and self.found_classes == self.expected_classes
            and self.missing_files == 0
        )


@dataclass
class CheckReport:
    """What :func:`check_dataset` found; ``str(report)`` is a table, ``report.ok`` the verdict."""

    dataset: str
    root: str
    images: str
    splits: list[SplitCheck]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.splits)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "root": self.root,
            "images": self.images,
            "ok": self.ok,
            "splits": [{**vars(s), "ok": s.ok} for s in self.splits],
        }

    def __str__(self) -> str:
        header = (
            "split",
            "images found",
            "expected",
            "classes found",
            "expected",
            "files missing",
            "",
        )
        rows = [
            (
                s.split,
                f"{s.found_images:,}",
                f"{s.expected_images:,}",
                f"{s.found_classes:,}",
                f"{s.expected_classes:,}",
                f"{s.missing_files:,} of {s.checked_files:,}"
                if self.images != "none"
                else "not checked",
                "ok" if s.ok else "MISMATCH",
            )
            for s in self.splits
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [f"{self.dataset} at {self.root}", fmt.format(*header).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines += [fmt.format(*r).rstrip() for r in rows]
        for s in self.splits:
            for path in s.missing_examples:
                lines.append(f"missing ({s.split}): {path}")
        lines.append("OK" if self.ok else "MISMATCH: see the rows above and reproduce/DATASETS.md")
        return "\n".join(lines)


def check_dataset(
    name: str,
    root: str | os.PathLike[str],
    images: str = "all",
    sample_size: int = 1000,
    seed: int = 0,
    max_examples: int = 5,
) -> CheckReport:
    """Compare the data set ``name`` under ``root`` with its expected counts.

    Args:
        name: ``cub200``, ``cars196``, ``sop`` or ``inshop``.
        root: the data set's folder or its parent.
        images: check that ``"all"`` image files exist, a random ``"sample"`` of
            ``sample_size`` per split, or ``"none"``.
        sample_size: files per split checked when ``images="sample"``.
        seed: seed of the sample.
        max_examples: missing paths listed per split.

    Raises:
        DatasetNotFoundError: the root or an annotation file is missing.
    """
    if images not in IMAGE_CHECK_MODES:
        raise ValueError(f"images={images!r}; expected one of {list(IMAGE_CHECK_MODES)}")
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
        missing = [
            p
            for p in tqdm(to_check, desc=f"{cls.NAME} {split}: image files", leave=False)
            if not os.path.isfile(p)
        ]
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
            )
        )
    return CheckReport(dataset=cls.NAME, root=resolved, images=images, splits=splits)
