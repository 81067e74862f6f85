"""Sweep overhead: a multirun against separate ``train`` commands, and joblib's 2 jobs against 1.

Every contender is a ``pml-proxy-anchor`` command in a fresh subprocess (``python -m
pml_proxy_anchor``, process start-up included), each in a fresh temporary folder, on the bundled
Omniglot data with a small budget (``--epochs`` epochs of ``--iters`` iterations; the end-of-epoch
evaluation included). The contenders of a comparison alternate (the order swaps every repeat) and
the median of the repeats is reported:

- **(a) sweep vs separate runs**: ``separate`` is 3 runs of ``pml-proxy-anchor train omniglot
  OVERRIDES train.seed=S --run-dir DIR`` for seeds 1, 2, 3, one after the other (their times
  summed); ``sweep`` is one ``pml-proxy-anchor sweep EXPERIMENT.yaml`` of the same 3 jobs with the
  basic launcher (a temporary experiment: ``base_config: omniglot``, the overrides as its
  ``budget``, ``train.seed: 1,2,3``). Both use torch's default thread count. Ratio
  ``sweep / separate``.
- **(b) joblib**: ``two_jobs`` is the sweep of seeds 1, 2 with ``hydra/launcher=joblib
  hydra.launcher.n_jobs=2``; ``one_job`` is the sweep of seed 1 with the basic launcher; both
  with ``PML_PROXY_ANCHOR_THREADS=1`` (one torch thread per job). Ratio ``two_jobs / one_job``: 1
  when two cores run the two jobs side by side as fast as one.

A run or sweep that does not finish stops the benchmark (its output is shown).

Usage: ``python reproduce/benchmarks/sweep_overhead.py [--iters N] [--epochs E] [--repeats R]
[--quick] [--set key=value ...] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "reproduce" / "benchmarks" / "results" / "sweep_overhead.json"
CONFIG = "omniglot"
SEEDS = (1, 2, 3)
THREADS_ENV = "PML_PROXY_ANCHOR_THREADS"
THREADS_PER_JOB = 1
QUICK = [
    "model.channels=[8, 8, 8, 8]",
    "model.embedding_size=16",
    "data.class_rotations=1",
    "data.max_classes=20",
    "train.batch_size=32",
]


class BenchmarkError(RuntimeError):
    """A contender's command failed or did not finish its runs; the message shows its output."""


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Dotted ``key=value`` overrides -> a nested mapping (values read as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value (e.g. train.epochs=1)")
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return nested


def write_experiment(path: Path, overrides: Sequence[str]) -> Path:
    """A sweep experiment of the seeds of :data:`SEEDS` on ``omniglot`` with ``overrides``."""
    experiment = {
        "base_config": CONFIG,
        "budget": parse_overrides(overrides),
        "hydra": {"sweeper": {"params": {"train.seed": ",".join(map(str, SEEDS))}}},
    }
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def _run(command: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Run ``command``; its wall-clock seconds (:class:`BenchmarkError` on a non-zero exit)."""
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        raise BenchmarkError(f"`{' '.join(command)}` exited with {done.returncode}:\n{output}")
    return seconds


def _finished(run_dir: Path) -> None:
    try:
        status = json.loads((run_dir / "results.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        status = None
    if status != "finished":
        raise BenchmarkError(f"{run_dir}: status {status!r}, expected 'finished'")


def _sweep_finished(sweep_dir: Path, jobs: int) -> None:
    record = json.loads((sweep_dir / "sweep.json").read_text())
    finished = [j["name"] for j in record["jobs"] if j["status"] == "finished"]
    if len(finished) != jobs:
        raise BenchmarkError(f"{sweep_dir}: {len(finished)} of {jobs} jobs finished")


class Contenders:
    """The four commands, each run in a fresh folder under ``work``."""

    def __init__(self, work: Path, overrides: Sequence[str]) -> None:
        self.work = work
        self.overrides = list(overrides)
        self.experiment = write_experiment(work / "experiment.yaml", overrides)
        self.cli = [sys.executable, "-m", "pml_proxy_anchor"]
        self.count = 0

    def _folder(self, name: str) -> Path:
        self.count += 1
        folder = self.work / f"{self.count:03d}_{name}"
        folder.mkdir()
        return folder

    def separate(self) -> float:
        """3 ``train`` commands, one per seed; the sum of their times."""
        folder = self._folder("separate")
        total = 0.0
        for seed in SEEDS:
            run_dir = folder / f"seed{seed}"
            command = [*self.cli, "train", CONFIG, *self.overrides, f"train.seed={seed}"]
            total += _run([*command, "--run-dir", str(run_dir)], folder)
            _finished(run_dir)
        return total

    def _sweep(self, name: str, seeds: Sequence[int], extra: Sequence[str], env: dict) -> float:
        folder = self._folder(name)
        sweep_dir = folder / "sweep"
        seed_list = ",".join(map(str, seeds))
        command = [*self.cli, "sweep", str(self.experiment), f"train.seed={seed_list}", *extra]
        seconds = _run([*command, "--sweep-dir", str(sweep_dir)], folder, env)
        _sweep_finished(sweep_dir, len(seeds))
        return seconds

    def sweep(self) -> float:
        """One sweep of the 3 seeds, basic launcher, torch's default threads."""
        return self._sweep("sweep", SEEDS, ["hydra/launcher=basic"], {})

    def one_job(self) -> float:
        """A sweep of one job, basic launcher, one torch thread."""
        env = {THREADS_ENV: str(THREADS_PER_JOB)}
        return self._sweep("one_job", SEEDS[:1], ["hydra/launcher=basic"], env)

    def two_jobs(self) -> float:
        """A sweep of two jobs at once (joblib, 2 workers), one torch thread each."""
        env = {THREADS_ENV: str(THREADS_PER_JOB)}
        extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
        return self._sweep("two_jobs", SEEDS[:2], extra, env)


def benchmark(overrides: Sequence[str], repeats: int) -> dict[str, Any]:
    """Time the contenders ``repeats`` times, alternated; the result (see the module docstring)."""
    import torch

    names = ("separate", "sweep", "one_job", "two_jobs")
    times: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="sweep_overhead_") as tmp:
        contenders = Contenders(Path(tmp), overrides)
        for repeat in range(repeats):
            pairs = [("separate", "sweep"), ("one_job", "two_jobs")]
            for pair in pairs:
                for name in pair if repeat % 2 == 0 else pair[::-1]:
                    times[name].append(getattr(contenders, name)())
            print(
                f"repeat {repeat + 1}/{repeats}: "
                + ", ".join(f"{name} {times[name][-1]:.1f} s" for name in names),
                flush=True,
            )
    medians = {name: statistics.median(values) for name, values in times.items()}
    settings = parse_overrides(overrides)
    return {
        "config": CONFIG,
        "overrides": list(overrides),
        "epochs": settings["train"]["epochs"],
        "iterations_per_epoch": settings["train"]["iterations_per_epoch"],
        "jobs": len(SEEDS),
        "repeats": repeats,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "threads_per_job": THREADS_PER_JOB,
        "times_s": times,
        "median_s": medians,
        "ratios": {
            "sweep_vs_separate": medians["sweep"] / medians["separate"],
            "two_jobs_vs_one": medians["two_jobs"] / medians["one_job"],
        },
    }


def format_table(result: dict[str, Any]) -> str:
    med, ratios = result["median_s"], result["ratios"]
    return "\n".join(
        [
            f"each run: {result['epochs']} epoch(s) of {result['iterations_per_epoch']} "
            f"iterations; {result['cores']} cores; median of {result['repeats']} alternated "
            "repeats",
            "",
            "| comparison | contender | wall s | ratio |",
            "|---|---|---|---|",
            f"| (a) | {result['jobs']} separate `train` runs ({result['threads']} threads) | "
            f"{med['separate']:.1f} | 1.00 |",
            f"| (a) | 1 sweep of {result['jobs']} jobs, basic launcher | {med['sweep']:.1f} | "
            f"{ratios['sweep_vs_separate']:.2f} |",
            f"| (b) | 1 job, {result['threads_per_job']} thread | {med['one_job']:.1f} | 1.00 |",
            f"| (b) | 2 jobs, joblib n_jobs=2, {result['threads_per_job']} thread each | "
            f"{med['two_jobs']:.1f} | {ratios['two_jobs_vs_one']:.2f} |",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--iters", type=int, default=73, help="iterations per epoch (73: a full one)"
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="tiny model and data: 8 channels, 20 characters"
    )
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="a.b=value")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.iters < 1 or args.epochs < 1 or args.repeats < 1:
        parser.error("--iters, --epochs and --repeats must be at least 1")
    overrides = [*(QUICK if args.quick else []), *args.overrides]
    overrides += [f"train.epochs={args.epochs}", f"train.iterations_per_epoch={args.iters}"]
    try:
        result = benchmark(overrides, args.repeats)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    table = format_table(result)
    result["table"] = table
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["ratios"]))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
