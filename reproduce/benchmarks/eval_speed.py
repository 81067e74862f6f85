"""Recall@K speed and memory at SOP and In-Shop scale: four contenders side by side.

Contenders (each run in its own fresh child process so its peak memory can be measured):

- ``ours``: :class:`pml_proxy_anchor.evaluation.RecallAtKCalculator` (exact, float64 tie rule).
- ``pml``: PML's ``AccuracyCalculator(include=("precision_at_1",), k=K_max)``. What it computes:
  a faiss ``IndexFlatL2`` top-(k+1) search (self-retrieval), the self index removed, P@1 from
  the first neighbour, plus a (classes x N) label-match matrix.
- ``dense``: the authors' approach (Proxy-Anchor repo, ``evaluate_cos_SOP``): chunks of 10,000
  queries, the full float32 similarity rows ``F.linear(chunk, X)``, ``topk``; here the query is
  masked by index (the authors drop the first column, which mishandles exact duplicates).
- ``faiss``: the raw faiss exact search alone, ``IndexFlatIP`` top-(K_max + 1) (self) / top-K_max.

Data: synthetic unit vectors with class structure (12 super-classes, class centres, noise), SOP
sized (60,502 x 512, 11,316 classes of 2-12 images, mean 5.35) and In-Shop sized (14,218 queries,
12,612 gallery items, 3,985 classes). The script checks that ``ours`` equals ``dense`` per query
and K; where they differ it recomputes those queries in float64 (ties and float32 rounding are the
only possible cause) and reports who agrees with it.

Usage: ``python reproduce/benchmarks/eval_speed.py [--device cpu|cuda] [--quick] [--out PATH]``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, however this file is run
from _common import benchmark_parser, status_kb, write_json

SOP = {"n": 60502, "classes": 11316, "k_values": (1, 10, 100, 1000)}
INSHOP = {"n_query": 14218, "n_gallery": 12612, "classes": 3985, "k_values": (1, 10, 20, 30, 40)}
QUICK_SOP = {"n": 3000, "classes": 560, "k_values": (1, 10, 100, 1000)}
QUICK_INSHOP = {"n_query": 900, "n_gallery": 800, "classes": 250, "k_values": (1, 10, 20, 30, 40)}
DIM = 512


# ----------------------------------------------------------------------------- data
def _class_sizes(rng: np.random.Generator, n: int, classes: int, lo: int = 2, hi: int = 12):
    """Class sizes in [lo, hi] summing to n, skewed to small classes like SOP's."""
    support = np.arange(lo, hi + 1)
    p = np.exp(-(support - lo) / 3.2)
    sizes = rng.choice(support, size=classes, p=p / p.sum())
    while sizes.sum() != n:
        i = rng.integers(classes)
        if sizes.sum() < n and sizes[i] < hi:
            sizes[i] += 1
        elif sizes.sum() > n and sizes[i] > lo:
            sizes[i] -= 1
    return sizes


def _embed(rng: np.random.Generator, labels: np.ndarray, classes: int, noise: float):
    supers = rng.standard_normal((12, DIM)).astype(np.float32)
    centres = supers[rng.integers(12, size=classes)] * 0.6 + rng.standard_normal(
        (classes, DIM)
    ).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + noise * rng.standard_normal((len(labels), DIM)).astype(
        np.float32
    ) / np.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_sop(cfg: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = _class_sizes(rng, cfg["n"], cfg["classes"])
    labels = rng.permutation(np.repeat(np.arange(cfg["classes"]), sizes)).astype(np.int64)
    return {"query": _embed(rng, labels, cfg["classes"], 2.0), "query_labels": labels}


def make_inshop(cfg: dict[str, Any], seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = cfg["classes"]
    w = rng.dirichlet(np.ones(c) * 2.0)
    qn = 1 + rng.multinomial(cfg["n_query"] - c, w)
    gn = 1 + rng.multinomial(cfg["n_gallery"] - c, w)
    ql = rng.permutation(np.repeat(np.arange(c), qn)).astype(np.int64)
    gl = rng.permutation(np.repeat(np.arange(c), gn)).astype(np.int64)
    x = _embed(rng, np.concatenate([ql, gl]), c, 2.0)
    return {
        "query": x[: len(ql)],
        "query_labels": ql,
        "gallery": x[len(ql) :],
        "gallery_labels": gl,
    }


# ----------------------------------------------------------------------------- contenders
def run_ours(d: dict[str, np.ndarray], ks: tuple[int, ...], device: str) -> dict[str, Any]:
    import torch

    from pml_proxy_anchor.evaluation import RecallAtKCalculator

    class Capturing(RecallAtKCalculator):
        ranks: torch.Tensor | None = None

        def _recall_from_ranks(self, recall_ranks, recall_labels, k, **kwargs):
            Capturing.ranks = recall_ranks
            return super()._recall_from_ranks(recall_ranks, recall_labels, k, **kwargs)

    calc = Capturing(k_values=ks, device=torch.device(device), normalize=False)
    q = torch.from_numpy(d["query"]).to(device)
    ql = torch.from_numpy(d["query_labels"]).to(device)
    g = torch.from_numpy(d["gallery"]).to(device) if "gallery" in d else None
    gl = torch.from_numpy(d["gallery_labels"]).to(device) if "gallery" in d else None
    metrics = calc.get_accuracy(q, ql, g, gl, ref_includes_query=False)
    ranks = Capturing.ranks.cpu().numpy()
    return {"metrics": metrics, "hits": {k: ranks < k for k in ks}}


def run_dense(d: dict[str, np.ndarray], ks: tuple[int, ...], device: str) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    q = torch.from_numpy(d["query"]).to(device)
    self_retrieval = "gallery" not in d
    g = q if self_retrieval else torch.from_numpy(d["gallery"]).to(device)
    gl = torch.from_numpy(d["query_labels" if self_retrieval else "gallery_labels"]).to(device)
    ql = torch.from_numpy(d["query_labels"]).to(device)
    k_max = max(ks)
    hits = {k: [] for k in ks}
    for s in range(0, len(q), 10000):
        cos_sim = F.linear(q[s : s + 10000], g)
        if self_retrieval:
            rows = torch.arange(len(cos_sim), device=device)
            cos_sim[rows, rows + s] = -float("inf")
        nn = cos_sim.topk(k_max, dim=1)[1]
        match = gl[nn] == ql[s : s + 10000, None]
        del cos_sim
        for k in ks:
            hits[k].append(match[:, :k].any(dim=1).cpu())
    hits_np = {k: torch.cat(v).numpy() for k, v in hits.items()}
    return {
        "metrics": {f"recall_at_{k}": float(h.mean()) for k, h in hits_np.items()},
        "hits": hits_np,
    }


def run_pml(d: dict[str, np.ndarray], ks: tuple[int, ...], device: str) -> dict[str, Any]:
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(include=("precision_at_1",), k=max(ks), device=torch.device(device))
    q = torch.from_numpy(d["query"]).to(device)
    ql = torch.from_numpy(d["query_labels"]).to(device)
    if "gallery" in d:
        g = torch.from_numpy(d["gallery"]).to(device)
        gl = torch.from_numpy(d["gallery_labels"]).to(device)
        return {"metrics": calc.get_accuracy(q, ql, g, gl, False)}
    return {"metrics": calc.get_accuracy(q, ql)}


def run_faiss(d: dict[str, np.ndarray], ks: tuple[int, ...], device: str) -> dict[str, Any]:
    import faiss

    self_retrieval = "gallery" not in d
    g = d["query"] if self_retrieval else d["gallery"]
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    k = max(ks) + int(self_retrieval)
    index.search(d["query"], k)
    return {"metrics": {}, "k": k}


CONTENDERS = {"faiss": run_faiss, "ours": run_ours, "dense": run_dense, "pml": run_pml}


# ----------------------------------------------------------------------------- measurement
def _child(
    name: str, data_path: str, ks: tuple[int, ...], device: str, out_path: str, threads: int
) -> None:
    import faiss
    import torch

    if threads > 0:  # the same thread count for every contender (torch and faiss)
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)

    loaded = np.load(data_path)
    d = {k: np.ascontiguousarray(loaded[k]) for k in loaded.files}
    import pytorch_metric_learning.utils.accuracy_calculator  # noqa: F401

    import pml_proxy_anchor.evaluation  # noqa: F401

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        hwm_reset = True
    except OSError:
        hwm_reset = False
    base_kb = status_kb("VmRSS", missing=0)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = CONTENDERS[name](d, ks, device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak_kb = (
        status_kb("VmHWM", missing=0)
        if hwm_reset
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )
    out = {
        "seconds": seconds,
        "cpu_peak_delta_mb": (peak_kb - base_kb) / 1024,
        "cpu_peak_mb": peak_kb / 1024,
        "hwm_reset": hwm_reset,
        "metrics": res.get("metrics", {}),
    }
    if device == "cuda":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    hits = res.get("hits")
    np.savez(out_path + ".npz", **({f"k{k}": v for k, v in hits.items()} if hits else {}))
    Path(out_path + ".json").write_text(json.dumps(out))


def measure(
    name: str, data_path: str, ks: tuple[int, ...], device: str, tmp: str, threads: int
) -> dict:
    ctx = mp.get_context("spawn")
    os.makedirs(tmp, exist_ok=True)
    out_path = os.path.join(tmp, name)
    p = ctx.Process(target=_child, args=(name, data_path, ks, device, out_path, threads))
    p.start()
    p.join()
    if p.exitcode != 0:
        return {"error": f"exit code {p.exitcode}"}
    res = json.loads(Path(out_path + ".json").read_text())
    hits = np.load(out_path + ".npz")
    res["hits"] = {int(k[1:]): hits[k] for k in hits.files}
    return res


def float64_hits(d: dict[str, np.ndarray], idx: np.ndarray, ks: tuple[int, ...]) -> dict:
    """Top-K hits of queries ``idx`` from float64 similarities, stable sort (the tie rule)."""
    self_retrieval = "gallery" not in d
    g = d["query"] if self_retrieval else d["gallery"]
    gl = d["query_labels"] if self_retrieval else d["gallery_labels"]
    sims = d["query"][idx].astype(np.float64) @ g.astype(np.float64).T
    out = {k: np.zeros(len(idx), bool) for k in ks}
    for row, i in enumerate(idx):
        order = np.argsort(-sims[row], kind="stable")
        if self_retrieval:
            order = order[order != i]
        for k in ks:
            out[k][row] = bool((gl[order[:k]] == d["query_labels"][i]).any())
    return out


def compare(d, ks, ours: dict, dense: dict) -> dict[str, Any]:
    """Per-query equality of ours and dense; float64 arbitration of any difference."""
    diff = np.zeros(len(d["query"]), bool)
    for k in ks:
        diff |= ours["hits"][k] != dense["hits"][k]
    idx = np.flatnonzero(diff)
    report = {"identical": bool(len(idx) == 0), "differing_queries": int(len(idx))}
    if len(idx):
        ref = float64_hits(d, idx, ks)
        report["ours_agrees_with_float64"] = int(
            sum(all(ours["hits"][k][i] == ref[k][j] for k in ks) for j, i in enumerate(idx))
        )
        report["dense_agrees_with_float64"] = int(
            sum(all(dense["hits"][k][i] == ref[k][j] for k in ks) for j, i in enumerate(idx))
        )
    return report


def run_setting(
    label: str, d: dict[str, np.ndarray], ks, device: str, tmp: str, threads: int
) -> dict:
    slug = "".join(c if c.isalnum() else "_" for c in label)
    data_path = os.path.join(tmp, f"{slug}.npz")
    np.savez(data_path, **d)
    results = {}
    for name in CONTENDERS:
        print(f"[{label}] running {name} ...", flush=True)
        results[name] = measure(name, data_path, ks, device, os.path.join(tmp, slug), threads)
        print(f"[{label}] {name}: {results[name].get('seconds', float('nan')):.2f} s", flush=True)
    check = compare(d, ks, results["ours"], results["dense"])
    base = results["faiss"].get("seconds")
    rows = []
    for name, r in results.items():
        row = {k: v for k, v in r.items() if k != "hits"}
        if base and "seconds" in r:
            row["ratio_vs_faiss"] = r["seconds"] / base
        rows.append({"contender": name, **row})
    return {"setting": label, "k_values": list(ks), "rows": rows, "ours_vs_dense": check}


def format_table(settings: list[dict], device: str) -> str:
    mem = "GPU peak MB" if device == "cuda" else "peak RSS delta MB"
    lines = [f"| setting | contender | seconds | x faiss | {mem} | R@1 (P@1 for pml) |"]
    lines.append("|---|---|---:|---:|---:|---:|")
    for s in settings:
        for r in s["rows"]:
            m = r.get("metrics", {})
            r1 = m.get("recall_at_1", m.get("precision_at_1"))
            peak = r.get("gpu_peak_mb" if device == "cuda" else "cpu_peak_delta_mb", float("nan"))
            lines.append(
                f"| {s['setting']} | {r['contender']} | {r.get('seconds', float('nan')):.2f} | "
                f"{r.get('ratio_vs_faiss', float('nan')):.2f} | {peak:.0f} | "
                + (f"{100 * r1:.2f}" if r1 is not None else "-")
                + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = benchmark_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes (smoke test)")
    ap.add_argument("--out", default="reproduce/benchmarks/results/eval_speed.json")
    ap.add_argument("--only", choices=("sop", "inshop"), default=None)
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch + faiss threads in every contender (0: their defaults); on a shared, "
        "oversubscribed machine 1 gives stable, comparable timings",
    )
    args = ap.parse_args(argv)
    sop_cfg, inshop_cfg = (QUICK_SOP, QUICK_INSHOP) if args.quick else (SOP, INSHOP)
    settings = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sop"):
            settings.append(
                run_setting(
                    "SOP self-retrieval",
                    make_sop(sop_cfg),
                    sop_cfg["k_values"],
                    args.device,
                    tmp,
                    args.threads,
                )
            )
        if args.only in (None, "inshop"):
            settings.append(
                run_setting(
                    "In-Shop query/gallery",
                    make_inshop(inshop_cfg),
                    inshop_cfg["k_values"],
                    args.device,
                    tmp,
                    args.threads,
                )
            )
    table = format_table(settings, args.device)
    print(table)
    for s in settings:
        ours = next(r for r in s["rows"] if r["contender"] == "ours")["metrics"]
        print(f"{s['setting']}: ours vs dense {s['ours_vs_dense']}; ours Recall@K {ours}")
    meta = {
        "device": args.device,
        "quick": args.quick,
        "dim": DIM,
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_average": os.getloadavg(),
    }
    out = write_json(args.out, {"meta": meta, "settings": settings, "table": table})
    print(f"wrote {out}")
    ok = all(
        s["ours_vs_dense"]["identical"]
        or s["ours_vs_dense"].get("ours_agrees_with_float64")
        == s["ours_vs_dense"]["differing_queries"]
        for s in settings
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
