"""The README blocks of the paper's experiments on Omniglot, rendered from committed sweep reports.

Each experiment ``omniglot/NAME`` (configs/sweeps/omniglot/NAME.yaml) writes its report, through
``pml-proxy-anchor sweep-report`` or reproduce/sweep_snapshot.py, to
``reproduce/results/omniglot/NAME/`` (``summary.json``, ``summary.md``, PNG plots). A README block
(:data:`BLOCKS`) is rendered from those summaries and the paper's numbers (:data:`PAPER`, their one
copy in code; docs/paper.md section 7 quotes them, and a test checks that it does): a compact table
of Recall@1 over seeds next to the paper's, the budget, how many jobs finished, the plots. A
summary not written yet renders one line naming the command that makes it, so the README and
``readme_figures.py render --check`` agree before and after.

Recall@1 is in % (the paper's unit): mean ± sample standard deviation over seeds, the mean alone
with one seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pml_proxy_anchor.sweeps.summary import format_value

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "reproduce/results/omniglot"  # one folder per experiment
SUMMARY_JSON = "summary.json"
ALPHA, DELTA = "loss.ProxyAnchorLoss.alpha", "loss.ProxyAnchorLoss.margin"
BATCH, EMBEDDING, METHOD = "train.batch_size", "model.embedding_size", "method"
LR_SWEPT = "optimizer.lr"

# ---------------------------------------------------------------- the paper's numbers
#: Kim et al., CVPR 2020: the numbers the Omniglot experiments are compared with (R@1 in %).
PAPER: dict[str, Any] = {
    # Table 1, BN-Inception, 512-d: R@1 on CUB-200 / Cars-196 / SOP / In-Shop (None: not given)
    "table1": {
        "proxy_anchor": (68.4, 86.1, 79.1, 91.5),
        "multi_similarity": (65.7, 84.1, 78.2, 89.7),
        "soft_triple": (65.4, 84.5, 78.6, None),
    },
    "table1_datasets": ("CUB", "Cars", "SOP", "In-Shop"),
    # Fig. 1, Cars-196, batch 150: R@1 reached (approximate, read off the curves) and when
    "fig1": {
        "proxy_anchor": "~86 within ~10 min (27.1 s/epoch)",
        "multi_similarity": "~83 at ~35 min",
        "proxy_nca": "~79",
        "triplet_semihard": "~80 at ~95 min",
        "npairs": "~78",
    },
    # Tables 5-6, BN-Inception, 512-d: R@1 by batch size; the lr is not scaled with the batch
    "batch_size": {
        "CUB": {30: 65.9, 60: 67.0, 90: 68.4, 120: 68.5, 150: 68.6, 180: 69.0},
        "Cars": {30: 84.6, 60: 86.2, 90: 86.2, 120: 86.3, 150: 86.4, 180: 86.2},
        "SOP": {30: 76.0, 60: 78.0, 90: 78.5, 120: 78.9, 150: 79.1, 300: 79.3, 600: 79.3},
        "In-Shop": {30: 91.3, 60: 91.3, 90: 91.5, 120: 91.7, 150: 91.9, 300: 92.0, 600: 91.7},
    },
    # Fig. 5 (Cars-196) in words, and Table 1's 64-d Proxy-Anchor R@1 on CUB / Cars / SOP
    "embedding_size": (
        "R@1 stable from 128 dimensions up, Proxy-Anchor above MultiSimilarity at every size, "
        "MultiSimilarity degrading at 1024"
    ),
    "embedding_64": {"CUB": 61.7, "Cars": 78.8, "SOP": 76.5},
    # Fig. 6, Cars-196: R@1 by alpha (rows) and delta (columns), read off a 3-D bar chart
    "alpha_delta_deltas": (0.0, 0.1, 0.2, 0.3, 0.4),
    "alpha_delta": {
        4: (64.5, 65.6, 66.7, 68.2, 69.1),
        8: (76.4, 77.9, 77.7, 79.2, 79.1),
        16: (84.1, 83.7, 83.5, 83.6, 84.5),
        32: (86.3, 86.1, 85.7, 85.7, 85.1),
        64: (83.7, 86.7, 86.3, 85.5, 86.4),
    },
}

#: The ``method`` options of configs/sweeps/method/, as the tables name them.
METHODS = {
    "proxy_anchor": "Proxy-Anchor (ours)",
    "pml_proxy_anchor": "Proxy-Anchor (PML's)",
    "proxy_nca": "ProxyNCA",
    "normalized_softmax": "NormalizedSoftmax",
    "soft_triple": "SoftTriple",
    "multi_similarity": "MultiSimilarity + miner",
    "triplet_semihard": "Triplet, semi-hard",
    "contrastive": "Contrastive",
    "npairs": "N-pair",
    "proxy_anchor_mperclass": "Proxy-Anchor, class-balanced batches",
}
#: The command that makes each experiment's summary (``sweep-report`` or sweep_snapshot.py after).
COMMANDS = {
    "compare_lr": "pml-proxy-anchor sweep omniglot/compare_lr",
    "compare": "pml-proxy-anchor sweep omniglot/compare",
    "batch_size": "pml-proxy-anchor sweep omniglot/batch_size",
    "embedding_size": "pml-proxy-anchor sweep omniglot/embedding_size",
    "alpha_delta": "pml-proxy-anchor sweep omniglot/alpha_delta",
}


class PaperFiguresError(ValueError):
    """A summary.json the blocks cannot be rendered from; the message names the file and why."""


# ---------------------------------------------------------------- reading
def load_summaries(results_dir: Path = RESULTS) -> dict[str, dict[str, Any] | None]:
    """``{experiment: its summary.json, or None when not written yet}``."""
    out: dict[str, dict[str, Any] | None] = {}
    for name in COMMANDS:
        path = results_dir / name / SUMMARY_JSON
        try:
            summary = json.loads(path.read_text())
        except FileNotFoundError:
            out[name] = None
            continue
        except ValueError as err:
            raise PaperFiguresError(f"{path}: not valid JSON ({err})") from None
        missing = [
            k for k in ("experiment", "budget", "rows", "param_names", "jobs") if k not in summary
        ]
        if missing:
            raise PaperFiguresError(
                f"{path}: not a sweep summary (missing {', '.join(missing)}); write it with "
                f"`pml-proxy-anchor sweep-report SWEEP_DIR --out {path.parent}`"
            )
        out[name] = summary
    return out


# ---------------------------------------------------------------- formatting
def _pct(stat: Mapping[str, float], n: int) -> str:
    """Recall in %: ``89.1 ± 0.3`` over several seeds, ``89.1`` with one."""
    mean = f"{100 * stat['mean']:.1f}"
    return mean if n < 2 else f"{mean} ± {100 * stat['std']:.1f}"


def _paper(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _method(value: Any) -> str:
    return METHODS.get(str(value), format_value(value))


def _paper_method(value: str) -> str:
    """A method as the paper's tables name it (no "ours")."""
    return _method(value).replace(" (ours)", "")


def _seconds(row: Mapping[str, Any]) -> str:
    seconds = row["seconds"]
    return f"{sum(seconds) / len(seconds):.0f}"


def _setting(row: Mapping[str, Any]) -> str:
    parts = []
    for key, value in row["params"].items():
        parts.append(
            _method(value) if key == METHOD else f"{key.rsplit('.', 1)[-1]}={format_value(value)}"
        )
    return ", ".join(parts) or "all runs"


def budget_line(summary: Mapping[str, Any]) -> str:
    """The budget every run shares, in one line (``data.name`` and unset keys left out)."""
    items = [
        f"{key}={format_value(value)}"
        for key, value in summary["budget"].items()
        if key != "data.name" and value is not None
    ]
    return "Budget of every run: " + (", ".join(items) or "the base config's") + "."


def jobs_line(summary: Mapping[str, Any], experiment: str) -> str:
    """``25 of 25 jobs finished.``, or the partial count with what the others are."""
    jobs = summary["jobs"]
    line = f"{jobs['finished']} of {jobs['total']} jobs finished"
    if jobs["finished"] >= jobs["total"]:
        return line + "."
    statuses: dict[str, int] = {}
    for job in summary.get("failed", []):
        statuses[job["status"]] = statuses.get(job["status"], 0) + 1
    others = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    return (
        f"**{line}** ({others}); the tables show the finished ones, and "
        f"`{COMMANDS[experiment]}` runs the rest (finished jobs are skipped)."
    )


def not_run_line(experiment: str, note: str = "") -> str:
    """The one line of an experiment whose summary is not written yet."""
    return f"Not run yet: `{COMMANDS[experiment]}`{note}."


def _plot_lines(experiment: str, summary: Mapping[str, Any], embed: Sequence[str]) -> list[str]:
    """The plots of ``summary``: those named in ``embed`` shown, the others linked."""
    folder = f"reproduce/results/omniglot/{experiment}"
    plots = list(summary.get("plots", []))
    lines = [f"![{experiment}: {p}]({folder}/{p})" for p in plots if p in embed]
    links = [f"[{p}]({folder}/{p})" for p in plots if p not in embed]
    links.append(f"[summary.md]({folder}/summary.md)")
    return [*lines, "", "More: " + ", ".join(links) + "."]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _seeds(summary: Mapping[str, Any]) -> str:
    """``seed 1`` or ``seeds 1, 2, 3``: the seeds of the finished runs."""
    seeds = sorted({s for row in summary["rows"] for s in row["seeds"]})
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def generic_table(summary: Mapping[str, Any]) -> list[str]:
    """One row per parameter setting (the fallback for a summary of an unexpected shape)."""
    rows = [
        [
            _setting(row),
            str(len(row["seeds"])),
            _pct(row["recall_at_1"], len(row["seeds"])),
            ", ".join(map(str, row["epochs_to_95"])),
            _seconds(row),
        ]
        for row in summary["rows"]
    ]
    return _table(["setting", "n", "R@1 %", "epochs to 95 %", "s / run"], rows)


def _head(block: str, experiments: Sequence[str]) -> list[str]:
    sources = ", ".join(f"reproduce/results/omniglot/{e}/{SUMMARY_JSON}" for e in experiments)
    return [
        f"<!-- figures:{block}:start -->",
        f"<!-- generated by `python reproduce/readme_figures.py render` from {sources} and the "
        "paper's numbers (PAPER in reproduce/paper_figures.py): regenerate, do not edit -->",
        "",
    ]


# ---------------------------------------------------------------- the paper's tables
def paper_table1() -> list[str]:
    """Table 1's R@1 of the methods the comparison has."""
    datasets = " / ".join(PAPER["table1_datasets"])
    rows = [
        [_paper_method(m), " / ".join(_paper(v) for v in values)]
        for m, values in PAPER["table1"].items()
    ]
    return [
        "The paper (Table 1, BN-Inception, 512-d):",
        "",
        *_table(["method", f"R@1 % {datasets}"], rows),
    ]


def paper_fig1() -> list[str]:
    rows = [[_paper_method(m), text] for m, text in PAPER["fig1"].items()]
    return [
        "The paper (Fig. 1, Cars-196, batch 150, R@1 % against training time; read off the "
        "curves):",
        "",
        *_table(["method", "R@1 % reached"], rows),
    ]


def paper_batch_size() -> list[str]:
    by_data = PAPER["batch_size"]
    sizes = sorted({b for values in by_data.values() for b in values})
    rows = [[name, *(_paper(values.get(b)) for b in sizes)] for name, values in by_data.items()]
    return [
        "The paper (Tables 5-6, BN-Inception, 512-d, R@1 % by batch size; the learning rate not "
        "scaled with the batch size):",
        "",
        *_table(["data set", *map(str, sizes)], rows),
    ]


def paper_embedding_size() -> list[str]:
    e64 = PAPER["embedding_64"]
    return [
        f"The paper (Fig. 5, Cars-196): {PAPER['embedding_size']}. At 64 dimensions Proxy-Anchor "
        f"reaches R@1 {' / '.join(_paper(v) for v in e64.values())} % on {' / '.join(e64)}."
    ]


def paper_alpha_delta() -> list[str]:
    deltas = PAPER["alpha_delta_deltas"]
    rows = [[str(a), *(_paper(v) for v in values)] for a, values in PAPER["alpha_delta"].items()]
    return [
        "The paper (Fig. 6, Cars-196, R@1 %):",
        "",
        *_table(["alpha \\ delta", *(format_value(d) for d in deltas)], rows),
        "",
        ALPHA_DELTA_NOTE,
    ]


ALPHA_DELTA_NOTE = (
    "The paper's cells are read off a 3-D bar chart (Fig. 6, Cars-196): single cells are "
    "approximate; its default alpha 32, delta 0.1 gives 86.1 as in its Table 1."
)


def paper_tables() -> str:
    """The paper's numbers of :data:`PAPER` as docs/paper.md section 7 quotes them."""
    parts = [paper_table1(), paper_fig1(), paper_batch_size(), paper_embedding_size()]
    parts.append(paper_alpha_delta())
    return "\n\n".join("\n".join(part) for part in parts)


# ---------------------------------------------------------------- the blocks
def render_compare(summaries: Mapping[str, Any]) -> list[str]:
    """Stage 1 (each method's lr) and stage 2 (3 seeds at that lr) against the paper's Table 1."""
    lines = ["**Learning rate of each method** (`omniglot/compare_lr`, seed 1).", ""]
    lr_summary = summaries.get("compare_lr")
    if lr_summary is None:
        lines.append(not_run_line("compare_lr"))
    else:
        lines += [jobs_line(lr_summary, "compare_lr"), budget_line(lr_summary), ""]
        lines += _lr_table(lr_summary)
        lr_plot = f"r1_vs_{LR_SWEPT}.png"
        lines += ["", *_plot_lines("compare_lr", lr_summary, embed=(lr_plot,))]
    lines += ["", "**Comparison** (`omniglot/compare`, each method at its chosen lr).", ""]
    summary = summaries.get("compare")
    if summary is None:
        return [*lines, not_run_line("compare"), "", *paper_table1()]
    lines += [jobs_line(summary, "compare"), budget_line(summary), ""]
    if summary["param_names"] != [METHOD]:
        return [*lines, *generic_table(summary), "", *paper_table1()]
    datasets = " / ".join(PAPER["table1_datasets"])
    rows = []
    for row in by_recall(summary["rows"]):
        n = len(row["seeds"])
        paper = PAPER["table1"].get(str(row["params"][METHOD]))
        rows.append(
            [
                _method(row["params"][METHOD]),
                str(n),
                _pct(row["recall_at_1"], n),
                _pct(row["recall_at_8"], n) if "recall_at_8" in row else "-",
                " / ".join(_paper(v) for v in paper) if paper else "-",
            ]
        )
    header = ["method", "n", "R@1 %", "R@8 %", f"paper R@1 % {datasets} (Table 1)"]
    lines += [
        f"Omniglot, zero-shot, {_seeds(summary)}, best R@1 first; the paper: BN-Inception, "
        "512-d, its four data sets.",
        "",
        *_table(header, rows),
    ]
    return [*lines, "", *_plot_lines("compare", summary, embed=("r1_bars.png",))]


def by_recall(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Summary rows, the best mean Recall@1 first (a stable sort: ties keep their order)."""
    return sorted(rows, key=lambda row: -row["recall_at_1"]["mean"])


def _lr_table(summary: Mapping[str, Any]) -> list[str]:
    """Methods x learning rates; bold: the lr ``--choose-lr`` picks (best R@1, smaller on a tie)."""
    if sorted(summary["param_names"]) != sorted([METHOD, LR_SWEPT]):
        return generic_table(summary)
    lrs = sorted({row["params"][LR_SWEPT] for row in summary["rows"]})
    cells: dict[str, dict[float, Mapping[str, Any]]] = {}
    for row in summary["rows"]:
        cells.setdefault(str(row["params"][METHOD]), {})[row["params"][LR_SWEPT]] = row
    rows = []
    for method, by_lr in cells.items():
        best = max(sorted(by_lr), key=lambda lr: by_lr[lr]["recall_at_1"]["mean"])
        line = [_method(method)]
        for lr in lrs:
            if lr not in by_lr:
                line.append("-")
                continue
            text = _pct(by_lr[lr]["recall_at_1"], len(by_lr[lr]["seeds"]))
            line.append(f"**{text}**" if lr == best else text)
        rows.append(line)
    return [
        "R@1 % by learning rate; bold: the lr `pml-proxy-anchor sweep --choose-lr` picks (the "
        "best R@1, the smaller lr on a tie).",
        "",
        *_table(["method", *(f"lr {format_value(lr)}" for lr in lrs)], rows),
    ]


def render_convergence(summaries: Mapping[str, Any]) -> list[str]:
    """Time to accuracy of each method of ``omniglot/compare`` against the paper's Fig. 1."""
    summary = summaries.get("compare")
    paper = paper_fig1()
    if summary is None:
        return [not_run_line("compare", " (the curves come from its runs)"), "", *paper]
    epochs = summary["budget"].get("train.epochs")
    early = _early_epochs(epochs)
    rows = []
    for row in by_recall(summary["rows"]):
        n = len(row["seeds"])
        per_epoch = f"{sum(row['seconds']) / len(row['seconds']) / epochs:.1f}" if epochs else "-"
        rows.append(
            [
                _setting(row),
                _early_recalls(row, early),
                _pct(row["recall_at_1"], n),
                ", ".join(map(str, row["epochs_to_95"])),
                _seconds(row),
                per_epoch,
                PAPER["fig1"].get(str(row["params"].get(METHOD)), "-"),
            ]
        )
    header = [
        "method",
        f"R@1 % after epoch {', '.join(map(str, early))}",
        "final R@1 %",
        "epochs to 95 % of best (per seed)",
        "s / run",
        "s / epoch",
        "paper, Fig. 1: R@1 % reached",
    ]
    lines = [
        jobs_line(summary, "compare"),
        f"{_seeds(summary).capitalize()}, best R@1 first; seconds are the mean training time of a "
        "run on a machine shared with other jobs.",
        "",
        *_table(header, rows),
    ]
    embed = ("r1_vs_epoch.png", "r1_vs_seconds.png")
    return [*lines, "", *_plot_lines("compare", summary, embed=embed)]


def _early_epochs(epochs: int | None) -> tuple[int, ...]:
    """The epochs the convergence table shows before the end: the first, a quarter and half of
    the budget (1, 3, 6 of 12)."""
    if not epochs:
        return (1,)
    return tuple(sorted({1, max(1, epochs // 4), max(1, epochs // 2)}))


def _early_recalls(row: Mapping[str, Any], early: Sequence[int]) -> str:
    """Mean Recall@1 in % over the seeds after each of ``early`` (``-`` where not evaluated)."""
    curve = row.get("recall_at_1_per_epoch") or {"epoch": [], "mean": []}
    by_epoch = dict(zip(curve["epoch"], curve["mean"], strict=True))
    return " / ".join(f"{100 * by_epoch[e]:.1f}" if e in by_epoch else "-" for e in early)


def render_batch_size(summaries: Mapping[str, Any]) -> list[str]:
    """Proxy-Anchor's R@1 by batch size, and the paper's Tables 5-6 below."""
    paper = paper_batch_size()
    summary = summaries.get("batch_size")
    if summary is None:
        return [not_run_line("batch_size"), "", *paper]
    lines = [jobs_line(summary, "batch_size"), budget_line(summary), ""]
    if summary["param_names"] != [BATCH]:
        return [*lines, *generic_table(summary), "", *paper]
    rows = []
    for row in summary["rows"]:
        n = len(row["seeds"])
        rows.append(
            [
                format_value(row["params"][BATCH]),
                str(n),
                _pct(row["recall_at_1"], n),
                _pct(row["recall_at_8"], n) if "recall_at_8" in row else "-",
                ", ".join(map(str, row["epochs_to_95"])),
                _seconds(row),
            ]
        )
    header = ["batch", "n", "R@1 %", "R@8 %", "epochs to 95 % (per seed)", "s / run"]
    lines += [
        "Proxy-Anchor on Omniglot, the same learning rate at every batch size:",
        "",
        *_table(header, rows),
        "",
        *paper,
    ]
    return [*lines, "", *_plot_lines("batch_size", summary, embed=(f"r1_vs_{BATCH}.png",))]


def render_embedding_size(summaries: Mapping[str, Any]) -> list[str]:
    """R@1 by embedding size, one column per method, and the paper's Fig. 5 in words."""
    paper = paper_embedding_size()
    summary = summaries.get("embedding_size")
    if summary is None:
        return [not_run_line("embedding_size"), "", *paper]
    lines = [jobs_line(summary, "embedding_size"), budget_line(summary), ""]
    if EMBEDDING not in summary["param_names"] or len(summary["param_names"]) != 2:
        return [*lines, *generic_table(summary), "", *paper]
    other = next(p for p in summary["param_names"] if p != EMBEDDING)
    sizes = sorted({row["params"][EMBEDDING] for row in summary["rows"]})
    columns = list(dict.fromkeys(row["params"][other] for row in summary["rows"]))
    cells = {(row["params"][EMBEDDING], row["params"][other]): row for row in summary["rows"]}
    rows = []
    for size in sizes:
        line = [format_value(size)]
        for column in columns:
            row = cells.get((size, column))
            line.append(_pct(row["recall_at_1"], len(row["seeds"])) if row else "-")
        rows.append(line)
    name = _method if other == METHOD else format_value
    lines += [
        f"R@1 % on Omniglot by embedding size, {_seeds(summary)}, each method at its chosen lr:",
        "",
        *_table(["embedding size", *(name(c) for c in columns)], rows),
        "",
        *paper,
    ]
    embed = (f"r1_vs_{EMBEDDING}.png", "r1_heatmap.png", "r1_bars.png")
    return [*lines, "", *_plot_lines("embedding_size", summary, embed=embed)]


def render_alpha_delta(summaries: Mapping[str, Any]) -> list[str]:
    """The alpha x delta grid: ours / the paper's in each cell."""
    grid, deltas = PAPER["alpha_delta"], PAPER["alpha_delta_deltas"]
    summary = summaries.get("alpha_delta")
    if summary is None:
        return [not_run_line("alpha_delta"), "", *paper_alpha_delta()]
    lines = [jobs_line(summary, "alpha_delta"), budget_line(summary), ""]
    if sorted(summary["param_names"]) != sorted([ALPHA, DELTA]):
        return [*lines, *generic_table(summary), "", *paper_alpha_delta()]
    ours = {(row["params"][ALPHA], row["params"][DELTA]): row for row in summary["rows"]}
    alphas = sorted({a for a, _ in ours} | set(grid))
    columns = sorted({d for _, d in ours} | set(deltas))
    rows = []
    for alpha in alphas:
        line = [str(alpha)]
        for delta in columns:
            row = ours.get((alpha, delta))
            mine = _pct(row["recall_at_1"], len(row["seeds"])) if row else "-"
            theirs = dict(zip(deltas, grid.get(alpha, ())))
            line.append(f"{mine} / {_paper(theirs.get(delta))}")
        rows.append(line)
    ours_cells = [(row["recall_at_1"]["mean"] * 100, a, d) for (a, d), row in ours.items()]
    paper_cells = [(v, a, d) for a, values in grid.items() for d, v in zip(deltas, values)]
    lines += [
        f"Proxy-Anchor, R@1 % in each cell: ours (Omniglot, {_seeds(summary)}) / the paper "
        "(Cars-196).",
        "",
        *_table(["alpha \\ delta", *(format_value(d) for d in columns)], rows),
        "",
        f"Range over the cells: ours {_span(ours_cells)}; the paper {_span(paper_cells)}. "
        + ALPHA_DELTA_NOTE,
    ]
    return [*lines, "", *_plot_lines("alpha_delta", summary, embed=("r1_heatmap.png",))]


def _span(cells: Sequence[tuple[float, Any, Any]]) -> str:
    """``84.2 (alpha 64, delta 0) to 89.1 (alpha 16, delta 0.2)`` for (R@1 %, alpha, delta)."""
    low, top = min(cells), max(cells)
    return " to ".join(f"{v:.1f} (alpha {a}, delta {format_value(d)})" for v, a, d in (low, top))


#: README block -> (the experiments it reads, its renderer)
BLOCKS: dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, Any]], list[str]]]] = {
    "omniglot-compare": (("compare_lr", "compare"), render_compare),
    "omniglot-convergence": (("compare",), render_convergence),
    "omniglot-batch-size": (("batch_size",), render_batch_size),
    "omniglot-embedding-size": (("embedding_size",), render_embedding_size),
    "omniglot-alpha-delta": (("alpha_delta",), render_alpha_delta),
}


def render_block(block: str, summaries: Mapping[str, Any]) -> str:
    """The README block ``block`` (markers included) from ``summaries`` (:func:`load_summaries`)."""
    experiments, renderer = BLOCKS[block]
    body = renderer(summaries)
    return "\n".join([*_head(block, experiments), *body, f"<!-- figures:{block}:end -->"])


def render_blocks(results_dir: Path = RESULTS) -> dict[str, str]:
    """Every block of :data:`BLOCKS`, rendered from the summaries under ``results_dir``."""
    summaries = load_summaries(results_dir)
    return {block: render_block(block, summaries) for block in BLOCKS}
