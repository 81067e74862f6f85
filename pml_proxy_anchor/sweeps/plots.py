"""The figures of a sweep report (matplotlib, Agg backend, PNG files).

* one numeric parameter: Recall@1 against the parameter, mean over seeds with ± std error bars
  (a log2 axis when every value is a power of 2, a log10 axis for positive values spanning a
  factor of 10 or more, as a learning-rate grid) -- ``r1_vs_<param>.png``;
* two numeric parameters: a heatmap of the mean Recall@1, each cell annotated
  -- ``r1_heatmap.png``;
* a numeric parameter and a categorical one (a method, a loss by its class name): Recall@1
  against the numeric one, one line per category, ± std error bars (the paper's Fig. 5) --
  ``r1_vs_<param>.png``;
* otherwise a categorical parameter or more than two parameters: one bar per setting with ± std
  error bars -- ``r1_bars.png``;
* always: Recall@1 against epoch and against wall-clock seconds, one line per setting (mean over
  seeds, shaded ± std) -- ``r1_vs_epoch.png``, ``r1_vs_seconds.png``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pml_proxy_anchor.plots import _save  # noqa: E402
from pml_proxy_anchor.sweeps.summary import (  # noqa: E402
    Row,
    Summary,
    format_value,
    is_number,
)

LINE_PLOT = "r1_vs_{param}.png"
HEATMAP = "r1_heatmap.png"
BARS = "r1_bars.png"
VS_EPOCH = "r1_vs_epoch.png"
VS_SECONDS = "r1_vs_seconds.png"
LOG10_SPAN = 10.0


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "param"


def _title(summary: Summary) -> str:
    return f"{summary.experiment}: Recall@1, mean ± std over seeds"


def is_power_of_two(value: float) -> bool:
    return value > 0 and math.isclose(math.log2(value), round(math.log2(value)), abs_tol=1e-9)


def axis_scale(values: Sequence[float]) -> str:
    """``"log2"``, ``"log10"`` or ``"linear"`` for a numeric parameter's values."""
    values = [float(v) for v in values]
    if len(set(values)) < 2:
        return "linear"
    if all(is_power_of_two(v) for v in values):
        return "log2"
    if min(values) > 0 and max(values) / min(values) >= LOG10_SPAN:
        return "log10"
    return "linear"


def _set_scale(ax, values: Sequence[float]) -> None:
    scale = axis_scale(values)
    if scale == "linear":
        return
    ax.set_xscale("log", base=2 if scale == "log2" else 10)
    ax.set_xticks(sorted(set(values)))
    ax.set_xticklabels([format_value(v) for v in sorted(set(values))])
    ax.minorticks_off()


def plot_line(summary: Summary, out_dir: Path, group: str | None = None) -> Path:
    """Recall@1 against the numeric parameter, ± std error bars; one line per value of the
    categorical parameter ``group`` when there is one (with a legend)."""
    (param,) = [name for name in summary.param_names if name != group]
    groups = _axis_values(summary.rows, group) if group else [None]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    xs: list = []
    for value in groups:
        rows = [row for row in summary.rows if group is None or row.params[group] == value]
        rows.sort(key=lambda row: row.params[param])
        stats = [row.recall(1) for row in rows]
        xs += [row.params[param] for row in rows]
        ax.errorbar(
            [row.params[param] for row in rows],
            [s["mean"] for s in stats],
            yerr=[s["std"] for s in stats],
            marker="o",
            capsize=4,
            label=None if group is None else format_value(value),
        )
    _set_scale(ax, xs)
    ax.set_xlabel(param)
    ax.set_ylabel("Recall@1")
    ax.set_title(_title(summary), fontsize=10)
    ax.grid(alpha=0.3)
    if group is not None:
        ax.legend(title=group, fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir / LINE_PLOT.format(param=_file_part(param)))


def line_group(summary: Summary) -> str | None:
    """For two parameters of which exactly one takes numbers only: the other one (the lines of
    :func:`plot_line`); else None."""
    if len(summary.param_names) != 2:
        return None
    numeric = [
        name
        for name in summary.param_names
        if name not in summary.categorical and all(is_number(r.params[name]) for r in summary.rows)
    ]
    if len(numeric) != 1:
        return None
    (group,) = [name for name in summary.param_names if name not in numeric]
    return group


def _axis_values(rows: Sequence[Row], param: str) -> list:
    values: list = []
    for row in rows:
        if row.params[param] not in values:
            values.append(row.params[param])
    return sorted(values) if all(is_number(v) for v in values) else values


def heatmap_grid(summary: Summary) -> tuple[list, list, np.ndarray]:
    """The heatmap's row values (first parameter), column values (second) and mean Recall@1
    per cell (NaN where no job ran)."""
    first, second = summary.param_names
    ys, xs = _axis_values(summary.rows, first), _axis_values(summary.rows, second)
    grid = np.full((len(ys), len(xs)), np.nan)
    for row in summary.rows:
        grid[ys.index(row.params[first]), xs.index(row.params[second])] = row.recall(1)["mean"]
    return ys, xs, grid


def plot_heatmap(summary: Summary, out_dir: Path) -> Path:
    """Mean Recall@1 over the grid of two parameters (rows: the first), cells annotated."""
    first, second = summary.param_names
    ys, xs, grid = heatmap_grid(summary)
    fig, ax = plt.subplots(figsize=(1.1 * len(xs) + 2.5, 0.8 * len(ys) + 2), dpi=100)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="mean Recall@1")
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            color = "black" if value > middle else "white"
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(len(xs)), [format_value(v) for v in xs])
    ax.set_yticks(range(len(ys)), [format_value(v) for v in ys])
    ax.set_xlabel(second)
    ax.set_ylabel(first)
    ax.set_title(f"{summary.experiment}: mean Recall@1", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / HEATMAP)


def plot_bars(summary: Summary, out_dir: Path) -> Path:
    """One horizontal bar per setting (its label: the values of every parameter), ± std."""
    rows = summary.rows
    stats = [row.recall(1) for row in rows]
    labels = [_bar_label(row, summary.param_names) for row in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.6), dpi=100)
    positions = np.arange(len(rows))[::-1]  # the first row on top
    ax.barh(
        positions,
        [s["mean"] for s in stats],
        xerr=[s["std"] for s in stats],
        capsize=3,
        color="tab:blue",
    )
    for y, s in zip(positions, stats):
        ax.text(s["mean"] + s["std"] + 0.003, y, f"{s['mean']:.3f}", va="center", fontsize=8)
    ax.set_yticks(positions, labels, fontsize=8)
    low = min(s["mean"] - s["std"] for s in stats)
    high = max(s["mean"] + s["std"] for s in stats)
    ax.set_xlim(max(0.0, low - 0.05), min(1.0, high + 0.05) + 0.03)
    ax.set_xlabel("Recall@1")
    ax.set_title(_title(summary), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out_dir / BARS)


def _bar_label(row: Row, params: Sequence[str]) -> str:
    """The categorical values alone (nulls left out), the numeric ones as ``name=value``."""
    parts = []
    for param in params:
        value = row.params[param]
        if is_number(value):
            parts.append(f"{param.rsplit('.', 1)[-1]}={format_value(value)}")
        elif value is not None:
            parts.append(format_value(value))
    return " ".join(parts) if parts else "all runs"


def _mean_curve(row: Row, x: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (epoch or mean elapsed seconds), mean and std of Recall@1 over the seeds, at the epochs
    every seed evaluated."""
    r1 = row.recall_at_1_per_epoch()
    common = r1["epoch"]
    if x == "epoch":
        xs = np.array(common, dtype=float)
    else:
        xs = np.array([[c.seconds[c.epochs.index(e)] for e in common] for c in row.curves]).mean(0)
    return xs, np.array(r1["mean"]), np.array(r1["std"])


def plot_curves(summary: Summary, out_dir: Path, x: str) -> Path:
    """Recall@1 against ``x`` (``"epoch"`` or ``"seconds"``), one line per setting."""
    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=100)
    for row in summary.rows:
        xs, mean, std = _mean_curve(row, x)
        label = f"{row.label} (n={len(row.seeds)})"
        (line,) = ax.plot(xs, mean, marker="o", markersize=2.5, label=label)
        ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch" if x == "epoch" else "wall-clock seconds (mean over seeds)")
    ax.set_ylabel("Recall@1")
    ax.set_title(f"{summary.experiment}: Recall@1 (mean over seeds, ± std shaded)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return _save(fig, out_dir / (VS_EPOCH if x == "epoch" else VS_SECONDS))


def write_plots(summary: Summary, out_dir: str | Path) -> list[Path]:
    """Every figure that fits the sweep (see the module docstring); none without a finished job."""
    out_dir = Path(out_dir)
    if not summary.rows:
        return []
    written = []
    numeric = not summary.categorical
    if summary.param_names:
        group = line_group(summary)
        if numeric and len(summary.param_names) == 1:
            written.append(plot_line(summary, out_dir))
        elif group is not None:
            written.append(plot_line(summary, out_dir, group))
        elif numeric and len(summary.param_names) == 2:
            written.append(plot_heatmap(summary, out_dir))
        else:
            written.append(plot_bars(summary, out_dir))
    written.append(plot_curves(summary, out_dir, "epoch"))
    written.append(plot_curves(summary, out_dir, "seconds"))
    return written
