"""``results.md`` of a run: our Recall@K beside the paper's, rendered from ``results.json``.

The fields of ``results.json`` and its one writer are in :mod:`.record`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pml_proxy_anchor.training.paper_numbers import is_confirmed, reference_numbers

_RECALL = re.compile(r"^recall_at_(\d+)$")


def recall_keys(metrics: Mapping[str, Any]) -> list[str]:
    """The ``recall_at_K`` keys of ``metrics`` sorted by K."""
    keys = [k for k in metrics if _RECALL.match(k)]
    return sorted(keys, key=lambda k: int(_RECALL.match(k).group(1)))  # type: ignore[union-attr]


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100.0 * float(value):.1f}"


def render_markdown(results: Mapping[str, Any]) -> str:
    """A human-readable summary: Recall@K table (ours vs. the paper), then the per-epoch history."""
    dataset, backbone = results.get("dataset"), results.get("backbone")
    lines = [
        f"# Results: {dataset}, {backbone}",
        "",
        f"Status: **{results.get('status')}**, {results.get('epochs_completed')} of "
        f"{results.get('epochs')} epochs. Run directory: `{results.get('run_dir')}`.",
        "",
    ]
    columns: list[tuple[str, Mapping[str, Any], bool]] = []
    if results.get("evaluation"):
        ev = results["evaluation"]
        columns.append(
            (
                f"ours, eval of {ev.get('checkpoint')} (epoch {ev.get('epoch')})",
                ev.get("metrics", {}),
                True,
            )
        )
    for name in ("best", "final"):
        entry = results.get(name)
        if entry:
            columns.append(
                (f"ours, {name} (epoch {entry.get('epoch')})", entry.get("metrics", {}), True)
            )
    reference = results.get("reference") or reference_numbers(str(dataset), str(backbone))
    labels = {"paper": "paper", "authors": "authors' released models"}
    for source, numbers in reference.items():
        columns.append((labels.get(source, source), numbers, False))
    keys: list[str] = []
    for _, metrics, _ in columns:
        keys += [k for k in recall_keys(metrics) if k not in keys]
    keys = sorted(keys, key=lambda k: int(_RECALL.match(k).group(1)))  # type: ignore[union-attr]
    if keys:
        lines += ["Recall@K (%):", ""]
        lines.append("| | " + " | ".join(f"R@{k.rsplit('_', 1)[1]}" for k in keys) + " |")
        lines.append("|---|" + "---|" * len(keys))
        for label, metrics, ours in columns:
            cells = []
            for key in keys:
                value = metrics.get(key)
                if ours:
                    cells.append(_pct(value))
                elif value is None:
                    cells.append("-")
                else:
                    k = int(key.rsplit("_", 1)[1])
                    star = "" if is_confirmed(str(dataset), str(backbone), "paper", k) else "*"
                    cells.append(f"{value:.1f}{star if label == 'paper' else ''}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if reference:
            lines += [
                "",
                "Paper: Kim et al., CVPR 2020 (embedding 512); * = not confirmed against a copy "
                "of the paper table.",
            ]
    history = results.get("history") or []
    if history:
        hkeys = recall_keys(history[-1])
        lines += ["", "## Per epoch", ""]
        lines.append(
            "| epoch | loss | lr | seconds | "
            + " | ".join(f"R@{k.rsplit('_', 1)[1]}" for k in hkeys)
            + " |"
        )
        lines.append("|---|---|---|---|" + "---|" * len(hkeys))
        for rec in history:
            cells = [_pct(rec.get(k)) for k in hkeys]
            lines.append(
                f"| {rec['epoch']} | {rec.get('loss', float('nan')):.4f} | "
                f"{rec.get('lr', float('nan')):.2e} | {rec.get('seconds', 0.0):.1f} | "
                + " | ".join(cells)
                + " |"
            )
    lines += _plots_markdown(results.get("plots") or {})
    if results.get("error"):
        lines += ["", f"Error: {results['error']}"]
    return "\n".join(lines) + "\n"


PLOT_TITLES = {
    "curves": "Loss and Recall@K per epoch",
    "retrieval_grid": "Retrieval: test queries (left) and their nearest neighbours "
    "(green: same class, red: another class)",
    "embedding_projection": "2-D projection of test embeddings, coloured by class",
}


def _plots_markdown(plots: Mapping[str, Any]) -> list[str]:
    """The ``## Plots`` section: each PNG as an image, the projection's classes, skipped plots."""
    if not plots:
        return []
    lines = ["", "## Plots (final epoch's model)", ""]
    for key, title in PLOT_TITLES.items():
        if plots.get(key):
            lines += [f"{title}:", "", f"![{key}]({plots[key]})", ""]
    if plots.get("projection_classes"):
        lines += [
            "Classes in the projection: " + ", ".join(plots["projection_classes"]) + ".",
            "",
        ]
    for key, reason in (plots.get("skipped") or {}).items():
        lines.append(f"- `{key}.png` not written: {reason}")
    return lines[:-1] if lines[-1] == "" else lines
