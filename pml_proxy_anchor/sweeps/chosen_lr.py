"""The learning rate of each method, chosen from a learning-rate sweep (``compare_lr``).

``pml-proxy-anchor sweep --choose-lr SWEEP_DIR --out chosen_lr.json`` reads the sweep's
``sweep.json`` and every finished job's ``results.json`` and writes, for each ``method``, the
``optimizer.lr`` with the best final Recall@1 (the last evaluated epoch; the mean over seeds when
the sweep ran several; on a tie the smaller lr). Like the papers compared, the choice is made on
the evaluation split (the data sets have no validation split). The file is what the ``compare``
and ``embedding_size`` experiments take as ``chosen_lr=/path/to/chosen_lr.json``; a method with
no finished job is written as null (the next stage refuses to run it until it has an lr).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from pml_proxy_anchor.sweeps.errors import SweepConfigError
from pml_proxy_anchor.sweeps.experiment import METHOD_GROUP
from pml_proxy_anchor.sweeps.record import read_sweep
from pml_proxy_anchor.training.record import RunRecord, write_text_atomic

LR_KEY = "optimizer.lr"


def lr_table(sweep_dir: str | Path) -> dict[str, dict[float, list[float]]]:
    """``{method: {lr: [final R@1 of each finished seed]}}`` of a learning-rate sweep."""
    sweep_dir = Path(sweep_dir)
    data = read_sweep(sweep_dir)
    parameters = data.get("parameters") or []
    missing = [key for key in (METHOD_GROUP, LR_KEY) if key not in parameters]
    if missing:
        raise SweepConfigError(
            f"{sweep_dir} is not a learning-rate sweep of several methods: it does not sweep "
            f"{' and '.join(missing)} (its parameters: {', '.join(parameters) or 'none'}). Fix: "
            "pass the folder of a compare_lr sweep (e.g. sweeps/omniglot/compare_lr)."
        )
    table: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for job in data["jobs"]:
        params = job.get("params") or {}
        method, lr = params.get(METHOD_GROUP), params.get(LR_KEY)
        table[str(method)]  # every method appears, finished or not
        record = RunRecord.read(sweep_dir / str(job.get("name")), strict=False)
        if record is None or record.status != "finished" or record.final is None:
            continue
        table[str(method)][float(lr)].append(float(record.final["metrics"]["recall_at_1"]))
    return {method: dict(lrs) for method, lrs in table.items()}


def choose_lr(sweep_dir: str | Path) -> dict[str, float | None]:
    """The chosen lr of each method (None when none of its jobs finished)."""
    chosen: dict[str, float | None] = {}
    for method, lrs in lr_table(sweep_dir).items():
        if not lrs:
            chosen[method] = None
            continue
        chosen[method] = max(sorted(lrs), key=lambda lr: statistics.fmean(lrs[lr]))
    return chosen


def choose_lr_command(sweep_dir: str | Path, out: str | Path | None) -> int:
    """Print the table and the choice; write it to ``out`` (JSON) when given."""
    table = lr_table(sweep_dir)
    chosen = choose_lr(sweep_dir)
    for method in sorted(table):
        cells = "  ".join(
            f"{lr:g}: {statistics.fmean(r1):.4f}" + (" *" if lr == chosen[method] else "")
            for lr, r1 in sorted(table[method].items())
        )
        print(f"{method:24s} {cells or 'no finished job'}")
    text = json.dumps(chosen, indent=2) + "\n"
    if out is None:
        print(text, end="")
        return 0
    write_text_atomic(out, text)
    print(f"wrote {out}")
    unchosen = [method for method, lr in chosen.items() if lr is None]
    return 1 if unchosen else 0


__all__ = ["choose_lr", "choose_lr_command", "lr_table"]
