"""2 and 3 ranks (uneven local batches, uneven class shards, classes absent from the batch): loss
and gradients equal the single-process run on the concatenated global batch, for replicated and
class-sharded proxies, with and without a miner, and for a small model under DDP."""

from __future__ import annotations

import pytest
import torch
from dist_workers import global_batch, make_loss, make_model, mined_weights, reference_loss

TOL = {"atol": 1e-5, "rtol": 1e-5}
MODES = ["replicated", "sharded"]


def _reference(world: int, use_miner: bool) -> dict[str, torch.Tensor]:
    batch = global_batch(world)
    x = (batch["inputs"] @ batch["weight"].T).requires_grad_(True)
    proxies = batch["proxies"].clone().requires_grad_(True)
    weights = mined_weights(batch, x) if use_miner else None
    value = reference_loss(x, batch["labels"], proxies, weights)
    value.backward()
    return {"loss": value.detach(), "x_grad": x.grad, "proxy_grad": proxies.grad}


def _proxy_rows(ranks: list[dict], rank: int, mode: str, num_classes: int) -> slice:
    if mode == "replicated":
        return slice(0, num_classes)
    lo, hi = ranks[rank]["shard"]
    return slice(lo, hi)


def test_reference_matches_the_single_process_loss() -> None:
    batch = global_batch(3)
    x = batch["inputs"] @ batch["weight"].T
    expected = reference_loss(x, batch["labels"], batch["proxies"])
    torch.testing.assert_close(make_loss(batch)(x, batch["labels"]), expected, **TOL)


def test_shards_are_uneven_and_cover_all_classes(equivalence_run) -> None:
    world, ranks = equivalence_run
    bounds = [r["shard"] for r in ranks]
    num_classes = global_batch(world)["num_classes"]
    assert bounds[0][0] == 0 and bounds[-1][1] == num_classes
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert len({hi - lo for lo, hi in bounds}) == 2  # uneven on purpose


@pytest.mark.parametrize("use_miner", [False, True], ids=["all-samples", "miner"])
@pytest.mark.parametrize("mode", MODES)
def test_loss_and_gradients_equal_single_process(equivalence_run, mode, use_miner) -> None:
    world, ranks = equivalence_run
    batch = global_batch(world)
    ref = _reference(world, use_miner)
    for rank, result in enumerate(ranks):
        got = result[f"{mode}/miner={use_miner}"]
        torch.testing.assert_close(got["loss"], ref["loss"], **TOL)
        torch.testing.assert_close(got["x_grad"], ref["x_grad"][batch["slices"][rank]], **TOL)
        rows = _proxy_rows(ranks, rank, mode, batch["num_classes"])
        torch.testing.assert_close(got["proxy_grad"], ref["proxy_grad"][rows], **TOL)


def test_absent_classes_get_only_negative_gradient(equivalence_run) -> None:
    """Classes 1 and C-1 never occur: they are in P but not in P+ (pull-free, push-only)."""
    world, ranks = equivalence_run
    batch = global_batch(world)
    assert not bool(torch.isin(torch.tensor([1, batch["num_classes"] - 1]), batch["labels"]).any())
    ref = _reference(world, False)
    assert float(ref["proxy_grad"][1].abs().sum()) > 0
    full = torch.cat([r["sharded/miner=False"]["proxy_grad"] for r in ranks])
    torch.testing.assert_close(full, ref["proxy_grad"], **TOL)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("mode", MODES)
def test_ddp_model_gradients_equal_single_process(equivalence_run, mode, dtype) -> None:
    """DDP averages the model's gradients over ranks; the result is the global-batch gradient."""
    world, ranks = equivalence_run
    batch = global_batch(world, dtype)
    model = make_model(batch)
    loss = make_loss(batch)
    value = loss(model(batch["inputs"]), batch["labels"])
    value.backward()
    key = f"{mode}/ddp" if dtype == torch.float64 else f"{mode}/ddp32"
    for rank, result in enumerate(ranks):
        got = result[key]
        torch.testing.assert_close(got["loss"], value.detach(), **TOL)
        torch.testing.assert_close(got["weight_grad"], model.weight.grad, **TOL)
        if "bias_grad" in got:
            torch.testing.assert_close(got["bias_grad"], model.bias.grad, **TOL)
        rows = _proxy_rows(ranks, rank, mode, batch["num_classes"])
        torch.testing.assert_close(got["proxy_grad"], loss.proxies.grad[rows], **TOL)


def test_config_mismatch_is_named_on_every_rank(equivalence_run) -> None:
    world, ranks = equivalence_run
    assert len({r["config_hash"] for r in ranks}) == 1
    for result in ranks:
        message = result["mismatch"]
        assert message is not None
        assert "train.lr" in message and f"rank {world - 1}" in message
        assert "batch_size" not in message  # only the differing key is named
