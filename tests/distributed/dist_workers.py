"""Multi-process harness and rank programs for the distributed tests (CPU, gloo).

:func:`run_ranks` starts ``world`` spawned processes running
``fn(rank, world, port, out_dir, *args)`` and waits for them; each rank program writes what it
measured to ``out_dir/rank{r}.pt`` and the tests compare it with single-process references
computed in the test process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pytorch_metric_learning.miners import MultiSimilarityMiner

ALPHA, MARGIN = 32.0, 0.1
LOCAL_SIZES = {2: [3, 5], 3: [4, 2, 3]}  # uneven local batches
NUM_CLASSES = {2: 7, 3: 8}  # 7 over 2 ranks: shards 4+3; 8 over 3 ranks: 3+3+2
EMB, IN = 6, 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(
    fn: Callable[..., None], rank: int, world: int, port: int, out: str, args: tuple
) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    try:
        fn(rank, world, port, out, *args)
    except BaseException:
        Path(out, f"error{rank}.txt").write_text(traceback.format_exc())
        raise


def run_ranks(
    fn: Callable[..., None],
    world: int,
    out_dir: Path,
    *args: Any,
    timeout: float = 120.0,
    stop_rest_after_rank0: bool = False,
) -> list[int | None]:
    """Run ``fn`` on ``world`` processes; returns their exit codes (None = still running at the
    deadline, then terminated). ``stop_rest_after_rank0``: terminate the other ranks as soon as
    rank 0 has finished (for a rank that hangs on purpose)."""
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [
        ctx.Process(target=_entry, args=(fn, r, world, port, str(out_dir), args))
        for r in range(world)
    ]
    for proc in procs:
        proc.start()
    codes: list[int | None] = []
    for index, proc in enumerate(procs):
        proc.join(0.1 if stop_rest_after_rank0 and index else timeout)
        codes.append(proc.exitcode)
        if proc.exitcode is None:
            proc.terminate()
            proc.join(5)
    return codes


def errors(out_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(Path(out_dir).glob("error*.txt")))


# ---------------------------------------------------------------- inputs, shared by both sides
def global_batch(world: int, dtype: torch.dtype = torch.float64) -> dict[str, Any]:
    """Deterministic global batch: inputs (B, IN), labels (classes 1 and C-1 absent), proxies,
    a small model, and the rank slices."""
    gen = torch.Generator().manual_seed(100 + world)
    sizes = LOCAL_SIZES[world]
    num_classes = NUM_CLASSES[world]
    total = sum(sizes)
    present = [c for c in range(num_classes) if c not in (1, num_classes - 1)]
    labels = torch.tensor(present)[torch.randint(len(present), (total,), generator=gen)]
    inputs = torch.randn(total, IN, generator=gen, dtype=dtype)
    proxies = torch.randn(num_classes, EMB, generator=gen, dtype=dtype)
    weight = torch.randn(EMB, IN, generator=gen, dtype=dtype) * 0.5
    bias = torch.randn(EMB, generator=gen, dtype=dtype) * 0.1
    starts = [sum(sizes[:r]) for r in range(world)]
    return {
        "labels": labels, "inputs": inputs, "proxies": proxies, "weight": weight, "bias": bias,
        "slices": [slice(s, s + n) for s, n in zip(starts, sizes)], "num_classes": num_classes,
    }  # fmt: skip


def make_model(batch: dict[str, Any]) -> torch.nn.Module:
    model = torch.nn.Linear(IN, EMB).to(batch["inputs"].dtype)
    with torch.no_grad():
        model.weight.copy_(batch["weight"])
        model.bias.copy_(batch["bias"])
    return model


def miner() -> MultiSimilarityMiner:
    return MultiSimilarityMiner(epsilon=0.3)


def make_loss(batch: dict[str, Any]) -> Any:
    from pml_proxy_anchor.losses import ProxyAnchorLoss

    loss = ProxyAnchorLoss(batch["num_classes"], EMB, margin=MARGIN, alpha=ALPHA)
    loss = loss.to(batch["inputs"].dtype)
    with torch.no_grad():
        loss.proxies.copy_(batch["proxies"])
    return loss


def reference_loss(
    x: torch.Tensor,
    labels: torch.Tensor,
    proxies: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """docs/paper.md section 1, written directly (exp form, float64), per-sample weights ``w``
    multiplying each exponential (w = 0 removes the sample): the independent reference of these
    tests."""
    x, p = x.double(), proxies.double()
    s = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(p, dim=1).T
    w = torch.ones(len(labels), dtype=torch.float64) if weights is None else weights.double()
    pos_mask = torch.nn.functional.one_hot(labels, p.shape[0]).double()  # (B, C)
    h_pos = (w[:, None] * torch.exp(-ALPHA * (s - MARGIN)) * pos_mask).sum(0)
    h_neg = (w[:, None] * torch.exp(ALPHA * (s + MARGIN)) * (1 - pos_mask)).sum(0)
    in_p_plus = ((pos_mask * w[:, None]).sum(0) > 0).double()
    pos = (torch.log1p(h_pos) * in_p_plus).sum() / in_p_plus.sum()
    return pos + torch.log1p(h_neg).sum() / p.shape[0]


def mined_weights(batch: dict[str, Any], embeddings: torch.Tensor) -> torch.Tensor:
    """PML's per-sample weights for the union of the tuples each rank mined on its own slice."""
    from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

    parts: list[list[torch.Tensor]] = []
    for sl in batch["slices"]:
        tup = miner()(embeddings[sl].detach(), batch["labels"][sl])
        parts.append([t + sl.start for t in tup])
    union = tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))
    return lmu.convert_to_weights(union, batch["labels"], dtype=torch.float64)


# ---------------------------------------------------------------- rank programs
def _run_steps(rank: int, world: int, out: str, steps: tuple[str, ...], ckpt: str) -> None:
    """Join the group, then run the named steps in order; the results so far are saved after each
    step to ``out/rank{r}.pt``."""
    from pml_proxy_anchor.distributed import init_distributed

    init_distributed(device="cpu", timeout_s=60)
    results: dict[str, Any] = {}
    for step in steps:
        results.update(STEPS[step](rank, world, ckpt))
        torch.save(results, Path(out, f"rank{rank}.pt"))


def program(rank: int, world: int, port: int, out: str, steps: tuple[str, ...], ckpt: str) -> None:
    """:func:`_run_steps`, then all ranks leave the group together: rank 0 hosts the rendezvous
    store, and a rank still tearing down its gloo threads after rank 0 has exited can abort
    ("terminate called without an active exception")."""
    from pml_proxy_anchor.distributed import barrier, cleanup

    _run_steps(rank, world, out, steps, ckpt)
    barrier("end of the test program")
    cleanup()


def equivalence_step(rank: int, world: int, ckpt: str) -> dict[str, Any]:
    """Loss and gradients of every mode on this rank's slice of the global batch."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from pml_proxy_anchor.distributed import (
        GlobalBatchLoss,
        ShardedProxyAnchorLoss,
        check_config_consistency,
    )
    from pml_proxy_anchor.distributed.errors import ConfigMismatchError

    batch = global_batch(world)
    sl = batch["slices"][rank]
    results: dict[str, Any] = {"shard": None}
    for mode in ("replicated", "sharded"):
        for use_miner in (False, True):
            base = make_loss(batch)
            loss = (
                GlobalBatchLoss(base, ddp_average=False)
                if mode == "replicated"
                else ShardedProxyAnchorLoss.from_loss(base, ddp_average=False).double()
            )
            if mode == "sharded":
                results["shard"] = (loss.lo, loss.hi)
            x = (batch["inputs"][sl] @ batch["weight"].T).requires_grad_(True)
            tuples = miner()(x.detach(), batch["labels"][sl]) if use_miner else None
            value = loss(x, batch["labels"][sl], tuples)
            value.backward()
            results[f"{mode}/miner={use_miner}"] = {
                "loss": value.detach(), "x_grad": x.grad, "proxy_grad": loss.proxies.grad,
            }  # fmt: skip
        # a small model under DDP (gradients averaged over ranks), ddp_average=True
        model = DDP(make_model(batch))
        base = make_loss(batch)
        loss = (
            GlobalBatchLoss(base)
            if mode == "replicated"
            else ShardedProxyAnchorLoss.from_loss(base).double()
        )
        value = loss(model(batch["inputs"][sl]), batch["labels"][sl])
        value.backward()
        results[f"{mode}/ddp"] = {
            "loss": value.detach(), "proxy_grad": loss.proxies.grad,
            "weight_grad": model.module.weight.grad, "bias_grad": model.module.bias.grad,
        }  # fmt: skip
    # float32 end to end (the production dtype)
    batch32 = global_batch(world, torch.float32)
    for mode in ("replicated", "sharded"):
        base = make_loss(batch32)
        loss = (
            GlobalBatchLoss(base)
            if mode == "replicated"
            else ShardedProxyAnchorLoss.from_loss(base)
        )
        model = DDP(make_model(batch32))
        value = loss(model(batch32["inputs"][sl]), batch32["labels"][sl])
        value.backward()
        results[f"{mode}/ddp32"] = {
            "loss": value.detach(), "proxy_grad": loss.proxies.grad,
            "weight_grad": model.module.weight.grad,
        }  # fmt: skip
    # config consistency: same config passes, a rank-dependent value is named
    config = {"train": {"lr": 1e-4, "batch_size": 180}, "loss": {"ProxyAnchorLoss": {}}}
    results["config_hash"] = check_config_consistency(config)
    bad = {"train": {"lr": 1e-4 * (1 + (rank == world - 1)), "batch_size": 180}}
    try:
        check_config_consistency(bad)
        results["mismatch"] = None
    except ConfigMismatchError as err:
        results["mismatch"] = str(err)
    return results


def train_step(loss: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, opt: Any) -> None:
    opt.zero_grad()
    loss(x, labels).backward()
    opt.step()


def save_step(rank: int, world: int, ckpt: str) -> dict[str, Any]:
    return _checkpoint(rank, world, ckpt, save=True)


def resume_step(rank: int, world: int, ckpt: str) -> dict[str, Any]:
    return _checkpoint(rank, world, ckpt, save=False)


def _checkpoint(rank: int, world: int, ckpt: str, save: bool) -> dict[str, Any]:
    """save=True: one AdamW step on sharded proxies, then rank 0 writes the gathered state.
    save=False: load that state re-sharded for this world size and take one more step."""
    from pml_proxy_anchor.distributed import (
        ShardedProxyAnchorLoss,
        full_loss_state_dict,
        full_optimizer_state_dict,
        is_main_process,
        load_full_optimizer_state_dict,
    )

    batch = global_batch(2)
    loss = ShardedProxyAnchorLoss.from_loss(make_loss(batch), ddp_average=False).double()
    opt = torch.optim.AdamW(loss.parameters(), lr=0.01)
    x_all = batch["inputs"] @ batch["weight"].T
    step = checkpoint_batches(batch, x_all, world, rank)
    if save:
        train_step(loss, *step[0], opt)
        state = full_loss_state_dict(loss)
        opt_state = full_optimizer_state_dict(opt, loss)
        if is_main_process():
            torch.save({"loss": state, "opt": opt_state}, ckpt)
        return {"saved_shard": loss.proxies.detach().clone(), "lo": loss.lo}
    saved = torch.load(ckpt, weights_only=True)
    loss.load_state_dict(saved["loss"])
    load_full_optimizer_state_dict(opt, saved["opt"], loss)
    loaded = loss.proxies.detach().clone()
    train_step(loss, *step[1], opt)
    full = full_loss_state_dict(loss, dst=0)
    return {"loaded": loaded, "lo": loss.lo, "hi": loss.hi, "after": full}


def checkpoint_batches(
    batch: dict[str, Any], x_all: torch.Tensor, world: int, rank: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Step 0 uses the first half of the global batch, step 1 the second, split over ``world``."""
    half = x_all.shape[0] // 2
    out = []
    for part in (slice(0, half), slice(half, x_all.shape[0])):
        idx = torch.arange(x_all.shape[0])[part]
        mine = torch.tensor_split(idx, world)[rank]
        out.append((x_all[mine], batch["labels"][mine]))
    return out


def _survive(rank: int, out: str, results: dict[str, Any]) -> None:
    """Run a training collective after a peer failed; record the error, leave without teardown."""
    from pml_proxy_anchor.distributed import all_gather_with_grad

    try:
        all_gather_with_grad(torch.ones(2, 3))
        results["failure"] = {"type": None, "error": None}
    except Exception as err:  # recorded for the test to check
        results["failure"] = {"type": type(err).__name__, "error": str(err)}
    torch.save(results, Path(out, f"rank{rank}.pt"))
    os._exit(0)  # a broken group cannot be torn down collectively


def die_program(
    rank: int, world: int, port: int, out: str, steps: tuple[str, ...], ckpt: str
) -> None:
    """:func:`_run_steps`, then the last rank exits with code 3 and the others hit a collective.
    The barrier first makes every rank finish the steps, so the failure can only come from the
    collective after them."""
    from pml_proxy_anchor.distributed import barrier

    _run_steps(rank, world, out, steps, ckpt)
    barrier("end of the steps")
    if rank == world - 1:
        os._exit(3)
    _survive(rank, out, torch.load(Path(out, f"rank{rank}.pt"), weights_only=False))


def hang_program(rank: int, world: int, port: int, out: str, timeout_s: float) -> None:
    """The last rank hangs; the others must give up after the group timeout ``timeout_s``."""
    import time

    from pml_proxy_anchor.distributed import barrier, init_distributed

    init_distributed(device="cpu", timeout_s=timeout_s)
    barrier()
    if rank == world - 1:
        time.sleep(600)  # terminated by the harness once rank 0 is done
    _survive(rank, out, {})


def equal_slices(batch: dict[str, Any], world: int) -> list[slice]:
    """The global batch cut into ``world`` equal local batches (the rest dropped)."""
    size = len(batch["labels"]) // world
    return [slice(r * size, (r + 1) * size) for r in range(world)]


def pml_wrapper_step(rank: int, world: int, ckpt: str) -> dict[str, Any]:
    """PML's ``DistributedLossWrapper`` and our ``GlobalBatchLoss`` around the same loss, on this
    rank's slice: the loss value, the gradient of the local embeddings and of the proxies, and
    the weight gradient of a small model under DDP. Equal local batches (:func:`equal_slices`):
    PML's gather needs them."""
    from pytorch_metric_learning.utils.distributed import DistributedLossWrapper
    from torch.nn.parallel import DistributedDataParallel as DDP

    from pml_proxy_anchor.distributed import GlobalBatchLoss

    batch = global_batch(world)
    sl = equal_slices(batch, world)[rank]
    wrappers = {
        "pml": lambda loss: DistributedLossWrapper(loss),
        "ours": lambda loss: GlobalBatchLoss(loss, ddp_average=False),
    }
    results: dict[str, Any] = {}
    for name, wrap in wrappers.items():
        base = make_loss(batch)
        x = (batch["inputs"][sl] @ batch["weight"].T).requires_grad_(True)
        value = wrap(base)(x, batch["labels"][sl])
        value.backward()
        results[f"wrapper/{name}"] = {
            "loss": value.detach(), "x_grad": x.grad, "proxy_grad": base.proxies.grad,
        }  # fmt: skip
    # under DDP (ours with its default ddp_average=True)
    for name, wrap in (("pml", wrappers["pml"]), ("ours", GlobalBatchLoss)):
        base = make_loss(batch)
        model = DDP(make_model(batch))
        wrap(base)(model(batch["inputs"][sl]), batch["labels"][sl]).backward()
        results[f"wrapper/{name}/ddp"] = {
            "weight_grad": model.module.weight.grad, "proxy_grad": base.proxies.grad,
        }  # fmt: skip
    return results


STEPS = {
    "equivalence": equivalence_step,
    "save": save_step,
    "resume": resume_step,
    "pml_wrapper": pml_wrapper_step,
}
