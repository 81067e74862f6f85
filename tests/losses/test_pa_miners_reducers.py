"""Miners (exact exclusion, PML miners end to end), PML reducers and regularizers."""

from __future__ import annotations

import pytest
import torch
from pa_reference import reference_grads, reference_terms, rel_err, seeded
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners, reducers, regularizers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from pml_proxy_anchor.losses import ProxyAnchorLoss


def batch(b: int = 24, c: int = 8, d: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randint(0, c, (b,), generator=g)


def grads(loss_fn, x, labels, post=lambda v: v, **kw):
    x = x.detach().clone().requires_grad_(True)
    loss_fn.proxies.grad = None
    loss = loss_fn(x, labels, **kw)
    post(loss).backward()
    return loss.detach(), x.grad, loss_fn.proxies.grad.clone()


def keep_only(kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A triplet indices_tuple in which every kept sample appears equally often (weight 1)."""
    return kept, kept, kept


@pytest.mark.parametrize("fused", [True, False])
def test_weight_zero_samples_are_removed_exactly(fused):
    x, labels = batch()
    kept = torch.tensor([0, 2, 3, 5, 8, 9, 13, 17, 20, 23])
    loss_fn = ProxyAnchorLoss(8, 6, fused=fused)
    with_miner = grads(loss_fn, x, labels, indices_tuple=keep_only(kept))
    on_subset = grads(loss_fn, x[kept], labels[kept])
    torch.testing.assert_close(with_miner[0], on_subset[0], rtol=1e-6, atol=1e-6)
    assert rel_err(with_miner[1][kept], on_subset[1]) < 1e-5
    dropped = torch.ones(len(labels), dtype=torch.bool)
    dropped[kept] = False
    assert torch.all(with_miner[1][dropped] == 0)  # removed samples get no gradient at all
    assert rel_err(with_miner[2], on_subset[2]) < 1e-5


def test_pml_builtin_only_shifts_the_logit_while_ours_excludes():
    x, labels = batch(seed=4)
    kept = torch.arange(0, 24, 3)
    ours = ProxyAnchorLoss(8, 6)
    builtin = pml_losses.ProxyAnchorLoss(8, 6)
    # Fixed proxies: for about 3% of random draws the built-in's shift is below 0.05.
    proxies = torch.randn(8, 6, generator=seeded(4))
    ours.proxies.data.copy_(proxies)
    builtin.proxies.data.copy_(proxies)
    tup = keep_only(kept)
    with torch.no_grad():
        ours_mined, ours_subset = float(ours(x, labels, tup)), float(ours(x[kept], labels[kept]))
        pml_mined, pml_full = float(builtin(x, labels, tup)), float(builtin(x, labels))
        pml_subset = float(builtin(x[kept], labels[kept]))
    assert abs(ours_mined - ours_subset) < 1e-5
    # The built-in adds (weight - 1) = -1 to the logits of the removed samples: they still count.
    assert abs(pml_mined - pml_subset) > 0.05
    assert abs(pml_mined - pml_full) < abs(pml_subset - pml_full)


def test_proxy_whose_positives_are_all_removed_leaves_p_plus():
    x = torch.randn(6, 4, generator=seeded(0))
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss_fn = ProxyAnchorLoss(3, 4, collect_stats=True)
    kept = torch.tensor([0, 1, 4, 5])  # class 1 has no sample left
    loss = loss_fn(x, labels, keep_only(kept))
    assert loss_fn.num_pos_proxies == 2 and loss_fn.num_excluded_samples == 2
    ref_pos, ref_neg, ids = reference_terms(x[kept], loss_fn.proxies, labels[kept], 32.0, 0.1)
    assert ids.tolist() == [0, 2]
    expected = (ref_pos.mean() + ref_neg.mean()).detach()
    assert abs(float(loss.detach()) - float(expected)) < 1e-5 * float(expected)


@pytest.mark.parametrize("fused", [True, False])
def test_multi_similarity_miner_end_to_end(fused):
    x, labels = batch(b=32, c=6, d=8, seed=7)
    miner = miners.MultiSimilarityMiner(epsilon=0.1)
    loss_fn = ProxyAnchorLoss(6, 8, fused=fused)
    tup = miner(x, labels)
    assert len(tup) == 4 and len(tup[0]) > 0
    loss, gx, gp = grads(loss_fn, x, labels, indices_tuple=tup)
    weights = lmu.convert_to_weights(tup, labels, dtype=torch.float64)
    ref, ref_gx, ref_gp = reference_grads(
        x, loss_fn.proxies, labels, alpha=32.0, delta=0.1, weights=weights
    )
    assert torch.isfinite(loss)
    assert abs(float(loss) - float(ref)) < 1e-5 * float(ref)
    assert rel_err(gx, ref_gx) < 1e-4 and rel_err(gp, ref_gp) < 1e-4


def reference_term_vectors(loss_fn, x, labels):
    pos, neg, _ = reference_terms(x, loss_fn.proxies.detach(), labels, loss_fn.alpha, 0.1)
    return pos, neg


@pytest.mark.parametrize(
    "reducer, combine",
    [
        (reducers.MeanReducer(), lambda p, n: p.mean() + n.mean()),
        (reducers.SumReducer(), lambda p, n: p.sum() + n.sum()),
        (reducers.DivisorReducer(), lambda p, n: p.mean() + n.mean()),
        (reducers.AvgNonZeroReducer(), lambda p, n: p[p > 0].mean() + n[n > 0].mean()),
        (reducers.ThresholdReducer(high=13.0), lambda p, n: p[p < 13].mean() + n[n < 13].mean()),
    ],
    ids=["mean", "sum", "divisor", "avg_non_zero", "threshold"],
)
def test_reducers_apply_per_proxy(reducer, combine):
    x, labels = batch(b=20, c=30, d=5, seed=1)  # 30 classes: several proxies with tiny neg terms
    fused = ProxyAnchorLoss(30, 5, reducer=reducer, alpha=16.0)
    generic = ProxyAnchorLoss(30, 5, reducer=reducer, alpha=16.0, fused=False)
    generic.proxies.data.copy_(fused.proxies.data)
    got = grads(fused, x, labels)
    want = grads(generic, x, labels)
    pos, neg = reference_term_vectors(fused, x, labels)
    assert abs(float(got[0]) - float(combine(pos, neg))) < 1e-5 * float(combine(pos, neg))
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    # non-linear reducers take the exact recompute path of the fused kernel
    assert rel_err(got[1], want[1]) < 1e-4 and rel_err(got[2], want[2]) < 1e-4


def test_reducer_stats_still_see_the_per_proxy_terms():
    # A reducer that records stats gets the per-proxy terms ("element"), not the reduced parts.
    x, labels = batch(b=20, c=30, d=5, seed=2)
    fused = ProxyAnchorLoss(30, 5, reducer=reducers.MeanReducer(collect_stats=True))
    plain = ProxyAnchorLoss(30, 5)
    plain.proxies.data.copy_(fused.proxies.data)
    got, want = grads(fused, x, labels), grads(plain, x, labels)
    subs = fused.reducer.reducers  # PML copies the reducer once per sub-loss
    assert subs["pos_loss"].losses_size == len(torch.unique(labels))  # one term per P+ proxy
    assert subs["neg_loss"].losses_size == 30  # one term per proxy
    torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-7)
    assert rel_err(got[1], want[1]) < 1e-5 and rel_err(got[2], want[2]) < 1e-5


@pytest.mark.parametrize(
    "post", [lambda v: 3.0 * v, lambda v: v**2, lambda v: torch.exp(-v)], ids=["x3", "sq", "exp"]
)
def test_any_function_of_the_loss_backpropagates_exactly(post):
    x, labels = batch(seed=3)
    fused = ProxyAnchorLoss(8, 6)
    generic = ProxyAnchorLoss(8, 6, fused=False)
    generic.proxies.data.copy_(fused.proxies.data)
    got, want = grads(fused, x, labels, post=post), grads(generic, x, labels, post=post)
    assert rel_err(got[1], want[1]) < 1e-5 and rel_err(got[2], want[2]) < 1e-5


def test_backward_twice_with_retain_graph():
    x, labels = batch(seed=5)
    x.requires_grad_(True)
    loss_fn = ProxyAnchorLoss(8, 6)
    loss = loss_fn(x, labels)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()  # the eager gradients were consumed: the second pass recomputes them
    torch.testing.assert_close(x.grad, 2 * first, rtol=1e-5, atol=1e-7)


def test_regularizers_add_their_terms_as_in_pml():
    x, labels = batch(seed=6)
    emb_reg, weight_reg = regularizers.LpRegularizer(), regularizers.RegularFaceRegularizer()
    plain = ProxyAnchorLoss(8, 6)
    regularized = ProxyAnchorLoss(
        8,
        6,
        embedding_regularizer=emb_reg,
        embedding_reg_weight=0.5,
        weight_regularizer=weight_reg,
        weight_reg_weight=0.25,
    )
    regularized.proxies.data.copy_(plain.proxies.data)
    expected = plain(x, labels) + 0.5 * emb_reg(x) + 0.25 * weight_reg(plain.proxies)
    got = regularized(x, labels)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert "weight_reg_loss" in regularized.sub_loss_names()
    assert "embedding_reg_loss" in regularized.sub_loss_names()
    got.backward()
    assert torch.isfinite(regularized.proxies.grad).all()


def test_regularizers_on_empty_batch_still_count():
    weight_reg = regularizers.LpRegularizer()
    loss_fn = ProxyAnchorLoss(4, 3, weight_regularizer=weight_reg)
    loss = loss_fn(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    torch.testing.assert_close(loss, weight_reg(loss_fn.proxies))
