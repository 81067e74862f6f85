"""PML's own ``DistributedLossWrapper`` around this loss is not the global-batch loss: on N
processes its value and its proxy gradients are exactly N times those of one process on the
concatenated batch (PML multiplies by the world size to undo DDP's averaging of the model's
gradients, but the proxies live outside DDP). ``pml_proxy_anchor.distributed.GlobalBatchLoss``
gives the global-batch loss itself. Measured on 2 gloo processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from dist_workers import (
    equal_slices,
    errors,
    global_batch,
    make_model,
    program,
    reference_loss,
    run_ranks,
)

TOL = {"atol": 1e-9, "rtol": 1e-9}  # float64 end to end
WORLD = 2


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("pml_wrapper")
    codes = run_ranks(program, WORLD, out, ("pml_wrapper",), "", timeout=60.0)
    assert codes == [0] * WORLD, f"rank exit codes {codes}\n{errors(out)}"
    return [torch.load(Path(out, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]


def _reference() -> dict[str, torch.Tensor]:
    """One process, the whole global batch (the part the ranks hold)."""
    batch = global_batch(WORLD)
    used = slice(0, equal_slices(batch, WORLD)[-1].stop)
    batch = {**batch, "inputs": batch["inputs"][used], "labels": batch["labels"][used]}
    x = (batch["inputs"] @ batch["weight"].T).requires_grad_(True)
    proxies = batch["proxies"].clone().requires_grad_(True)
    value = reference_loss(x, batch["labels"], proxies)
    value.backward()
    model = make_model(batch)
    model_proxies = batch["proxies"].clone().requires_grad_(True)
    reference_loss(model(batch["inputs"]), batch["labels"], model_proxies).backward()
    return {
        "loss": value.detach(), "x_grad": x.grad, "proxy_grad": proxies.grad,
        "weight_grad": model.weight.grad, "model_proxy_grad": model_proxies.grad,
    }  # fmt: skip


@pytest.mark.parametrize(("wrapper", "factor"), [("pml", float(WORLD)), ("ours", 1.0)])
def test_loss_and_gradients_against_one_process(ranks, wrapper: str, factor: float) -> None:
    ref = _reference()
    slices = equal_slices(global_batch(WORLD), WORLD)
    for rank, result in enumerate(ranks):
        got = result[f"wrapper/{wrapper}"]
        torch.testing.assert_close(got["loss"], factor * ref["loss"], **TOL)
        torch.testing.assert_close(got["x_grad"], factor * ref["x_grad"][slices[rank]], **TOL)
        torch.testing.assert_close(got["proxy_grad"], factor * ref["proxy_grad"], **TOL)


@pytest.mark.parametrize(("wrapper", "proxy_factor"), [("pml", float(WORLD)), ("ours", 1.0)])
def test_under_ddp_the_model_is_right_but_pml_scales_the_proxies(
    ranks, wrapper: str, proxy_factor: float
) -> None:
    ref = _reference()
    for result in ranks:
        got = result[f"wrapper/{wrapper}/ddp"]
        torch.testing.assert_close(got["weight_grad"], ref["weight_grad"], **TOL)
        torch.testing.assert_close(got["proxy_grad"], proxy_factor * ref["model_proxy_grad"], **TOL)
