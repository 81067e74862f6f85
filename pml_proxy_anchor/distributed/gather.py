"""Collectives for the global batch: ``all_gather`` with autograd, variable-size gathers, guards.

With N ranks holding local batches ``x_r`` (b_r, D), :func:`all_gather_with_grad` returns the
concatenation ``X = [x_0; x_1; ...; x_{N-1}]`` on every rank (the same order everywhere, uneven
``b_r`` allowed). Its backward implements the chain rule of "every rank's loss reads the whole of
``X``": the gradient that reaches ``x_r`` is the sum over ranks of the gradient of ``X`` restricted
to the rows of ``x_r``,

    dx_r = grad_scale * sum_{r'} (dL_{r'} / dX)[rows of r]

(an ``all_reduce`` of the (B, D) gradient followed by a slice). ``grad_scale`` exists because DDP
*averages* parameter gradients over ranks; see :mod:`pml_proxy_anchor.distributed.global_loss`.

Every collective goes through :func:`guarded`, which turns the backend's errors (a peer that died,
a timeout) into :class:`~pml_proxy_anchor.distributed.errors.RankFailureError` with a message that
says what happened and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from pml_proxy_anchor.errors import ConfigMismatchError

from .errors import RankFailureError

T = TypeVar("T")


def is_distributed() -> bool:
    """True when a default process group is initialised (torchrun / :func:`init_distributed`)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes of the job, 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def guarded(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run the collective ``fn``; a backend failure becomes :class:`RankFailureError`."""
    try:
        return fn(*args, **kwargs)
    except RankFailureError:
        raise
    except (RuntimeError, ConnectionError, TimeoutError) as err:  # DistBackendError, gloo/nccl
        raise RankFailureError(
            f"rank {get_rank()} of {get_world_size()}: the collective '{what}' failed: {err}. "
            "Another rank most likely died, was killed or hung (the process group timeout "
            "bounds the wait). Training stopped on this rank; the last checkpoint written by "
            "rank 0 is intact. Fix: look at the failing rank's log (out of memory, data error, "
            "killed), then resume from the last checkpoint, on any number of processes."
        ) from err


def batch_sizes(local_rows: int) -> list[int]:
    """Number of rows of every rank (an all_gather of one integer)."""
    if not is_distributed():
        return [int(local_rows)]
    size = torch.tensor([int(local_rows)], dtype=torch.int64, device=_comm_device())
    sizes = [torch.zeros_like(size) for _ in range(get_world_size())]
    guarded("all_gather(batch sizes)", dist.all_gather, sizes, size)
    return [int(s.item()) for s in sizes]


def _comm_device() -> torch.device:
    """The device a tensor must live on for the default group's backend."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather_padded(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """all_gather of ``x`` (rows differ across ranks: padded to the largest, then trimmed)."""
    longest = max(sizes)
    device = x.device
    send = x.detach().to(_comm_device()).contiguous()
    if send.shape[0] < longest:
        pad = send.new_zeros((longest - send.shape[0], *send.shape[1:]))
        send = torch.cat([send, pad])
    parts = [torch.empty_like(send) for _ in sizes]
    guarded("all_gather", dist.all_gather, parts, send)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)]).to(device)


def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` of all ranks concatenated in rank order (no autograd; uneven rows allowed)."""
    if not is_distributed() or get_world_size() == 1:
        return x
    return _gather_padded(x, batch_sizes(x.shape[0]))


class _AllGatherWithGrad(torch.autograd.Function):
    """``X = cat_r(x_r)``; backward: ``dx_r = scale * all_reduce_sum(dX)[rows of r]``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, grad_scale: float) -> torch.Tensor:  # type: ignore[override]
        sizes = batch_sizes(x.shape[0])
        ctx.sizes = sizes
        ctx.rank = get_rank()
        ctx.grad_scale = float(grad_scale)
        return _gather_padded(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        device = grad.device
        total = grad.detach().to(_comm_device()).contiguous().clone()
        guarded("all_reduce(gradient of the gathered batch)", dist.all_reduce, total)
        start = sum(ctx.sizes[: ctx.rank])
        mine = total[start : start + ctx.sizes[ctx.rank]].to(device)
        if ctx.grad_scale != 1.0:
            mine = mine * ctx.grad_scale
        return mine, None


def all_gather_with_grad(x: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """Concatenate the rows of ``x`` over ranks, differentiably (see the module docstring).

    Args:
        x: (b_r, ...) local tensor; ``b_r`` may differ across ranks.
        grad_scale: factor applied to the gradient that flows back to ``x``.

    Returns:
        (sum_r b_r, ...) tensor, identical on every rank; ``x`` itself when not distributed
        (then only ``grad_scale`` is applied to the gradient).
    """
    if not is_distributed() or get_world_size() == 1:
        return x if grad_scale == 1.0 else scale_grad(x, grad_scale)
    return _AllGatherWithGrad.apply(x, grad_scale)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity in the forward pass, gradient multiplied by ``scale`` in the backward pass."""
    return _ScaleGrad.apply(x, float(scale))


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks (a new tensor, no autograd)."""
    if not is_distributed() or get_world_size() == 1:
        return x.detach().clone()
    out = x.detach().to(_comm_device()).clone()
    guarded("all_reduce", dist.all_reduce, out)
    return out.to(x.device)


def gather_indices_tuple(
    indices_tuple: tuple[torch.Tensor, ...] | None,
    local_rows: int,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, ...] | None:
    """Pair/triplet indices mined on each rank's local batch, re-indexed into the gathered batch
    (rank r's indices shifted by the rows of ranks < r) and concatenated over ranks.

    The local tuple is checked first (arity, lengths, integer dtype, indices in
    ``[0, local_rows)``; :func:`pml_proxy_anchor.losses.validation.validate_indices_tuple`):
    after the shift a bad local index could land inside another rank's rows unnoticed.
    """
    from pml_proxy_anchor.losses.validation import validate_indices_tuple

    if indices_tuple is not None:
        if device is None:
            first = next(iter(indices_tuple), None)
            device = first.device if torch.is_tensor(first) else torch.device("cpu")
        indices_tuple = validate_indices_tuple(indices_tuple, local_rows, device)
    if not is_distributed() or get_world_size() == 1:
        return indices_tuple
    present = torch.tensor([0 if indices_tuple is None else len(indices_tuple)])
    arities = all_gather_no_grad(present)
    kinds = {int(a) for a in arities}
    if kinds == {0}:
        return None
    if len(kinds) != 1:
        raise ConfigMismatchError(
            f"ranks passed different kinds of indices_tuple (lengths {arities.tolist()}; 0 = "
            "None): every rank must run the same miner. Fix: build the same miner on every rank."
        )
    assert indices_tuple is not None
    offset = sum(batch_sizes(local_rows)[: get_rank()])
    return tuple(all_gather_no_grad(part.long() + offset) for part in indices_tuple)


def gather_by_index(values: torch.Tensor, indices: torch.Tensor, total: int) -> torch.Tensor:
    """Reassemble a data set's rows computed by all ranks (e.g. evaluation embeddings).

    Rank r computed ``values`` (n_r, ...) for the data set rows ``indices`` (n_r,) (a
    ``DistributedSampler`` split, duplicates from its padding allowed). Returns the (total, ...)
    tensor in data set order on every rank; raises if some row was computed by no rank.
    """
    all_values = all_gather_no_grad(values)
    all_indices = all_gather_no_grad(indices.to(values.device).long())
    out = values.new_zeros((int(total), *values.shape[1:]))
    seen = torch.zeros(int(total), dtype=torch.bool, device=values.device)
    out[all_indices] = all_values
    seen[all_indices] = True
    if not bool(seen.all()):
        missing = torch.nonzero(~seen).squeeze(1)[:8].tolist()
        raise ValueError(
            f"rows {missing} of {total} were computed by no rank; expected every data set row "
            "on some rank. Fix: evaluate with a DistributedSampler(shuffle=False) over the whole "
            "split (its padding is fine), not with drop_last=True."
        )
    return out
