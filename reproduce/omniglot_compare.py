"""Loss comparison on the bundled Omniglot data: the Proxy-Anchor paper's Figure 1 on a CPU.

Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020, compare Proxy-Anchor with
Proxy-NCA and pair-based losses (Triplet, Contrastive, Multi-Similarity) at the same backbone and
budget, and plot Recall@1 against epochs and against training time (their Figure 1). This script
does the same with the default Omniglot config (``configs/omniglot.yaml``): every run takes that
config and changes only the loss, the miner, the sampler and the learning rate (plus the budget
overrides given with ``--set``). Pair losses get a class-balanced sampler (``MPerClassSampler``,
m=4) so each batch holds positives; proxy losses take random batches, as in the paper.

Hyperparameters are those of the Proxy-Anchor authors' PML-based re-implementations
(github.com/tjddus9597/Proxy-Anchor-CVPR2020, ``code/losses.py``), which follow the papers and
PML's documentation. Each loss other than ours may also get a small learning-rate sweep
(``--lrs``, one seed, the same budget); the other seeds then run at the lr with the best final
Recall@1 of the sweep. Ours keeps the lr of the default config, which its authors tuned on this
data.

Runs go to ``OUT/runs/<loss>_lr<lr>_s<seed>`` (finished runs are reused, so an interrupted
comparison continues where it stopped); ``--jobs N`` runs N at a time in subprocesses with one
thread each. Outputs: ``OUT/compare.md`` (the table), ``OUT/compare.json`` (per-run and aggregated
numbers), ``OUT/compare_r1_vs_epoch.png`` and ``OUT/compare_r1_vs_seconds.png``.

    python reproduce/omniglot_compare.py --seeds 1 2 3 --epochs 8 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tqdm

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "omniglot.yaml"
DEFAULT_OUT = REPO / "reproduce" / "results" / "omniglot_compare"
M_PER_CLASS = 4
K_VALUES = (1, 2, 4, 8)


@dataclass(frozen=True)
class LossSetup:
    """One contender: its registry specs and where its hyperparameters come from."""

    name: str
    loss: Any
    miner: Any = None
    class_balanced: bool = False  # MPerClassSampler(m=4) instead of random batches
    source: str = ""


LOSSES: dict[str, LossSetup] = {
    setup.name: setup
    for setup in (
        LossSetup(
            "proxy_anchor",
            {"ProxyAnchorLoss": {"margin": 0.1, "alpha": 32}},
            source="ours; margin 0.1, alpha 32 (paper); lr tuned on this data (default config)",
        ),
        LossSetup(
            "pml_proxy_anchor",
            {"pml.ProxyAnchorLoss": {"margin": 0.1, "alpha": 32}},
            source="PML's built-in ProxyAnchorLoss, same hyperparameters as ours",
        ),
        LossSetup(
            "proxy_nca",
            {"pml.ProxyNCALoss": {"softmax_scale": 32}},
            source="softmax_scale 32 (Proxy-Anchor authors' ProxyNCA; PML's default 1 is the "
            "NCA paper's unscaled form, too flat for unit-norm embeddings)",
        ),
        LossSetup(
            "multi_similarity",
            {"pml.MultiSimilarityLoss": {"alpha": 2, "beta": 50, "base": 0.5}},
            {"pml.MultiSimilarityMiner": {"epsilon": 0.1}},
            class_balanced=True,
            source="alpha 2, beta 50, base 0.5, miner epsilon 0.1 (Wang et al. 2019)",
        ),
        LossSetup(
            "triplet",
            {"pml.TripletMarginLoss": {"margin": 0.1}},
            {"pml.TripletMarginMiner": {"margin": 0.1, "type_of_triplets": "semihard"}},
            class_balanced=True,
            source="margin 0.1, semihard mining (Schroff et al. 2015; Proxy-Anchor authors' code)",
        ),
        LossSetup(
            "contrastive",
            {"pml.ContrastiveLoss": {"pos_margin": 0.0, "neg_margin": 0.5}},
            class_balanced=True,
            source="euclidean on unit vectors, pos_margin 0, neg_margin 0.5 (Proxy-Anchor "
            "authors' code; Hadsell et al. 2006)",
        ),
        LossSetup(
            "normalized_softmax",
            {"pml.NormalizedSoftmaxLoss": {"temperature": 0.05}},
            source="temperature 0.05 (Zhai & Wu 2019; PML default)",
        ),
        LossSetup(
            "soft_triple",
            {
                "pml.SoftTripleLoss": {
                    "centers_per_class": 10,
                    "la": 20,
                    "gamma": 0.1,
                    "margin": 0.01,
                }
            },
            source="K 10, lambda 20, gamma 0.1, delta 0.01 (Qian et al. 2019; PML defaults)",
        ),
    )
}
DEFAULT_LOSSES = (
    "proxy_anchor",
    "pml_proxy_anchor",
    "proxy_nca",
    "multi_similarity",
    "triplet",
    "contrastive",
)
OURS = "proxy_anchor"


@dataclass
class RunSpec:
    """One training run of the comparison."""

    loss: str
    seed: int
    lr: float
    run_dir: Path
    overrides: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return self.run_dir.name


# --------------------------------------------------------------------------- configs
def build_config(
    config: str | Path,
    setup: LossSetup,
    seed: int,
    lr: float,
    run_dir: Path,
    overrides: Sequence[str],
) -> Any:
    """The default config with ``overrides``, then this contender's loss/miner/sampler and lr."""
    from pml_proxy_anchor.training import load_config
    from pml_proxy_anchor.training.config import to_dict

    base = to_dict(load_config(config, list(overrides)))
    base["loss"] = setup.loss
    base["miner"] = setup.miner
    base["sampler"] = None
    if setup.class_balanced:
        base["sampler"] = {
            "pml.MPerClassSampler": {
                "m": M_PER_CLASS,
                "length_before_new_iter": train_size(base),
            }
        }
    base["optimizer"]["lr"] = float(lr)
    base["train"]["seed"] = int(seed)
    base["run_dir"] = str(run_dir)
    base["eval"]["k_values"] = list(K_VALUES)
    return load_config(base)


def train_size(cfg: Mapping[str, Any]) -> int:
    """Images per epoch of the train split (the class-balanced sampler draws as many)."""
    from pml_proxy_anchor.data import build_datasets

    return len(build_datasets(cfg["data"], str(cfg["model"]["backbone"]))["train"])


# --------------------------------------------------------------------------- running
def read_finished(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    return results if results.get("status") == "finished" else None


def run_in_process(spec: RunSpec, config: str | Path) -> dict[str, Any]:
    """Train ``spec`` in this process (the worker mode and ``--jobs 1``)."""
    from pml_proxy_anchor.training import run

    cfg = build_config(config, LOSSES[spec.loss], spec.seed, spec.lr, spec.run_dir, spec.overrides)
    return run(cfg, overwrite=True)


def run_subprocess(spec: RunSpec, config: str | Path) -> dict[str, Any]:
    """Train ``spec`` in a child process with one thread; its output goes to ``train.log``."""
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    payload = json.dumps({**asdict(spec), "run_dir": str(spec.run_dir), "config": str(config)})
    with open(spec.run_dir.parent / f"{spec.tag}.log", "w") as log:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", payload],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    results = read_finished(spec.run_dir)
    if proc.returncode != 0 or results is None:
        raise RuntimeError(
            f"run {spec.tag} failed (exit code {proc.returncode}); see "
            f"{spec.run_dir.parent / (spec.tag + '.log')}."
        )
    return results


def worker(payload: str) -> int:
    import torch

    torch.set_num_threads(1)
    data = json.loads(payload)
    spec = RunSpec(
        loss=data["loss"],
        seed=int(data["seed"]),
        lr=float(data["lr"]),
        run_dir=Path(data["run_dir"]),
        overrides=list(data["overrides"]),
    )
    run_in_process(spec, data["config"])
    return 0


def execute(
    specs: Sequence[RunSpec], config: str | Path, jobs: int, desc: str
) -> dict[str, dict[str, Any]]:
    """Run (or reuse) every spec; returns ``{tag: results}``."""
    done: dict[str, dict[str, Any]] = {}
    todo = []
    for spec in specs:
        previous = read_finished(spec.run_dir)
        if previous is not None and previous.get("epochs") == expected_epochs(spec, config):
            done[spec.tag] = previous
        else:
            todo.append(spec)
    bar = tqdm.tqdm(total=len(specs), initial=len(done), desc=desc, unit="run")
    if jobs <= 1:
        for spec in todo:
            done[spec.tag] = run_in_process(spec, config)
            bar.update()
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {spec.tag: pool.submit(run_subprocess, spec, config) for spec in todo}
            for tag, future in futures.items():
                done[tag] = future.result()
                bar.update()
    bar.close()
    return done


def expected_epochs(spec: RunSpec, config: str | Path) -> int:
    from pml_proxy_anchor.training import load_config

    return int(load_config(config, spec.overrides).train.epochs)


# --------------------------------------------------------------------------- analysis
def epochs_to_fraction(r1: Sequence[float], fraction: float = 0.95) -> int:
    """First epoch (1-based) whose Recall@1 reaches ``fraction`` of the run's best."""
    best = max(r1)
    return next(i + 1 for i, value in enumerate(r1) if value >= fraction * best)


def run_summary(results: Mapping[str, Any]) -> dict[str, Any]:
    history = [r for r in results["history"] if "recall_at_1" in r]
    final = results["final"]["metrics"]
    r1 = [float(r["recall_at_1"]) for r in history]
    return {
        "epochs": [int(r["epoch"]) for r in history],
        "seconds": [float(r["elapsed_seconds"]) for r in history],
        "r1": r1,
        "final": {f"recall_at_{k}": float(final[f"recall_at_{k}"]) for k in K_VALUES},
        "best_r1": max(r1),
        "epochs_to_95": epochs_to_fraction(r1),
        "wall_seconds": float(history[-1]["elapsed_seconds"]),
    }


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and spread over the seeds of one contender."""
    out: dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
    for k in K_VALUES:
        key = f"recall_at_{k}"
        mean, std = mean_spread([r["final"][key] for r in runs])
        out[key] = {"mean": mean, "std": std, "values": [r["final"][key] for r in runs]}
    for key in ("epochs_to_95", "wall_seconds", "best_r1"):
        mean, std = mean_spread([float(r[key]) for r in runs])
        out[key] = {"mean": mean, "std": std, "values": [r[key] for r in runs]}
    n_epochs = min(len(r["r1"]) for r in runs)
    out["curve"] = {
        "epochs": runs[0]["epochs"][:n_epochs],
        "r1": [statistics.fmean(r["r1"][i] for r in runs) for i in range(n_epochs)],
        "seconds": [statistics.fmean(r["seconds"][i] for r in runs) for i in range(n_epochs)],
    }
    return out


def format_table(summary: Mapping[str, Any], budget: str) -> str:
    """The markdown table: final R@K mean +- std over seeds, epochs to 95% of best, wall time."""
    lines = [
        f"Budget: {budget}",
        "",
        "| loss | lr | R@1 | R@2 | R@4 | R@8 | epochs to 95% of best R@1 | wall s / run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary.items():
        agg = entry["aggregate"]
        cells = [
            f"{agg[f'recall_at_{k}']['mean']:.4f} ± {agg[f'recall_at_{k}']['std']:.4f}"
            for k in K_VALUES
        ]
        e95 = agg["epochs_to_95"]
        wall = agg["wall_seconds"]
        lines.append(
            f"| {name} | {entry['lr']:g} | {' | '.join(cells)} | {e95['mean']:.1f} "
            f"({', '.join(str(v) for v in e95['values'])}) | {wall['mean']:.0f} |"
        )
    sweeps = {n: e["sweep"] for n, e in summary.items() if e.get("sweep")}
    if sweeps:
        lines += [
            "",
            "Learning-rate sweep (seed of the sweep, final R@1; the chosen lr in bold):",
            "",
        ]
        for name, sweep in sweeps.items():
            chosen = summary[name]["lr"]
            cells = [
                (f"**{lr:g}: {r1:.4f}**" if math.isclose(lr, chosen) else f"{lr:g}: {r1:.4f}")
                for lr, r1 in sorted((float(lr), r1) for lr, r1 in sweep.items())
            ]
            lines.append(f"- {name}: {', '.join(cells)}")
    return "\n".join(lines) + "\n"


def write_plots(summary: Mapping[str, Any], out: Path) -> tuple[Path, Path]:
    from pml_proxy_anchor.plots import plot_recall_vs

    by_epoch = {
        n: (e["aggregate"]["curve"]["epochs"], e["aggregate"]["curve"]["r1"])
        for n, e in summary.items()
    }
    by_time = {
        n: (e["aggregate"]["curve"]["seconds"], e["aggregate"]["curve"]["r1"])
        for n, e in summary.items()
    }
    seeds = len(next(iter(summary.values()))["aggregate"]["seeds"])
    title = f"Omniglot zero-shot, mean of {seeds} seed(s)"
    return (
        plot_recall_vs(by_epoch, "epoch", out / "compare_r1_vs_epoch.png", title=title),
        plot_recall_vs(
            by_time,
            "wall-clock seconds (training + per-epoch evaluation)",
            out / "compare_r1_vs_seconds.png",
            title=title,
        ),
    )


# --------------------------------------------------------------------------- driver
def run_dir_for(out: Path, loss: str, lr: float, seed: int) -> Path:
    return out / "runs" / f"{loss}_lr{lr:g}_s{seed}"


def compare(
    losses: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    config: str | Path = DEFAULT_CONFIG,
    overrides: Sequence[str] = (),
    lrs: Sequence[float] = (),
    extra_lrs: Mapping[str, Sequence[float]] | None = None,
    jobs: int = 1,
    budget: str | None = None,
) -> dict[str, Any]:
    """Run the comparison and write the table, the JSON and the two plots into ``out``."""
    unknown = [name for name in losses if name not in LOSSES]
    if unknown:
        raise ValueError(
            f"unknown loss(es) {unknown}; expected names from {sorted(LOSSES)}. "
            "Fix: pass --losses with those names."
        )
    if not seeds:
        raise ValueError("no seeds given; pass at least one with --seeds.")
    from pml_proxy_anchor.training import load_config

    base = load_config(config, list(overrides))
    default_lr = float(base.optimizer.lr)
    epochs = int(base.train.epochs)
    out.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides)

    def spec(loss: str, lr: float, seed: int) -> RunSpec:
        return RunSpec(loss, seed, lr, run_dir_for(out, loss, lr, seed), overrides)

    extra_lrs = dict(extra_lrs or {})
    sweep_lrs = {
        name: sorted({float(lr) for lr in (*lrs, *extra_lrs.get(name, ()))} | {default_lr})
        for name in losses
        if name != OURS and (lrs or extra_lrs.get(name))
    }
    swept = [name for name in losses if name in sweep_lrs]
    # Phase 1: the sweep (first seed) and every seed of ours and of unswept contenders.
    phase1 = [spec(n, lr, seeds[0]) for n in swept for lr in sweep_lrs[n]]
    phase1 += [spec(n, default_lr, s) for n in losses if n not in swept for s in seeds]
    results = execute(phase1, config, jobs, "sweep + fixed-lr runs")
    chosen: dict[str, float] = {name: default_lr for name in losses}
    sweep_r1: dict[str, dict[str, float]] = {}
    for name in swept:
        finals = {
            lr: float(results[spec(name, lr, seeds[0]).tag]["final"]["metrics"]["recall_at_1"])
            for lr in sweep_lrs[name]
        }
        chosen[name] = max(finals, key=lambda lr: finals[lr])
        sweep_r1[name] = {f"{lr:g}": r1 for lr, r1 in finals.items()}
    # Phase 2: the other seeds of swept contenders at their chosen lr.
    phase2 = [spec(n, chosen[n], s) for n in swept for s in seeds[1:]]
    results.update(execute(phase2, config, jobs, "other seeds"))

    summary: dict[str, Any] = {}
    for name in losses:
        runs = []
        for seed in seeds:
            one = run_summary(results[spec(name, chosen[name], seed).tag])
            runs.append({"seed": seed, **one})
        summary[name] = {
            "lr": chosen[name],
            "source": LOSSES[name].source,
            "spec": {"loss": LOSSES[name].loss, "miner": LOSSES[name].miner},
            "sampler": f"MPerClassSampler(m={M_PER_CLASS})"
            if LOSSES[name].class_balanced
            else "random batches",
            "sweep": sweep_r1.get(name),
            "runs": runs,
            "aggregate": aggregate(runs),
        }
    budget = budget or (
        f"{config} with {' '.join(overrides) or 'no overrides'}; {epochs} epochs, "
        f"seeds {', '.join(map(str, seeds))}; {jobs} run(s) at a time"
    )
    table = format_table(summary, budget)
    (out / "compare.md").write_text(table)
    (out / "compare.json").write_text(
        json.dumps(
            {"budget": budget, "config": str(config), "overrides": overrides, "losses": summary},
            indent=2,
        )
    )
    write_plots(summary, out)
    return {"table": table, "summary": summary}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", nargs="+", default=list(DEFAULT_LOSSES), choices=sorted(LOSSES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (default: config's)")
    parser.add_argument(
        "--lrs", nargs="*", type=float, default=[], help="lr sweep for non-ours losses"
    )
    parser.add_argument(
        "--extra-lrs",
        nargs="+",
        action="extend",
        default=[],
        metavar="LOSS=LR",
        help="more sweep lrs for one loss, e.g. contrastive=4e-3 (repeatable)",
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at a time (>1: subprocesses, 1 thread each)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        help="config overrides a.b=v (repeatable; later ones win)",
    )
    parser.add_argument("--budget", default=None, help="budget line for the table header")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def parse_extra_lrs(items: Sequence[str]) -> dict[str, list[float]]:
    """``["contrastive=4e-3", ...]`` -> ``{"contrastive": [0.004], ...}``."""
    out: dict[str, list[float]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in LOSSES:
            raise ValueError(
                f"--extra-lrs {item!r}: expected LOSS=LR with LOSS one of {sorted(LOSSES)}, "
                "e.g. contrastive=4e-3."
            )
        out.setdefault(name, []).append(float(value))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    started = time.perf_counter()
    result = compare(
        args.losses,
        args.seeds,
        args.out,
        config=args.config,
        overrides=overrides,
        lrs=args.lrs,
        extra_lrs=parse_extra_lrs(args.extra_lrs),
        jobs=args.jobs,
        budget=args.budget,
    )
    print(result["table"])
    print(f"written to {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
