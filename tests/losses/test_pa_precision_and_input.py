"""Mixed precision (float16, bfloat16, autocast) and bad input of the Proxy-Anchor loss."""

from __future__ import annotations

import pytest
import torch
from pa_reference import rel_err, seeded

from pml_proxy_anchor.losses import ProxyAnchorLoss


def batch(b: int = 48, c: int = 12, d: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randint(0, c, (b,), generator=g)


def run(loss_fn, x, labels):
    x = x.detach().clone().requires_grad_(True)
    loss_fn.proxies.grad = None
    loss = loss_fn(x, labels)
    loss.backward()
    return loss.detach(), x.grad, loss_fn.proxies.grad.clone()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("alpha", [32.0, 128.0])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_match_float32(dtype, alpha, fused):
    x, labels = batch()
    x_half = x.to(dtype)
    loss_fn = ProxyAnchorLoss(12, 16, alpha=alpha, fused=fused)
    # float32 on the very same (rounded) values is the reference
    ref = run(loss_fn, x_half.float(), labels)
    half_proxies = ProxyAnchorLoss(12, 16, alpha=alpha, fused=fused).to(dtype)
    half_proxies.proxies.data.copy_(loss_fn.proxies.data.to(dtype))
    for model in (loss_fn, half_proxies):  # float32 master proxies, then proxies in `dtype` too
        got = run(model, x_half, labels)
        assert torch.isfinite(got[0]) and torch.isfinite(got[1]).all()
        assert torch.isfinite(got[2]).all()
        assert got[1].dtype == dtype and got[2].dtype == model.proxies.dtype
        if model is loss_fn:
            assert abs(float(got[0]) - float(ref[0])) <= 1e-2 * abs(float(ref[0]))
            assert rel_err(got[1], ref[1]) < 1e-2 and rel_err(got[2], ref[2]) < 1e-2
    assert loss_fn.proxies.dtype == torch.float32  # the call did not cast the master proxies


@pytest.mark.parametrize("alpha", [32.0, 128.0])
def test_autocast_matches_float32(alpha):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 16)
    x, labels = batch()
    loss_fn = ProxyAnchorLoss(12, 16, alpha=alpha)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = head(x)
        assert emb.dtype == torch.bfloat16
        loss = loss_fn(emb, labels)
    loss.backward()
    auto_head_grad, auto_proxy_grad = head.weight.grad.clone(), loss_fn.proxies.grad.clone()
    # reference: float32 from the same bfloat16 embeddings
    head.zero_grad()
    loss_fn.proxies.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = head(x)
    ref = loss_fn(emb.float(), labels)
    ref.backward()
    assert torch.isfinite(loss)
    assert abs(float(loss.detach()) - float(ref.detach())) <= 1e-2 * abs(float(ref.detach()))
    assert rel_err(auto_proxy_grad, loss_fn.proxies.grad) < 1e-2
    assert rel_err(auto_head_grad, head.weight.grad) < 1e-2


def test_alpha_128_is_finite_in_float16_where_the_exp_form_overflows():
    x, labels = batch(seed=2)
    loss_fn = ProxyAnchorLoss(12, 16, alpha=128.0)
    s = torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(loss_fn.proxies).T
    assert not torch.isfinite(torch.exp(128.0 * (s.detach() + 0.1)).half()).all()
    loss, gx, gp = run(loss_fn, x.half(), labels)
    assert torch.isfinite(loss) and torch.isfinite(gx).all() and torch.isfinite(gp).all()


# ---- bad input ----
@pytest.fixture
def loss_fn():
    return ProxyAnchorLoss(5, 4)


def test_labels_out_of_range(loss_fn):
    with pytest.raises(ValueError, match=r"labels \[-1, 7\] are outside \[0, 5\)"):
        loss_fn(torch.randn(4, 4, generator=seeded(0)), torch.tensor([0, 7, -1, 7]))


def test_non_integer_labels(loss_fn):
    with pytest.raises(ValueError, match=r"integer class ids.*torch.float32.*\[0.5, 1.0"):
        loss_fn(torch.randn(2, 4, generator=seeded(0)), torch.tensor([0.5, 1.0]))


def test_length_mismatch(loss_fn):
    with pytest.raises(ValueError, match="got 3 labels for 4 embeddings"):
        loss_fn(torch.randn(4, 4, generator=seeded(0)), torch.tensor([0, 1, 2]))


def test_wrong_embedding_size(loss_fn):
    with pytest.raises(ValueError, match="size 6 but the loss was built with embedding_size=4"):
        loss_fn(torch.randn(3, 6, generator=seeded(0)), torch.tensor([0, 1, 2]))


def test_not_a_matrix(loss_fn):
    with pytest.raises(ValueError, match=r"2-D tensor of shape \(batch_size, 4\); got \(4,\)"):
        loss_fn(torch.randn(4, generator=seeded(0)), torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize(
    "bad, what", [(float("nan"), "1 NaN and 0 Inf"), (float("inf"), "0 NaN and 1 Inf")]
)
def test_non_finite_embeddings(loss_fn, bad, what):
    x = torch.randn(3, 4, generator=seeded(0))
    x[2, 1] = bad
    with pytest.raises(ValueError, match=rf"{what} values, in rows \[2\] of 3"):
        loss_fn(x, torch.tensor([0, 1, 2]))


def test_missing_labels(loss_fn):
    with pytest.raises(ValueError, match="labels are required"):
        loss_fn(torch.randn(3, 4, generator=seeded(0)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="alpha must be > 0"):
        ProxyAnchorLoss(3, 4, alpha=0)
    with pytest.raises(ValueError, match="num_classes must be a positive integer; got 0"):
        ProxyAnchorLoss(0, 4)
    from pytorch_metric_learning.distances import LpDistance

    with pytest.raises(ValueError, match="fused=True needs CosineSimilarity"):
        ProxyAnchorLoss(3, 4, fused=True, distance=LpDistance())


@pytest.mark.parametrize("fused", [True, False])
def test_empty_batch_gives_zero_loss_that_backpropagates(fused):
    loss_fn = ProxyAnchorLoss(5, 4, fused=fused)
    x = torch.zeros(0, 4, requires_grad=True)
    loss = loss_fn(x, torch.zeros(0, dtype=torch.long))
    assert loss.requires_grad and float(loss.detach()) == 0.0
    loss.backward()
    assert x.grad is not None and x.grad.shape == (0, 4)
    assert torch.equal(loss_fn.proxies.grad, torch.zeros(5, 4))


def test_single_class_batch():
    loss_fn = ProxyAnchorLoss(3, 4)
    x = torch.randn(6, 4, generator=seeded(0), requires_grad=True)
    labels = torch.full((6,), 2)
    loss = loss_fn(x, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert float(loss_fn.proxies.grad[2].norm()) > 0
