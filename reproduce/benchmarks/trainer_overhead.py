"""Training-loop overhead: one Omniglot epoch through our stack against a bare PyTorch loop.

Contenders, side by side in one process and alternated (the order swaps every repeat; the
median of the repeats is reported):

- ``stack``: :class:`pml_proxy_anchor.training.run.TrainingRun` as ``run(cfg)`` builds it --
  :class:`~pml_proxy_anchor.training.trainer.ProxyAnchorTrainer` (PML's ``MetricLossOnly``:
  loss tracker, optimizers and schedulers dicts, per-epoch reseeding, NaN guard) with PML's
  record-keeper/TensorBoard iteration hook and our loss meter. Its training epoch is timed up to
  the end-of-epoch hook; the end-of-epoch work (PML tester with Recall@K, best/last checkpoints,
  results.json) is timed separately.
- ``bare``: the same model, data set, loss and optimizers (built by the same builders from the
  same config) in a plain loop: a ``DataLoader`` with the trainer's settings (batch size,
  shuffle, drop_last, num_workers), ``embedder(trunk(x))``, loss, ``zero_grad``, ``backward``,
  ``step``, ``loss.item()``. Its evaluation (embed the test split, dense cosine Recall@K) is
  timed separately.

The overhead is ``stack / bare - 1`` of the training epoch (target: at most 10%).

Usage: ``python reproduce/benchmarks/trainer_overhead.py [--max-iters N] [--repeats R]
[--threads T] [--device cpu|cuda] [--quick] [--out PATH]``.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, however this file is run
from _common import benchmark_parser, sync, write_json

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "omniglot.yaml"
DEFAULT_OUT = REPO / "reproduce" / "benchmarks" / "results" / "trainer_overhead.json"
QUICK = [
    "model.channels=[8, 8, 8, 8]",
    "model.embedding_size=16",
    "data.class_rotations=1",
    "train.batch_size=32",
]


class StackContender:
    """Our training stack, built exactly as ``run(cfg)`` builds it."""

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        from pml_proxy_anchor.training.run import TrainingRun

        run_dir.mkdir(parents=True, exist_ok=True)
        self.training = TrainingRun(cfg, run_dir)  # components and trainer, built once
        self.trainer = self.training.trainer
        self.trainer.progress = False
        self.device = self.training.parts.device
        self.epoch_hook = self.trainer.end_of_epoch_hook
        self.trainer.end_of_epoch_hook = self._stop_clock
        self.trained_at = 0.0
        self.epoch = 0

    def _stop_clock(self, trainer: Any) -> bool:
        sync(self.device)
        self.trained_at = time.perf_counter()
        return True

    def train_epoch(self) -> float:
        self.epoch += 1
        self.training.cfg.train.epochs = self.epoch  # the last epoch is always evaluated
        sync(self.device)
        start = time.perf_counter()
        self.trainer.train(start_epoch=self.epoch, num_epochs=self.epoch)
        return self.trained_at - start

    def end_of_epoch(self) -> float:
        start = time.perf_counter()
        self.epoch_hook(self.trainer)
        return time.perf_counter() - start


class BareContender:
    """A plain PyTorch loop over the same model, data, loss and optimizers."""

    def __init__(self, cfg: Any, max_iters: int | None) -> None:
        from pml_proxy_anchor.training import builders
        from pml_proxy_anchor.training.device import resolve_device

        self.device = resolve_device(cfg.train.device)
        self.train_set, self.eval = builders.build_datasets(cfg)
        self.models = builders.build_models(cfg, self.device)
        size = builders.embedding_size(self.models["embedder"], cfg)
        self.loss = builders.build_loss(cfg, self.train_set.num_classes, size, self.device)
        self.optimizers, self.schedulers = builders.build_optimizers(cfg, self.models, self.loss)
        self.loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=int(cfg.train.batch_size),
            shuffle=True,
            drop_last=True,
            num_workers=builders.resolve_num_workers(cfg, self.device),
        )
        self.max_iters = max_iters or len(self.loader)
        self.eval_batch = int(cfg.eval.batch_size)
        self.k_values = tuple(int(k) for k in cfg.eval.k_values or (1, 2, 4, 8))

    def train_epoch(self) -> float:
        trunk, embedder = self.models["trunk"], self.models["embedder"]
        trunk.train()
        embedder.train()
        sync(self.device)
        start = time.perf_counter()
        total = 0.0
        for images, labels in itertools.islice(self.loader, self.max_iters):
            images, labels = images.to(self.device), labels.to(self.device)
            loss = self.loss(embedder(trunk(images)), labels)
            for optimizer in self.optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in self.optimizers.values():
                optimizer.step()
            total += loss.item()
        for scheduler in self.schedulers.values():
            scheduler.step()
        sync(self.device)
        return time.perf_counter() - start

    @torch.no_grad()
    def evaluate(self) -> float:
        from pml_proxy_anchor.evaluation import compute_recall_at_k

        start = time.perf_counter()
        trunk, embedder = self.models["trunk"], self.models["embedder"]
        trunk.eval()
        embedder.eval()
        test = self.eval.datasets[self.eval.query_split]
        loader = torch.utils.data.DataLoader(test, batch_size=self.eval_batch, shuffle=False)
        embeddings, labels = [], []
        for images, batch_labels in loader:
            embeddings.append(embedder(trunk(images.to(self.device))))
            labels.append(batch_labels)
        compute_recall_at_k(torch.cat(embeddings), torch.cat(labels), k_values=self.k_values)
        sync(self.device)
        return time.perf_counter() - start


def benchmark(
    overrides: Sequence[str], repeats: int, max_iters: int | None, device: str
) -> dict[str, Any]:
    from pml_proxy_anchor.training import load_config

    overrides = [*overrides, f"train.device={device}"]
    if max_iters:
        overrides.append(f"train.iterations_per_epoch={max_iters}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(CONFIG, [*overrides, f"run_dir={tmp}/run"])
        stack = StackContender(cfg, Path(tmp) / "run")
        bare = BareContender(load_config(CONFIG, overrides), max_iters)
        times: dict[str, list[float]] = {"stack": [], "bare": [], "stack_end": [], "bare_eval": []}
        for repeat in range(repeats):
            order = ("stack", "bare") if repeat % 2 == 0 else ("bare", "stack")
            for name in order:
                if name == "stack":
                    times["stack"].append(stack.train_epoch())
                    times["stack_end"].append(stack.end_of_epoch())
                else:
                    times["bare"].append(bare.train_epoch())
                    times["bare_eval"].append(bare.evaluate())
            print(
                f"repeat {repeat + 1}/{repeats}: stack {times['stack'][-1]:.2f} s, "
                f"bare {times['bare'][-1]:.2f} s",
                flush=True,
            )
        iterations = stack.trainer.iterations_per_epoch  # set by the first epoch
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "config": str(CONFIG),
        "overrides": overrides,
        "device": device,
        "threads": torch.get_num_threads(),
        "iterations_per_epoch": iterations,
        "batch_size": int(cfg.train.batch_size),
        "repeats": repeats,
        "times_s": times,
        "median_s": medians,
        "overhead": medians["stack"] / medians["bare"] - 1.0,
    }


def format_table(result: dict[str, Any]) -> str:
    med = result["median_s"]
    per_iter = 1000.0 / result["iterations_per_epoch"]
    return "\n".join(
        [
            f"one epoch = {result['iterations_per_epoch']} iterations of batch "
            f"{result['batch_size']}; {result['device']}, {result['threads']} thread(s); "
            f"median of {result['repeats']} alternated repeats",
            "",
            "| contender | training epoch s | ms / iteration | ratio to bare |"
            " end-of-epoch s (not in the ratio) |",
            "|---|---|---|---|---|",
            f"| bare PyTorch loop | {med['bare']:.2f} | {med['bare'] * per_iter:.1f} | 1.000 | "
            f"{med['bare_eval']:.2f} (embed test split + Recall@K) |",
            f"| our stack (ProxyAnchorTrainer) | {med['stack']:.2f} | "
            f"{med['stack'] * per_iter:.1f} | {med['stack'] / med['bare']:.3f} | "
            f"{med['stack_end']:.2f} (PML tester + Recall@K, checkpoints, results) |",
            "",
            f"training-loop overhead: {100 * result['overhead']:+.1f}% (target: at most +10%)",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, 3 iterations, 2 repeats")
    parser.add_argument("--max-iters", type=int, default=None, help="iterations per epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="a.b=value")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = list(args.overrides)
    repeats, max_iters = args.repeats, args.max_iters
    if args.quick:
        overrides = [*QUICK, *overrides]
        repeats, max_iters = min(repeats, 2), max_iters or 3
    result = benchmark(overrides, repeats, max_iters, args.device)
    table = format_table(result)
    result["table"] = table
    print(table)
    write_json(args.out, result, final_newline=False)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
