"""Distributed Proxy-Anchor: per-rank peak memory and step time, replicated vs sharded proxies.

For C in {1e5, 1e6} classes, a fixed global batch (B = 1024 embeddings of D = 512, random labels)
and N in {1, 2, 4} processes (torch.distributed, gloo on CPU / nccl on CUDA), one step is the
forward and backward pass of the exact global-batch loss:

- ``replicated``: :class:`pml_proxy_anchor.distributed.GlobalBatchLoss` around a full
  ``ProxyAnchorLoss`` (every rank holds the C x D proxies and their gradient);
- ``sharded``: :class:`pml_proxy_anchor.distributed.ShardedProxyAnchorLoss` (rank r holds its
  ~C/N rows and computes only their terms over the gathered batch).

Every configuration runs in fresh processes, so the per-rank peak memory is that process's
high-water mark (CPU: ``VmHWM`` of /proc/self/status, which includes the ~0.3-0.5 GB of the Python +
torch runtime, reported separately as ``base``; CUDA: ``torch.cuda.max_memory_allocated``).
Step time = the slowest rank's mean over the timed steps (after one warm-up step). On CPU every
process uses ``--threads`` threads (default 1), so N processes use N cores when the machine has
them; with fewer free cores than processes they time-share and the time column mostly shows the
work per rank plus the communication, not the speed-up a cluster would give.
Configurations whose estimated total memory exceeds ``--mem-limit-gb`` (or 80 % of the available
memory) are skipped with the reason printed.

Usage: ``python reproduce/benchmarks/distributed_scaling.py [--quick] [--device cpu|cuda]
[--out PATH] [--steps K] [--mem-limit-gb G]``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, however this file is run
from _common import benchmark_parser, status_kb, write_json

FULL = {"classes": (100_000, 1_000_000), "batch": 1024, "dim": 512, "procs": (1, 2, 4)}
QUICK = {"classes": (2_000, 20_000), "batch": 64, "dim": 32, "procs": (1, 2)}
MODES = ("replicated", "sharded")
BASE_BYTES = 0.5 * 2**30  # python + torch runtime per process
COPIES = 4  # proxies, gradient, kernel workspace/extended copy, slack (an over-estimate)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, cfg: dict[str, Any], out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(cfg["threads"])
    from pml_proxy_anchor.distributed import (
        GlobalBatchLoss,
        ShardedProxyAnchorLoss,
        barrier,
        cleanup,
        init_distributed,
    )
    from pml_proxy_anchor.losses import ProxyAnchorLoss

    ctx = init_distributed(device=cfg["device"], timeout_s=1800)
    device = ctx.device
    base_kib = status_kb("VmRSS", missing=0)
    num_classes, dim, batch = cfg["classes"], cfg["dim"], cfg["batch"]
    gen = torch.Generator().manual_seed(rank)
    local = batch // world + (1 if rank < batch % world else 0)
    x = torch.nn.functional.normalize(torch.randn(local, dim, generator=gen), dim=1).to(device)
    labels = torch.randint(num_classes, (local,), generator=gen).to(device)
    if cfg["mode"] == "replicated":
        loss: torch.nn.Module = GlobalBatchLoss(ProxyAnchorLoss(num_classes, dim)).to(device)
    else:
        loss = ShardedProxyAnchorLoss(num_classes, dim).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(cfg["steps"] + 1):
        xs = x.clone().requires_grad_(True)
        barrier()
        started = time.perf_counter()
        value = loss(xs, labels)
        value.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        barrier()
        if step:  # step 0 is the warm-up
            times.append(time.perf_counter() - started)
        loss.zero_grad(set_to_none=False)
    result = {
        "rank": rank,
        "step_s": sum(times) / len(times),
        "loss": float(value.detach()),
        "proxy_rows": int(sum(p.shape[0] for p in loss.parameters())),
        "peak_mib": status_kb("VmHWM", missing=0) / 1024,
        "base_mib": base_kib / 1024,
    }
    if device.type == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["base_mib"] = 0.0
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    cleanup()


def _available_bytes() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return float("inf")


def estimate_bytes(classes: int, dim: int, procs: int, mode: str) -> float:
    """Total estimated host memory of one configuration (all ranks)."""
    rows = classes if mode == "replicated" else -(-classes // procs)
    return procs * (BASE_BYTES + COPIES * rows * dim * 4.0)


def run_config(cfg: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as out:
        port = _free_port()
        procs = [
            ctx.Process(target=_rank_main, args=(r, cfg["procs"], port, cfg, out))
            for r in range(cfg["procs"])
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        codes = [proc.exitcode for proc in procs]
        if any(codes):
            return {**cfg, "skipped": f"a rank failed (exit codes {codes})"}
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(cfg["procs"])]
    return {
        **cfg,
        "step_s": max(r["step_s"] for r in ranks),
        "peak_mib_per_rank": max(r["peak_mib"] for r in ranks),
        "base_mib_per_rank": max(r["base_mib"] for r in ranks),
        "total_peak_mib": sum(r["peak_mib"] for r in ranks),
        "proxy_rows_per_rank": [r["proxy_rows"] for r in ranks],
        "loss": ranks[0]["loss"],
        "ranks": ranks,
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """time/memory vs 1 process (same C and mode) and sharded/replicated (same C and N)."""
    done = {(r["classes"], r["mode"], r["procs"]): r for r in rows if "step_s" in r}
    for row in done.values():
        one = done.get((row["classes"], row["mode"], 1))
        if one:
            row["time_vs_1proc"] = row["step_s"] / one["step_s"]
            row["mem_vs_1proc"] = row["peak_mib_per_rank"] / one["peak_mib_per_rank"]
        rep = done.get((row["classes"], "replicated", row["procs"]))
        if rep and row["mode"] == "sharded":
            row["mem_sharded_vs_replicated"] = row["peak_mib_per_rank"] / rep["peak_mib_per_rank"]
            row["time_sharded_vs_replicated"] = row["step_s"] / rep["step_s"]


def format_table(rows: list[dict[str, Any]]) -> str:
    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    head = (
        "| C | proxies | N | step s | time vs N=1 | peak MiB/rank | (runtime base) | "
        "mem vs N=1 | sharded/replicated mem | total MiB |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        if "skipped" in r:
            lines.append(
                f"| {r['classes']:,} | {r['mode']} | {r['procs']} | skipped: {r['skipped']} "
                "| | | | | | |"
            )
            continue
        lines.append(
            f"| {r['classes']:,} | {r['mode']} | {r['procs']} | {r['step_s']:.3f} | "
            f"{fmt(r.get('time_vs_1proc'), '.2f')} | {r['peak_mib_per_rank']:,.0f} | "
            f"{r['base_mib_per_rank']:,.0f} | {fmt(r.get('mem_vs_1proc'), '.2f')} | "
            f"{fmt(r.get('mem_sharded_vs_replicated'), '.2f')} | {r['total_peak_mib']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = benchmark_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes (smoke test)")
    ap.add_argument("--out", default="reproduce/benchmarks/results/distributed_scaling.json")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per configuration")
    ap.add_argument("--mem-limit-gb", type=float, default=14.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--procs", type=int, nargs="*", default=None, help="override N values")
    args = ap.parse_args(argv)
    shapes = QUICK if args.quick else FULL
    procs = tuple(args.procs) if args.procs else shapes["procs"]
    cores = os.cpu_count() or 1
    configs = [
        {"classes": c, "mode": m, "procs": n, "batch": shapes["batch"], "dim": shapes["dim"],
         "steps": max(1, args.steps), "device": args.device, "threads": args.threads}
        for c in shapes["classes"] for m in MODES for n in procs
    ]  # fmt: skip
    rows = []
    limit = min(args.mem_limit_gb * 2**30, 0.8 * _available_bytes())
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    for cfg in tqdm(configs, desc="configurations"):
        need = estimate_bytes(cfg["classes"], cfg["dim"], cfg["procs"], cfg["mode"])
        label = f"C={cfg['classes']:,} {cfg['mode']} N={cfg['procs']}"
        if args.device == "cuda" and cfg["procs"] > gpus:
            reason = f"{cfg['procs']} processes need {cfg['procs']} GPUs, {gpus} present"
        elif args.device == "cpu" and need > limit:
            reason = f"estimated {need / 2**30:.1f} GB > limit {limit / 2**30:.1f} GB"
        else:
            reason = None
        if reason:
            tqdm.write(f"skip {label}: {reason}")
            rows.append({**cfg, "skipped": reason})
            continue
        row = run_config(cfg)
        tqdm.write(f"{label}: " + (row.get("skipped") or f"{row['step_s']:.3f} s/step, "
                   f"{row['peak_mib_per_rank']:,.0f} MiB/rank"))  # fmt: skip
        rows.append(row)
    add_ratios(rows)
    table = format_table(rows)
    print(table)
    meta = {
        "device": args.device, "cores": cores, "torch": torch.__version__,
        "python": platform.python_version(), "quick": args.quick, "batch": shapes["batch"],
        "dim": shapes["dim"], "steps": args.steps, "mem_limit_gb": args.mem_limit_gb,
        "threads_per_process": args.threads,
    }  # fmt: skip
    out = write_json(args.out, {"meta": meta, "rows": rows, "table": table})
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
