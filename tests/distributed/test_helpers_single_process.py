"""The distributed helpers in one process (no process group): shard bounds, samplers, launch
environment checks, config hashing, bad input; the sharded loss in one process equals the
reference."""

from __future__ import annotations

import pytest
import torch
from dist_workers import global_batch, make_loss, reference_loss
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import SumReducer
from pytorch_metric_learning.regularizers import LpRegularizer

from pml_proxy_anchor.distributed import (
    DistributedError,
    GlobalBatchLoss,
    ShardedProxyAnchorLoss,
    ShardedSampler,
    distribute_loss,
    gather_by_index,
    init_distributed,
    is_main_process,
    local_batch_size,
    shard_bounds,
)
from pml_proxy_anchor.distributed.launch import config_hash
from pml_proxy_anchor.losses import ProxyAnchorLoss


@pytest.mark.parametrize(
    ("classes", "world", "expected"),
    [
        (10, 3, [(0, 4), (4, 7), (7, 10)]),
        (8, 4, [(0, 2), (2, 4), (4, 6), (6, 8)]),
        (2, 3, [(0, 1), (1, 2), (2, 2)]),  # more ranks than classes: an empty shard
    ],
)
def test_shard_bounds(classes: int, world: int, expected: list[tuple[int, int]]) -> None:
    assert [shard_bounds(classes, world, r) for r in range(world)] == expected


def test_shard_bounds_rejects_a_bad_rank() -> None:
    with pytest.raises(ValueError, match="not in \\[0, world_size=2\\)"):
        shard_bounds(10, 2, 2)


def test_local_batch_size() -> None:
    assert local_batch_size(180, 4) == 45
    with pytest.raises(ValueError, match="not a multiple of the 7 processes"):
        local_batch_size(180, 7)


def test_distributed_sampler_batches_equal_the_one_process_batches() -> None:
    """N ranks with local batch b see, batch for batch, the samples of 1 process with batch N b."""
    data, world, local, seed, epoch = list(range(48)), 3, 4, 7, 2
    one = torch.utils.data.DistributedSampler(data, num_replicas=1, rank=0, seed=seed)
    one.set_epoch(epoch)
    one_batches = list(torch.utils.data.BatchSampler(list(one), world * local, drop_last=True))
    rank_batches = []
    for rank in range(world):
        sampler = torch.utils.data.DistributedSampler(
            data, num_replicas=world, rank=rank, seed=seed
        )
        sampler.set_epoch(epoch)
        rank_batches.append(list(torch.utils.data.BatchSampler(list(sampler), local, True)))
    for k, batch in enumerate(one_batches):
        assert sorted(batch) == sorted(i for r in range(world) for i in rank_batches[r][k])


def test_sharded_sampler_partitions_any_order() -> None:
    order = [5, 3, 9, 1, 0, 8, 2]
    parts = [list(ShardedSampler(order, rank=r, world_size=3)) for r in range(3)]
    assert parts == [[5, 1, 2], [3, 0, 5], [9, 8, 3]]  # padded by wrapping to 9
    assert len(ShardedSampler(order, rank=0, world_size=3)) == 3


def test_single_process_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed(device="cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.backend) == (0, 1, True, None)
    assert is_main_process()


def test_missing_torchrun_variables_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(DistributedError, match="MASTER_ADDR, MASTER_PORT not set"):
        init_distributed(device="cpu")


def test_config_hash_ignores_only_the_named_keys() -> None:
    a = {"train": {"lr": 0.1, "device": "cuda:0"}, "run_dir": "x"}
    b = {"train": {"lr": 0.1, "device": "cuda:1"}, "run_dir": "x"}
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, ignore=("train.device",)) == config_hash(b, ignore=("train.device",))
    assert config_hash(a) == config_hash({"run_dir": "x", "train": {"device": "cuda:0", "lr": 0.1}})


def test_sharded_loss_in_one_process_equals_the_reference() -> None:
    batch = global_batch(3)
    x = (batch["inputs"] @ batch["weight"].T).requires_grad_(True)
    loss = ShardedProxyAnchorLoss.from_loss(make_loss(batch)).double()
    value = loss(x, batch["labels"])
    value.backward()
    x_ref = x.detach().clone().requires_grad_(True)
    p_ref = batch["proxies"].clone().requires_grad_(True)
    expected = reference_loss(x_ref, batch["labels"], p_ref)
    expected.backward()
    torch.testing.assert_close(value, expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(loss.proxies.grad, p_ref.grad, atol=1e-10, rtol=1e-10)


def test_global_batch_loss_is_transparent_in_one_process() -> None:
    batch = global_batch(2)
    x = batch["inputs"] @ batch["weight"].T
    wrapped = GlobalBatchLoss(make_loss(batch))
    torch.testing.assert_close(wrapped(x, batch["labels"]), make_loss(batch)(x, batch["labels"]))
    assert set(wrapped.state_dict()) == {"proxies"}  # the checkpoint format of the plain loss
    with pytest.raises(ValueError, match="ref_emb/ref_labels"):
        wrapped(x, batch["labels"], None, x, batch["labels"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distance": LpDistance()}, "need CosineSimilarity or DotProductSimilarity"),
        ({"reducer": SumReducer()}, "mean reduction only"),
        ({"weight_regularizer": LpRegularizer()}, "weight_regularizer"),
    ],
)
def test_sharding_refuses_what_it_cannot_compute_exactly(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        distribute_loss(ProxyAnchorLoss(5, 4, **kwargs), proxies="sharded")


def test_distribute_loss_modes() -> None:
    assert isinstance(distribute_loss(ProxyAnchorLoss(5, 4)), GlobalBatchLoss)
    assert isinstance(distribute_loss(ProxyAnchorLoss(5, 4), "sharded"), ShardedProxyAnchorLoss)
    with pytest.raises(ValueError, match="replicated.*sharded"):
        distribute_loss(ProxyAnchorLoss(5, 4), "partial")


def test_shard_built_for_another_world_size_is_refused() -> None:
    loss = ShardedProxyAnchorLoss(6, 4, rank=0, world_size=2)
    with pytest.raises(ValueError, match="built for world_size=2 but the process group has 1"):
        loss(torch.randn(3, 4), torch.tensor([0, 1, 2]))


def test_sharded_proxies_init_like_the_full_matrix() -> None:
    torch.manual_seed(0)
    loss = ShardedProxyAnchorLoss(20_000, 8, rank=1, world_size=4)
    assert loss.proxies.shape == (5_000, 8)
    assert (
        abs(float(loss.proxies.detach().std()) - (2 / 20_000) ** 0.5) < 0.02 * (2 / 20_000) ** 0.5
    )


def test_gather_by_index_restores_order_and_names_missing_rows() -> None:
    values = torch.arange(8.0).reshape(4, 2)
    out = gather_by_index(values, torch.tensor([3, 0, 2, 1]), 4)
    assert torch.equal(out[3], values[0]) and torch.equal(out[0], values[1])
    with pytest.raises(ValueError, match=r"rows \[4\] of 5 were computed by no rank"):
        gather_by_index(values, torch.tensor([3, 0, 2, 1]), 5)
