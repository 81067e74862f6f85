"""The fused kernel's memory is bounded by the chunk, not by batch x classes: the largest single
allocation of a forward + backward, as recorded by the PyTorch profiler, against the dense path."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from pml_proxy_anchor.losses import ProxyAnchorLoss

B, C, D = 64, 4096, 8  # the B x C matrix (1 MiB) is 8x the C x D proxy gradient (128 KiB)


def largest_allocation(loss_fn: ProxyAnchorLoss) -> int:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=g, requires_grad=True)
    labels = torch.randint(0, C, (B,), generator=g)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss_fn(x, labels).backward()
    return max(e.self_cpu_memory_usage for e in prof.events())


def test_fused_allocations_are_bounded_by_the_chunk():
    # chunk 1024: each of the two (B, chunk) workspaces (256 KiB) outgrows the C x D proxy
    # gradient (128 KiB) and is the largest single allocation; nothing is B x C (1 MiB)
    assert largest_allocation(ProxyAnchorLoss(C, D, chunk_size=1024)) == B * 1024 * 4
    # smaller chunks: the proxy gradient itself is the largest
    assert largest_allocation(ProxyAnchorLoss(C, D, chunk_size=256)) == C * D * 4


def test_the_dense_path_allocates_batch_x_classes():
    # the measurement sees B x C allocations: the generic path makes several
    assert largest_allocation(ProxyAnchorLoss(C, D, fused=False)) >= B * C * 4


def test_chunk_bytes_sets_the_workspace():
    budget = 2 * 4 * B * 2048  # two float32 (B, 2048) workspaces
    assert largest_allocation(ProxyAnchorLoss(C, D, chunk_bytes=budget)) == B * 2048 * 4
