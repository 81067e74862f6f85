"""Speed and memory of the Proxy-Anchor loss, side by side in one process.

Contenders, each timed as one forward + backward on the same inputs (median of several repeats
after warm-up; the repeats are split over rounds of per-contender blocks, A A A B B B ... A A A
B B B ..., so that a slow spell of a shared machine hits every contender alike while each is
timed in its own steady state):

- ``ours``: ``pml_proxy_anchor.losses.ProxyAnchorLoss`` (fused, class-chunked kernel);
- ``pml``: pytorch-metric-learning's built-in ``ProxyAnchorLoss``;
- ``naive``: the paper's exp formulation written directly (as in the authors' code), dense B x C;
- ``gemm``: the "GEMM bound", the three matrix products any implementation must do
  (S = X P^T, G P, G^T X) and nothing else.

Peak extra memory: on CPU each contender runs once more in a fresh child process, whose
high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) is compared with its RSS
just before the call; on CUDA ``torch.cuda.max_memory_allocated`` over the allocation before the
call. A contender whose memory, extrapolated linearly in C from its previous shape, would exceed
``--mem-limit-gb`` is not run: its estimate is reported instead (the machine is shared).

    python reproduce/benchmarks/loss_speed.py [--device cpu|cuda] [--quick] [--shapes sop,large]
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pytorch_metric_learning import losses as pml_losses
from tqdm import tqdm

from pml_proxy_anchor.losses import ProxyAnchorLoss

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, however this file is run
from _common import (
    benchmark_parser,
    check_device,
    cpu_name,
    peak_rss_kb,
    reset_peak_rss,
    time_in_rounds,
    write_json,
)

SHAPES: dict[str, tuple[int, int, int]] = {
    "cub": (180, 100, 512),
    "sop": (180, 11318, 512),
    "large": (1024, 100_000, 512),
    "huge": (1024, 1_000_000, 512),
}
QUICK_SHAPES: dict[str, tuple[int, int, int]] = {
    "tiny": (32, 50, 16),
    "small": (64, 2000, 32),
}
CONTENDERS = ("ours", "pml", "naive", "gemm")
ONLY_OURS = {"huge"}  # the others are estimated there
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "loss_speed.json"


# ---------------------------------------------------------------- contenders
def naive_paper_loss(
    x: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, alpha: float, mrg: float
) -> torch.Tensor:
    """The paper's exp formulation, dense, as in the authors' reference code."""
    cos = torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(proxies).T
    num_classes = proxies.shape[0]
    p_one_hot = torch.nn.functional.one_hot(labels, num_classes).float()
    n_one_hot = 1 - p_one_hot
    pos_exp = torch.exp(-alpha * (cos - mrg))
    neg_exp = torch.exp(alpha * (cos + mrg))
    with_pos = torch.nonzero(p_one_hot.sum(dim=0) != 0).squeeze(1)
    p_sim_sum = torch.where(p_one_hot == 1, pos_exp, torch.zeros_like(pos_exp)).sum(dim=0)
    n_sim_sum = torch.where(n_one_hot == 1, neg_exp, torch.zeros_like(neg_exp)).sum(dim=0)
    pos_term = torch.log(1 + p_sim_sum).sum() / len(with_pos)
    neg_term = torch.log(1 + n_sim_sum).sum() / num_classes
    return pos_term + neg_term


def make_inputs(shape: tuple[int, int, int], device: str, seed: int = 0) -> dict[str, Any]:
    b, c, d = shape
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(b, d, generator=g).to(device).requires_grad_(True)
    labels = torch.randint(0, c, (b,), generator=g).to(device)
    return {"x": x, "labels": labels, "shape": shape}


def make_contender(name: str, inputs: dict[str, Any], device: str) -> Callable[[], None]:
    """A closure running one forward + backward (gradients are dropped afterwards)."""
    b, c, d = inputs["shape"]
    x, labels = inputs["x"], inputs["labels"]
    if name in ("ours", "pml"):
        cls = ProxyAnchorLoss if name == "ours" else pml_losses.ProxyAnchorLoss
        loss_fn = cls(c, d).to(device)

        def run() -> None:
            loss_fn(x, labels).backward()
            x.grad = None
            loss_fn.proxies.grad = None

        return run
    proxies = torch.nn.Parameter(torch.randn(c, d, device=device))
    if name == "naive":

        def run() -> None:
            naive_paper_loss(x, proxies, labels, 32.0, 0.1).backward()
            x.grad = None
            proxies.grad = None

        return run
    if name == "gemm":
        xd, pd = x.detach(), proxies.detach()

        def run() -> None:
            s = xd @ pd.T
            grad_x = s @ pd  # noqa: F841 - the products are the point
            grad_p = s.T @ xd  # noqa: F841

        return run
    raise ValueError(f"unknown contender {name!r}; expected one of {CONTENDERS}")


# ---------------------------------------------------------------- memory
def _trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _memory_child(name: str, shape: tuple[int, int, int], queue: Any) -> None:
    try:
        inputs = make_inputs(shape, "cpu")
        run = make_contender(name, inputs, "cpu")
        run()  # one-time costs (lazy initialisation, thread pools) are not the loss' memory
        _trim()
        before, method = reset_peak_rss()
        run()
        peak = peak_rss_kb(method)
        queue.put({"peak_extra_mb": (peak - before) / 1024, "method": method})
    except Exception as err:  # noqa: BLE001 - reported, not raised, from the child
        queue.put({"error": f"{type(err).__name__}: {err}"})


def peak_extra_memory(name: str, shape: tuple[int, int, int], device: str) -> dict[str, Any]:
    if device == "cuda":
        inputs = make_inputs(shape, device)
        run = make_contender(name, inputs, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        extra = (torch.cuda.max_memory_allocated() - before) / 2**20
        return {"peak_extra_mb": extra, "method": "cuda.max_memory_allocated"}
    # "spawn": a forked child of a process that already ran OpenMP regions can deadlock.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(name, shape, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0 and queue.empty():
        return {"error": f"child exited with code {proc.exitcode} (killed: out of memory?)"}
    return queue.get()


# ---------------------------------------------------------------- driver
def bytes_per_elem(entry: dict[str, Any]) -> float | None:
    mem = entry.get("peak_extra_mb")
    if mem is None:
        return None
    b, c, _ = entry["shape"]
    return mem * 2**20 / (b * c)


def _skip_estimate(
    shape_name: str,
    shape: tuple[int, int, int],
    name: str,
    last_bpe: dict[str, float],
    limit_mb: float,
) -> tuple[bool, float]:
    """Whether to skip a contender at this shape, and its memory estimate (MB)."""
    b, c, _ = shape
    estimate = last_bpe.get(name, 0.0) * b * c / 2**20
    if name == "gemm":  # S, G P and G^T X need at least B*C*4 bytes
        estimate = max(estimate, b * c * 4 / 2**20)
    skip = (shape_name in ONLY_OURS and name not in ("ours", "gemm")) or estimate > limit_mb
    return skip, estimate


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        table = {**SHAPES, **QUICK_SHAPES}
        unknown = [s for s in args.shapes.split(",") if s not in table]
        if unknown:
            raise SystemExit(f"unknown shapes {unknown}; expected some of {sorted(table)}")
        shapes = {s: table[s] for s in args.shapes.split(",")}
    check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    limit_mb = args.mem_limit_gb * 1024
    results: dict[str, Any] = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "timing": f"median of {args.repeats} in {args.rounds} rounds of blocks",
        "results": [],
    }
    last_bpe: dict[str, float] = {}
    progress = tqdm(total=len(shapes) * len(CONTENDERS), desc="loss_speed", unit="run")
    for shape_name, shape in shapes.items():
        b, c, _ = shape
        entries: dict[str, dict[str, Any]] = {}
        runs: dict[str, Callable[[], None]] = {}
        for name in CONTENDERS:
            entry: dict[str, Any] = {"shape_name": shape_name, "shape": shape, "contender": name}
            skip, estimate = _skip_estimate(shape_name, shape, name, last_bpe, limit_mb)
            if skip:
                entry["skipped"] = True
                entry["estimated_peak_extra_mb"] = estimate if estimate else None
            else:
                runs[name] = make_contender(name, make_inputs(shape, args.device), args.device)
            entries[name] = entry
        heavy = b * c >= 10**8
        warmup = 0 if heavy else args.warmup
        repeats = 2 if b * c >= 5 * 10**8 else (3 if heavy else args.repeats)
        rounds = 1 if heavy else max(1, min(args.rounds, repeats))
        times = time_in_rounds(runs, args.device, warmup, repeats, rounds)
        del runs
        _trim()
        for name, entry in entries.items():
            if name in times:
                entry.update({"median_s": statistics.median(times[name]), "times_s": times[name]})
                entry.update(peak_extra_memory(name, shape, args.device))
                bpe = bytes_per_elem(entry)
                if bpe is not None:
                    last_bpe[name] = bpe
            results["results"].append(entry)
            progress.update()
    progress.close()
    return results


def format_table(results: dict[str, Any]) -> str:
    rows = results["results"]
    by = {(r["shape_name"], r["contender"]): r for r in rows}
    head = (
        "| shape (B, C, D) | contender | median fwd+bwd | vs GEMM bound | PML / this "
        "| peak extra memory | memory vs PML |\n|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        key = r["shape_name"]
        gemm, pml = by.get((key, "gemm"), {}), by.get((key, "pml"), {})
        shape = f"{key} {tuple(r['shape'])}"
        if r.get("skipped"):
            est = r.get("estimated_peak_extra_mb")
            est_s = f"~{est / 1024:.1f} GB (estimated, not run)" if est else "not run"
            lines.append(f"| {shape} | {r['contender']} | not run | | | {est_s} | |")
            continue
        t = r["median_s"]
        vs_gemm = f"{t / gemm['median_s']:.2f}x" if "median_s" in gemm else ""
        speedup = f"{pml['median_s'] / t:.2f}x" if "median_s" in pml else ""
        mem = r.get("peak_extra_mb")
        mem_s = _fmt_mb(mem) if mem is not None else r.get("error", "")
        pml_mem = pml.get("peak_extra_mb") or pml.get("estimated_peak_extra_mb")
        mem_ratio = f"{mem / pml_mem:.2f}" if mem is not None and pml_mem else ""
        if pml_mem and "peak_extra_mb" not in pml:
            mem_ratio += " (vs estimate)"
        lines.append(
            f"| {shape} | {r['contender']} | {_fmt_s(t)} | {vs_gemm} | {speedup} | {mem_s} "
            f"| {mem_ratio} |"
        )
    return "\n".join(lines)


def _fmt_s(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def _fmt_mb(mb: float) -> str:
    return f"{mb:.0f} MB" if mb < 1024 else f"{mb / 1024:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke test")
    parser.add_argument("--shapes", default="", help=f"comma list of {sorted(SHAPES)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9, help="timed calls per contender")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds the repeats are split over (drift control)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--mem-limit-gb", type=float, default=12.0, help="do not run what would need more"
    )
    args = parser.parse_args(argv)
    results = run_benchmark(args)
    table = format_table(results)
    results["table_markdown"] = table
    print(
        f"\ndevice {results['device']} ({results['cpu']}), torch {results['torch']}, "
        f"{results['threads']} threads, float32\n"
    )
    print(table)
    write_json(args.out, results, final_newline=False)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
