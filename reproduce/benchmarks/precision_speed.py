"""Training-step speed of the precision and speed switches, side by side in one process, as
ratios to fp32.

Contenders (each a setting of the run config, applied with the training stack's own code:
:class:`pml_proxy_anchor.training.precision.Precision` and :mod:`pml_proxy_anchor.training.speed`):

- ``fp32``: ``train.precision=fp32`` (the default; TF32 off);
- ``bf16``: ``train.precision=bf16`` (the forward pass under bfloat16 autocast, the loss in
  float32);
- ``channels_last``: fp32 with ``train.channels_last=true`` (models and batches channels-last);
- ``compile``: fp32 with ``train.compile=true`` (``torch.compile`` of the trunk, Inductor).

Models (random weights, the project's builders):

- ``omniglot_small_cnn``: the Omniglot default's model (``configs/omniglot.yaml``: small_cnn
  64-64-128-512, 512-d head), batch 128 of 1 x 28 x 28, 468 classes (its training classes);
- ``bn_inception``: the paper's BN-Inception and head, batch ``--batch`` (16) at
  ``--image-size`` (96) px, 100 classes (CUB's training half).

The step is the trainer's: ``zero_grad``, the forward pass of trunk and embedder under the
precision's autocast, the embeddings cast to float32, ``ProxyAnchorLoss``, ``backward``, AdamW
``step`` (trunk, embedder, proxies at 100x lr), on one fixed batch already on the device (data
loading is not part of it). Every contender has its own copy of the model, seeded alike. The first
step of each (compilation for ``compile``) is timed apart (``first_step_s``), then ``--warmup``
untimed steps; the timed steps are split over ``--rounds`` rounds in which the contenders take
turns (the order rotates each round), so that a busy machine slows them alike. Reported: the
median step time with ``ratio_to_fp32 = median(fp32) / median(contender)`` (> 1: faster), and the
fastest step with ``ratio_to_fp32_best`` (the same from the minima: on a machine shared with other
jobs a step is sometimes descheduled for many times its length, and the minimum is the estimate
least touched by that).

    python reproduce/benchmarks/precision_speed.py [--device cpu|cuda] [--models a,b]
        [--contenders fp32,bf16,channels_last,compile] [--steps 6] [--rounds 3] [--warmup 1]
        [--batch N] [--image-size 96] [--threads 2] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, however this file is run
from _common import benchmark_parser, cpu_model, sync, write_json

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "reproduce" / "benchmarks" / "results" / "precision_speed.json"
CONTENDERS: dict[str, dict[str, Any]] = {  # name -> the run config's train.* switches
    "fp32": {"precision": "fp32", "channels_last": False, "compile": False},
    "bf16": {"precision": "bf16", "channels_last": False, "compile": False},
    "channels_last": {"precision": "fp32", "channels_last": True, "compile": False},
    "compile": {"precision": "fp32", "channels_last": False, "compile": True},
}
MODELS = ("omniglot_small_cnn", "bn_inception")
QUICK = ["--steps", "1", "--rounds", "1", "--warmup", "0", "--batch", "2", "--image-size", "64"]


def model_setup(name: str, batch: int, image_size: int) -> dict[str, Any]:
    """The ``model:`` config, the input shape, the class count and the optimizer settings."""
    if name == "omniglot_small_cnn":
        from pml_proxy_anchor.training import builders, load_config

        cfg = load_config("omniglot")
        model_cfg = builders.model_config(cfg)
        channels = int(model_cfg.get("in_channels", 1))
        return {
            "model": model_cfg,
            "batch": 128 if batch <= 0 else batch,
            "shape": (channels, int(cfg.data.image_size), int(cfg.data.image_size)),
            "classes": 468,
            "lr": float(cfg.optimizer.lr),
        }
    if name == "bn_inception":
        model_cfg = {"backbone": "bn_inception", "embedding_size": 512, "pretrained": "none"}
        return {
            "model": model_cfg,
            "batch": 16 if batch <= 0 else batch,
            "shape": (3, image_size, image_size),
            "classes": 100,
            "lr": 1e-4,
        }
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


class Contender:
    """One (model, switches) pair: its own model, loss, optimizers and a fixed batch."""

    def __init__(self, name: str, setup: dict[str, Any], device: torch.device, seed: int) -> None:
        from pml_proxy_anchor.losses import ProxyAnchorLoss
        from pml_proxy_anchor.models import build_model
        from pml_proxy_anchor.training.precision import Precision
        from pml_proxy_anchor.training.speed import (
            CompiledForward,
            channels_last_batch,
            use_channels_last,
        )

        switches = CONTENDERS[name]
        self.name, self.device = name, device
        self.precision = Precision(switches["precision"], device)
        torch.manual_seed(seed)
        trunk, embedder = build_model(dict(setup["model"]))
        self.models = {"trunk": trunk.to(device).train(), "embedder": embedder.to(device).train()}
        size = int(getattr(embedder, "embedding_size", 512))
        self.loss = ProxyAnchorLoss(num_classes=setup["classes"], embedding_size=size).to(device)
        generator = torch.Generator().manual_seed(seed)
        images = torch.randn(setup["batch"], *setup["shape"], generator=generator)
        labels = torch.randint(0, setup["classes"], (setup["batch"],), generator=generator)
        self.images, self.labels = images.to(device), labels.to(device)
        if switches["channels_last"]:
            use_channels_last(self.models)
            self.images = channels_last_batch(self.images)
        self.trunk: Callable[[torch.Tensor], torch.Tensor] = self.models["trunk"]
        if switches["compile"]:
            self.trunk = CompiledForward(self.models["trunk"])
        lr = setup["lr"]
        self.optimizers = [
            torch.optim.AdamW(self.models["trunk"].parameters(), lr=lr),
            torch.optim.AdamW(self.models["embedder"].parameters(), lr=lr),
            torch.optim.AdamW(self.loss.parameters(), lr=lr * 100),
        ]
        self.last_loss = float("nan")

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            embeddings = self.models["embedder"](self.trunk(self.images))
        loss = self.loss(embeddings.float(), self.labels)
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        self.last_loss = float(loss.detach())

    def timed_step(self) -> float:
        sync(self.device)
        start = time.perf_counter()
        self.step()
        sync(self.device)
        return time.perf_counter() - start


def measure_model(model: str, names: Sequence[str], args: argparse.Namespace) -> dict[str, Any]:
    """All contenders of one model: built, a first step each, then taking turns over the rounds.

    A contender that fails (e.g. ``compile`` without a C++ compiler) is recorded with its error;
    the others go on.
    """
    device = torch.device(args.device)
    setup = model_setup(model, args.batch, args.image_size)
    contenders: dict[str, Contender] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        row: dict[str, Any] = {"model": model, "contender": name, **CONTENDERS[name]}
        rows[name] = row
        try:
            contender = Contender(name, setup, device, args.seed)
            row["first_step_s"] = contender.timed_step()  # compilation for "compile"
            for _ in range(args.warmup):
                contender.timed_step()
            contenders[name] = contender
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
            print(f"{model} {name}: {row['error']}", flush=True)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    order = list(contenders)
    per_round = max(1, -(-args.steps // args.rounds))
    for round_index in range(args.rounds):
        shift = round_index % max(1, len(order))
        for name in order[shift:] + order[:shift]:
            for _ in range(per_round):
                if len(times[name]) < args.steps:
                    times[name].append(contenders[name].timed_step())
        print(f"{model} round {round_index + 1}/{args.rounds} done", flush=True)
    base = statistics.median(times["fp32"]) if times.get("fp32") else None
    best = min(times["fp32"]) if times.get("fp32") else None
    for name, values in times.items():
        median = statistics.median(values)
        rows[name].update(
            {
                "batch": setup["batch"],
                "input_shape": list(setup["shape"]),
                "times_s": values,
                "median_step_s": median,
                "images_per_s": setup["batch"] / median,
                "ratio_to_fp32": (base / median) if base else None,
                "min_step_s": min(values),
                "ratio_to_fp32_best": (best / min(values)) if best else None,
                "loss_finite": bool(torch.isfinite(torch.tensor(contenders[name].last_loss))),
                "proxies_dtype": str(contenders[name].loss.proxies.dtype),
            }
        )
    return {"model": model, "results": [rows[name] for name in names]}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from pml_proxy_anchor.training.precision import tf32_enabled

    models = [m for m in args.models.split(",") if m]
    names = [c for c in args.contenders.split(",") if c]
    for name in names:
        if name not in CONTENDERS:
            raise SystemExit(f"unknown contender {name!r}; expected {', '.join(CONTENDERS)}")
    if "fp32" not in names:
        names = ["fp32", *names]  # the reference of the ratios
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else ""
    with tf32_enabled(False):  # every contender here computes float32 as float32
        per_model = [measure_model(model, names, args) for model in models]
    return {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_at_start": load,
        "steps": args.steps,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "image_size": args.image_size,
        "results": [row for block in per_model for row in block["results"]],
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['device']} ({result['device_name']}), {result['threads']} thread(s), torch "
        f"{result['torch']}; median of {result['steps']} steps over {result['rounds']} rounds",
        "",
        "| model | batch | contender | median step ms | images/s | ratio to fp32 (>1 faster) |"
        " fastest step ms | ratio of fastest | first step s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["results"]:
        if "error" in row:
            lines.append(f"| {row['model']} | | {row['contender']} | failed: {row['error']} ||||||")
            continue
        lines.append(
            f"| {row['model']} | {row['batch']} | {row['contender']} | "
            f"{1000 * row['median_step_s']:.1f} | {row['images_per_s']:.1f} | "
            f"{row['ratio_to_fp32']:.2f} | {1000 * row['min_step_s']:.1f} | "
            f"{row['ratio_to_fp32_best']:.2f} | {row['first_step_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma list")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma list")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per contender")
    parser.add_argument("--rounds", type=int, default=3, help="rounds the steps are split over")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first")
    parser.add_argument("--batch", type=int, default=0, help="batch (0: the model's default)")
    parser.add_argument("--image-size", type=int, default=96, help="BN-Inception input size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny: batch 2, 64 px, one step")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args([*QUICK, *argv] if "--quick" in argv else argv)
    result = run_benchmark(args)
    result["table_markdown"] = format_table(result)
    print(result["table_markdown"])
    write_json(args.out, result, final_newline=False)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
