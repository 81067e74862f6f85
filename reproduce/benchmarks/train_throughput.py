"""Training throughput: images/s and peak memory of one training step (backbone + embedding head +
the project's ProxyAnchorLoss + AdamW) on synthetic images, per backbone and precision.

The step is the bare loop ``zero_grad``, forward (under ``torch.autocast`` for bf16), loss,
``backward``, ``step``, on one fixed batch already on the device (data loading is not part of it:
``loader_speed.py`` measures that side). ``images/s = batch / median step time`` over ``--steps``
timed steps after ``--warmup`` untimed ones.

Backbones (random weights, 512-d embeddings, 100 classes as CUB's training half):

- ``bn_inception`` (batch 180, the paper's):
  :class:`~pml_proxy_anchor.models.bn_inception.BNInception`
  and the paper's :class:`~pml_proxy_anchor.models.head.EmbeddingHead` (GAP + GMP, Linear, L2);
- ``vit_small_patch16_224`` (batch 128): ``timm.create_model(NAME, pretrained=False,
  num_classes=0)`` and a Linear head (skipped, with the reason, when timm is not installed).

Contenders: ``fp32``; ``bf16`` (``torch.autocast(dtype=torch.bfloat16)``; the loss computes in
float32 itself, its proxies stay float32); ``channels_last`` (fp32, model and images in
``torch.channels_last``); ``bf16_channels_last`` (both).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (model, optimizer state, activations);
on the CPU the rise of the process's resident-set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``; ``ru_maxrss`` where that is unavailable) from before the model is
built. Each (backbone, contender) runs in a fresh child process by default (``--in-process``: all
in this one, faster, less clean memory figures), so one running out of memory does not stop the
others and each starts from an empty allocator.

    python reproduce/benchmarks/train_throughput.py [--device cpu|cuda] [--steps 10]
        [--backbones bn_inception,vit_small_patch16_224] [--contenders fp32,bf16,...]
        [--batch N] [--image-size 224]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, however this file is run
from _common import (
    benchmark_parser,
    check_device,
    cpu_name,
    peak_rss_kb,
    reset_peak_rss,
    sync,
    write_json,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "reproduce" / "benchmarks" / "results" / "train_throughput.json"
BACKBONES = {"bn_inception": 180, "vit_small_patch16_224": 128}  # name -> default batch
CONTENDERS: dict[str, tuple[torch.dtype | None, bool]] = {  # name -> (autocast dtype, NHWC)
    "fp32": (None, False),
    "bf16": (torch.bfloat16, False),
    "channels_last": (None, True),
    "bf16_channels_last": (torch.bfloat16, True),
}
NUM_CLASSES = 100
EMBEDDING_SIZE = 512


# ---------------------------------------------------------------- model
def timm_missing() -> str | None:
    """Why the timm backbones cannot run here (None when they can)."""
    try:
        import timm  # noqa: F401
    except ImportError as err:
        return f"timm is not installed ({err}); pip install timm"
    return None


def build_model(backbone: str, image_size: int) -> nn.Module:
    """Backbone + embedding head, random weights, in training mode."""
    if backbone == "bn_inception":
        from pml_proxy_anchor.models.bn_inception import BNInception
        from pml_proxy_anchor.models.head import EmbeddingHead

        trunk = BNInception()
        trunk.remove_classifier()
        return nn.Sequential(trunk, EmbeddingHead(1024, EMBEDDING_SIZE))
    import timm

    trunk = timm.create_model(backbone, pretrained=False, num_classes=0, img_size=image_size)
    return nn.Sequential(trunk, nn.Linear(trunk.num_features, EMBEDDING_SIZE))


# ---------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory from :meth:`start` to :meth:`stop`, in MiB (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = "cuda.max_memory_allocated" if device.type == "cuda" else "VmHWM"
        self.base_kb = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        self.base_kb, self.method = reset_peak_rss()

    def stop(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return (peak_rss_kb(self.method) - self.base_kb) / 1024


# ---------------------------------------------------------------- one configuration
def measure(config: dict[str, Any]) -> dict[str, Any]:
    """Train ``config['backbone']`` with ``config['contender']`` for warm-up + timed steps."""
    from pml_proxy_anchor.losses import ProxyAnchorLoss

    device = torch.device(config["device"])
    dtype, channels_last = CONTENDERS[config["contender"]]
    batch, size = config["batch"], config["image_size"]
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    torch.backends.cudnn.benchmark = bool(config["cudnn_benchmark"])
    torch.manual_seed(0)
    memory = PeakMemory(device)
    memory.start()
    model = build_model(config["backbone"], size).to(device).train()
    loss_fn = ProxyAnchorLoss(NUM_CLASSES, EMBEDDING_SIZE).to(device)
    params = [*model.parameters(), *loss_fn.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=gen).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    for _ in range(config["warmup"]):
        step()
    sync(device)
    times = []
    for _ in range(config["steps"]):
        start = time.perf_counter()
        loss = step()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = memory.stop()
    median = statistics.median(times)
    return {
        "backbone": config["backbone"],
        "contender": config["contender"],
        "batch": batch,
        "image_size": size,
        "images_per_s": batch / median,
        "median_step_s": median,
        "times_s": times,
        "peak_memory_mb": peak,
        "memory_method": memory.method,
        "final_loss": float(loss),
        "loss_finite": bool(torch.isfinite(loss)),
        "proxies_dtype": str(loss_fn.proxies.dtype),
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def measure_safely(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure`, a failure (out of memory, say) reported as ``{"error": ...}``."""
    try:
        return measure(config)
    except Exception as err:  # noqa: BLE001 - reported in the results, the others still run
        return {"error": f"{type(err).__name__}: {err}"}
    finally:
        if config["device"] == "cuda":
            torch.cuda.empty_cache()


def _child(config: dict[str, Any], queue: Any) -> None:
    queue.put(measure_safely(config))


def measure_isolated(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure` in a fresh spawned process (its memory and failures its own)."""
    ctx = mp.get_context("spawn")  # CUDA and OpenMP do not survive a fork
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(config, queue))
    proc.start()
    proc.join()
    if queue.empty():
        return {"error": f"child exited with code {proc.exitcode} (killed: out of memory?)"}
    return queue.get()


# ---------------------------------------------------------------- driver
def _names(text: str, table: dict[str, Any], flag: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in table]
    if unknown or not names:
        raise SystemExit(f"{flag}: unknown {unknown}; expected some of {list(table)}")
    return names


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    check_device(args.device)
    if args.image_size < 32 or args.image_size % 32:
        raise SystemExit(
            f"--image-size {args.image_size}: must be a multiple of 32 (BN-Inception's stride; "
            "ViT's patches are 16), e.g. 64 or 224"
        )
    if args.steps < 1 or args.warmup < 0 or (args.batch is not None and args.batch < 2):
        raise SystemExit("--steps must be >= 1, --warmup >= 0 and --batch >= 2")
    backbones = _names(args.backbones, BACKBONES, "--backbones")
    contenders = _names(args.contenders, CONTENDERS, "--contenders")
    no_timm = timm_missing()
    rows = []
    for backbone in backbones:
        for contender in contenders:
            batch = args.batch or BACKBONES[backbone]
            row: dict[str, Any] = {"backbone": backbone, "contender": contender, "batch": batch}
            if backbone != "bn_inception" and no_timm:
                rows.append({**row, "skipped": no_timm})
                continue
            config = {
                **row,
                "device": args.device,
                "image_size": args.image_size,
                "steps": args.steps,
                "warmup": args.warmup,
                "threads": args.threads,
                "cudnn_benchmark": args.cudnn_benchmark,
            }
            print(f"[train_throughput] {backbone} {contender} batch {batch} ...", flush=True)
            result = measure_safely(config) if args.in_process else measure_isolated(config)
            rows.append({**row, **result})
            if "error" in result:
                print(f"[train_throughput]   failed: {result['error']}", flush=True)
            else:
                print(f"[train_throughput]   {result['images_per_s']:.1f} images/s", flush=True)
    return {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "image_size": args.image_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "cudnn_benchmark": args.cudnn_benchmark,
        "isolated": not args.in_process,
        "num_classes": NUM_CLASSES,
        "embedding_size": EMBEDDING_SIZE,
        "timing": f"median of {args.steps} steps after {args.warmup} warm-up steps",
        "results": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    """One row per (backbone, contender): images/s, step time, peak memory, speed-up vs fp32."""
    fp32 = {
        r["backbone"]: r["images_per_s"]
        for r in result["results"]
        if r["contender"] == "fp32" and "images_per_s" in r
    }
    memory = "GPU peak memory" if result["device"] == "cuda" else "peak RSS rise"
    lines = [
        f"| backbone | batch | contender | images/s | step | {memory} | vs fp32 |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        head = f"| {r['backbone']} | {r['batch']} | {r['contender']} |"
        if "images_per_s" not in r:
            why = r.get("skipped") or r.get("error", "")
            lines.append(f"{head} not run: {why} | | | |")
            continue
        base = fp32.get(r["backbone"])
        ratio = f"{r['images_per_s'] / base:.2f}x" if base else ""
        lines.append(
            f"{head} {r['images_per_s']:.1f} | {r['median_step_s'] * 1e3:.0f} ms "
            f"| {r['peak_memory_mb']:.0f} MiB | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.split("\n")[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="comma list")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma list")
    parser.add_argument(
        "--batch", type=int, default=None, help="for every backbone (default: its own)"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True"
    )
    parser.add_argument("--in-process", action="store_true", help="no child process per config")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    args = parser.parse_args(argv)
    result = run_benchmark(args)
    result["table_markdown"] = format_table(result)
    where = result["gpu"] or result["cpu"]
    print(f"\n{args.device} ({where}), torch {result['torch']}, {args.image_size} px\n")
    print(result["table_markdown"])
    write_json(args.out, result)
    print(f"\nwrote {args.out}")
    failed = [r for r in result["results"] if "error" in r or r.get("loss_finite") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
