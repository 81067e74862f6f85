"""The README's Omniglot figures, generated from a committed results file.

Three steps, each a subcommand::

    # 1. train the default command once per seed and thread count (skips finished runs);
    #    each run directory gets figures_run.json: threads, wall seconds, CPU, versions
    python reproduce/readme_figures.py run --seeds 1 2 3 --threads 2 --out runs/figures
    python reproduce/readme_figures.py run --seeds 1 --threads 1 --out runs/figures
    # (a run made otherwise: record how it was made)
    python reproduce/readme_figures.py describe RUN_DIR --threads 2 --wall-seconds 569
    # 2. gather the runs into the committed summary
    python reproduce/readme_figures.py collect runs/figures/seed*_t* \\
        --out reproduce/results/omniglot/default/summary.json
    # 3. rewrite the README block between the markers (or --check: exit 1 if it differs)
    python reproduce/readme_figures.py render [--check]

A run is deterministic for one machine and thread count, not across them: the float summation
order changes with the CPU and the number of threads, so the summary keeps the machine of each run
and quotes mean +- std over seeds and the range across thread counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SUMMARY = REPO / "reproduce/results/omniglot/default/summary.json"
README = REPO / "README.md"
CONFIG = "configs/omniglot.yaml"
RUN_INFO = "figures_run.json"
KS = (1, 2, 4, 8)
BLOCK = "omniglot-default"
START = f"<!-- figures:{BLOCK}:start -->"
END = f"<!-- figures:{BLOCK}:end -->"
MAIN_THREADS = 2  # the thread count whose seeds give the mean +- std


class FiguresError(ValueError):
    """A run directory, summary or README that the script cannot use; the message says why."""


# ---------------------------------------------------------------- machine
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def versions() -> dict[str, str]:
    import pytorch_metric_learning
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_metric_learning": pytorch_metric_learning.__version__,
    }


def describe(run_dir: Path, threads: int, wall_seconds: float) -> dict[str, Any]:
    """Write ``figures_run.json`` in ``run_dir``: how the run was made, on this machine."""
    if threads < 1 or wall_seconds <= 0:
        raise FiguresError(
            f"threads must be >= 1 and wall seconds > 0; got {threads}, {wall_seconds}"
        )
    info = {
        "threads": int(threads),
        "wall_seconds": round(float(wall_seconds), 1),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        **versions(),
    }
    (run_dir / RUN_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return info


# ---------------------------------------------------------------- run
def run(seeds: Sequence[int], threads: Sequence[int], out: Path) -> list[Path]:
    """Train the default command for every (seed, threads); returns the run directories."""
    dirs = []
    for n in threads:
        for seed in seeds:
            run_dir = out / f"seed{seed}_t{n}"
            dirs.append(run_dir)
            if (run_dir / RUN_INFO).is_file() and _status(run_dir) == "finished":
                print(f"{run_dir}: finished, kept")
                continue
            env = {**os.environ, "OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
            command = [sys.executable, "-m", "pml_proxy_anchor", "train", str(REPO / CONFIG)]
            command += [f"train.seed={seed}", "--run-dir", str(run_dir), "--overwrite"]
            print(f"{run_dir}: {' '.join(command[1:])} (OMP_NUM_THREADS={n})", flush=True)
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True)
            describe(run_dir, n, time.perf_counter() - start)
    return dirs


def _status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "results.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- collect
def read_run(run_dir: Path) -> dict[str, Any]:
    """One finished run: seed, threads, machine, final Recall@K, R@1 per epoch, wall seconds."""
    files = {name: run_dir / name for name in ("results.json", "config.yaml", RUN_INFO)}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        hint = (
            f" Record how the run was made with `readme_figures.py describe {run_dir} --threads N "
            "--wall-seconds S`."
            if not files[RUN_INFO].is_file()
            else ""
        )
        raise FiguresError(f"{run_dir}: missing {', '.join(missing)}.{hint}")
    results = json.loads(files["results.json"].read_text())
    if results.get("dataset") != "omniglot":
        raise FiguresError(f"{run_dir}: data set {results.get('dataset')!r}, expected 'omniglot'")
    if results.get("status") != "finished":
        raise FiguresError(f"{run_dir}: status {results.get('status')!r}, expected 'finished'")
    config = yaml.safe_load(files["config.yaml"].read_text())
    info = json.loads(files[RUN_INFO].read_text())
    history = results["history"]
    if len(history) != config["train"]["epochs"]:
        raise FiguresError(
            f"{run_dir}: {len(history)} epochs recorded of {config['train']['epochs']}"
        )
    return {
        "seed": int(config["train"]["seed"]),
        "threads": int(info["threads"]),
        "cpu": info["cpu"],
        "cpu_count": info.get("cpu_count"),
        "torch": info["torch"],
        "pytorch_metric_learning": info.get("pytorch_metric_learning"),
        "epochs": len(history),
        "final": {f"recall_at_{k}": results["final"]["metrics"][f"recall_at_{k}"] for k in KS},
        "recall_at_1_per_epoch": [h["recall_at_1"] for h in history],
        "wall_seconds": info["wall_seconds"],
    }


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 6), "std": round(std, 6)}


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Runs -> the summary: mean +- sample std over the seeds at ``MAIN_THREADS`` threads, and
    the range of each figure over the runs of one seed at different thread counts."""
    runs = sorted(runs, key=lambda r: (r["threads"] != MAIN_THREADS, r["threads"], r["seed"]))
    keys = [(r["seed"], r["threads"]) for r in runs]
    if len(set(keys)) != len(keys):
        raise FiguresError(f"two runs with the same (seed, threads): {keys}")
    main = [r for r in runs if r["threads"] == MAIN_THREADS]
    if not main:
        raise FiguresError(f"no run at {MAIN_THREADS} threads")
    metrics = [f"recall_at_{k}" for k in KS]
    seeds = {
        "threads": MAIN_THREADS,
        "seeds": [r["seed"] for r in main],
        **{m: _mean_std([r["final"][m] for r in main]) for m in metrics},
        "epoch1_recall_at_1": _mean_std([r["recall_at_1_per_epoch"][0] for r in main]),
    }
    by_seed: dict[int, list[Mapping[str, Any]]] = {}
    for r in runs:
        by_seed.setdefault(r["seed"], []).append(r)
    threads: dict[str, Any] = {}
    for seed, group in sorted(by_seed.items()):
        if len({r["threads"] for r in group}) < 2:
            continue
        figures = {m: [r["final"][m] for r in group] for m in metrics}
        figures["epoch1_recall_at_1"] = [r["recall_at_1_per_epoch"][0] for r in group]
        threads = {
            "seed": seed,
            "threads": [r["threads"] for r in group],
            **{m: {"min": min(v), "max": max(v)} for m, v in figures.items()},
        }
        break
    return {
        "what": "final zero-shot Recall@K of the default Omniglot command",
        "command": f"pml-proxy-anchor train {CONFIG} train.seed=SEED  (OMP_NUM_THREADS=THREADS)",
        "generated_by": "reproduce/readme_figures.py collect",
        "runs": list(runs),
        "seeds_at_main_threads": seeds,
        "across_threads": threads or None,
    }


def collect(run_dirs: Sequence[Path], out: Path) -> dict[str, Any]:
    if not run_dirs:
        raise FiguresError("no run directories given")
    summary = summarize([read_run(Path(d)) for d in run_dirs])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------- render
def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _pm(stat: Mapping[str, float]) -> str:
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def render_block(summary: Mapping[str, Any]) -> str:
    """The README block (markers included) for ``summary``."""
    runs = summary["runs"]
    seeds = summary["seeds_at_main_threads"]
    machines = sorted({f"{r['cpu']} ({r['cpu_count']} cores)" for r in runs})
    torch_versions = sorted({r["torch"] for r in runs})
    lines = [
        START,
        "<!-- generated by `python reproduce/readme_figures.py render` from "
        "reproduce/results/omniglot/default/summary.json: regenerate, do not edit -->",
        "",
        f"`OMP_NUM_THREADS=T pml-proxy-anchor train {CONFIG} train.seed=S` (the default seed "
        f"is 1) on {', '.join(machines)}, torch {', '.join(torch_versions)}. Final zero-shot "
        f"Recall@K after {runs[0]['epochs']} epochs, mean ± sample std over seeds "
        f"{', '.join(map(str, seeds['seeds']))} at {seeds['threads']} threads:",
        "",
        "| R@1 | R@2 | R@4 | R@8 | R@1 after epoch 1 |",
        "|---|---|---|---|---|",
        "| "
        + " | ".join(_pm(seeds[f"recall_at_{k}"]) for k in KS)
        + f" | {_pm(seeds['epoch1_recall_at_1'])} |",
        "",
    ]
    across = summary.get("across_threads")
    if across:
        span = " and ".join(map(str, sorted(across["threads"])))
        lines += [
            f"The same seed ({across['seed']}) at {span} threads: final R@1 "
            f"{across['recall_at_1']['min']:.4f}-{across['recall_at_1']['max']:.4f}, R@8 "
            f"{across['recall_at_8']['min']:.4f}-{across['recall_at_8']['max']:.4f}, R@1 after "
            f"epoch 1 {across['epoch1_recall_at_1']['min']:.4f}-"
            f"{across['epoch1_recall_at_1']['max']:.4f}.",
            "",
        ]
    lines += [
        "| seed | threads | R@1 | R@2 | R@4 | R@8 | R@1 per epoch | wall clock |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        per_epoch = ", ".join(f"{v:.3f}" for v in r["recall_at_1_per_epoch"])
        finals = " | ".join(f"{r['final'][f'recall_at_{k}']:.4f}" for k in KS)
        lines.append(
            f"| {r['seed']} | {r['threads']} | {finals} | {per_epoch} | "
            f"{_minutes(r['wall_seconds'])} |"
        )
    lines.append(END)
    return "\n".join(lines)


def render_readme(readme_text: str, summary: Mapping[str, Any]) -> str:
    """``readme_text`` with the block between the markers replaced."""
    start, end = readme_text.find(START), readme_text.find(END)
    if start < 0 or end < 0 or end < start or readme_text.count(START) != 1:
        raise FiguresError(
            f"README: expected one {START} ... {END} pair; add the two markers where the figures go"
        )
    return readme_text[:start] + render_block(summary) + readme_text[end + len(END) :]


def load_summary(path: Path = SUMMARY) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FiguresError(f"{path} not found; make it with `readme_figures.py collect`") from None


# ---------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train the default command per seed and thread count")
    p_run.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p_run.add_argument("--threads", type=int, nargs="+", default=[MAIN_THREADS])
    p_run.add_argument("--out", type=Path, default=Path("runs/figures"))
    p_desc = sub.add_parser("describe", help="record threads and wall time of a run made by hand")
    p_desc.add_argument("run_dir", type=Path)
    p_desc.add_argument("--threads", type=int, required=True)
    p_desc.add_argument("--wall-seconds", type=float, required=True)
    p_col = sub.add_parser("collect", help="gather run directories into the summary file")
    p_col.add_argument("run_dirs", type=Path, nargs="+")
    p_col.add_argument("--out", type=Path, default=SUMMARY)
    p_ren = sub.add_parser("render", help="rewrite the README block from the summary file")
    p_ren.add_argument("--summary", type=Path, default=SUMMARY)
    p_ren.add_argument("--readme", type=Path, default=README)
    p_ren.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            run(args.seeds, args.threads, args.out)
        elif args.command == "describe":
            print(json.dumps(describe(args.run_dir, args.threads, args.wall_seconds)))
        elif args.command == "collect":
            summary = collect(args.run_dirs, args.out)
            print(f"wrote {args.out} ({len(summary['runs'])} runs)")
        else:
            text = args.readme.read_text()
            new = render_readme(text, load_summary(args.summary))
            if args.check:
                if new != text:
                    print(
                        f"{args.readme}: the figures block differs from {args.summary}; run "
                        "`python reproduce/readme_figures.py render`",
                        file=sys.stderr,
                    )
                    return 1
                print(f"{args.readme}: figures match {args.summary}")
            elif new != text:
                args.readme.write_text(new)
                print(f"rewrote the figures block of {args.readme}")
    except FiguresError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
