"""Parity of the Proxy-Anchor loss with an independent float64 reference (docs/paper.md
section 1), with PML's built-in, between the fused and the generic path, and gradcheck of the
fused kernel."""

from __future__ import annotations

import pytest
import torch
from pa_reference import reference_grads, reference_terms, rel_err, seeded
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.distances import DotProductSimilarity, LpDistance

from pml_proxy_anchor.losses import (
    KernelConfig,
    ProxyAnchorLoss,
    fused_proxy_anchor_sums,
    fused_proxy_anchor_terms,
)
from pml_proxy_anchor.losses.fused import _fixed_shift_is_safe, auto_chunk_size

# (batch, classes, dim, how labels are drawn)
SHAPES = [
    (16, 10, 8, "random"),  # some classes absent
    (24, 40, 6, "few"),  # most classes absent, many repeated labels
    (9, 3, 5, "all"),  # every class present
    (7, 1, 4, "one"),  # a single class: the negative sums are empty
    (1, 5, 3, "random"),  # a single sample
]
ALPHAS = [16.0, 32.0, 64.0, 128.0]


def make_batch(b: int, c: int, d: int, how: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g)
    if how == "few":
        labels = torch.randint(0, 3, (b,), generator=g) * 7 % c
    elif how == "all":
        labels = torch.arange(b) % c
    elif how == "one":
        labels = torch.zeros(b, dtype=torch.long)
    else:
        labels = torch.randint(0, c, (b,), generator=g)
    return x, labels


def loss_and_grads(loss_fn: ProxyAnchorLoss, x: torch.Tensor, labels: torch.Tensor, **kw: object):
    x = x.detach().clone().requires_grad_(True)
    loss_fn.proxies.grad = None
    loss = loss_fn(x, labels, **kw)
    loss.backward()
    return loss.detach(), x.grad, loss_fn.proxies.grad.clone()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}x{s[2]}-{s[3]}")
def test_float32_matches_float64_reference(shape, alpha, fused):
    b, c, d, how = shape
    x, labels = make_batch(b, c, d, how, seed=b * 31 + c)
    loss_fn = ProxyAnchorLoss(c, d, margin=0.1, alpha=alpha, fused=fused, chunk_size=3)
    loss, gx, gp = loss_and_grads(loss_fn, x, labels)
    ref, ref_gx, ref_gp = reference_grads(x, loss_fn.proxies, labels, alpha=alpha, delta=0.1)
    assert loss.dtype == torch.float32
    assert abs(float(loss) - float(ref)) <= 1e-5 * max(1.0, abs(float(ref)))
    assert rel_err(gx, ref_gx) < 1e-4
    assert rel_err(gp, ref_gp) < 1e-4


@pytest.mark.parametrize("alpha", [32.0, 128.0])
def test_float64_inputs_are_exact(alpha):
    x, labels = make_batch(20, 12, 7, "random", seed=3)
    loss_fn = ProxyAnchorLoss(12, 7, alpha=alpha, chunk_size=5).double()
    loss, gx, gp = loss_and_grads(loss_fn, x.double(), labels)
    ref, ref_gx, ref_gp = reference_grads(x, loss_fn.proxies, labels, alpha=alpha, delta=0.1)
    assert loss.dtype == torch.float64
    assert abs(float(loss) - float(ref)) < 1e-10
    assert rel_err(gx, ref_gx) < 1e-10 and rel_err(gp, ref_gp) < 1e-10


def test_per_proxy_terms_match_reference():
    x, labels = make_batch(15, 9, 6, "random", seed=11)
    proxies = torch.randn(9, 6, generator=seeded(12))
    cfg = KernelConfig(alpha=32.0, margin=0.1, normalize=True, chunk_size=4)
    pos, neg = fused_proxy_anchor_terms(x.double(), proxies.double(), labels, None, cfg)
    ref_pos, ref_neg, ref_ids = reference_terms(x, proxies, labels, 32.0, 0.1)
    absent = torch.ones(9, dtype=torch.bool)
    absent[ref_ids] = False
    torch.testing.assert_close(pos[ref_ids], ref_pos, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(neg, ref_neg, rtol=1e-12, atol=1e-12)
    assert torch.all(pos[absent] == 0)


@pytest.mark.parametrize("kind", ["dot", "neg_l2"])
def test_other_distances_match_reference(kind):
    x, labels = make_batch(14, 8, 5, "random", seed=5)
    x = x * 0.3  # keep dot products moderate
    distance = DotProductSimilarity(normalize_embeddings=False) if kind == "dot" else LpDistance()
    loss_fn = ProxyAnchorLoss(8, 5, alpha=16.0, distance=distance)
    with torch.no_grad():
        loss_fn.proxies.mul_(0.3 / loss_fn.proxies.norm(dim=1, keepdim=True))
    loss, gx, gp = loss_and_grads(loss_fn, x, labels)
    ref, ref_gx, ref_gp = reference_grads(
        x, loss_fn.proxies, labels, alpha=16.0, delta=0.1, kind=kind
    )
    assert abs(float(loss) - float(ref)) <= 1e-5 * abs(float(ref))
    assert rel_err(gx, ref_gx) < 1e-4 and rel_err(gp, ref_gp) < 1e-4


@pytest.mark.parametrize("use_prediction", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_fused_function_gradcheck(normalize, use_prediction):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 2, 3, 2, 0])
    log_w = torch.tensor([0.0, -0.7, 0.0, -float("inf"), -0.2, 0.0], dtype=torch.float64)
    cfg = KernelConfig(alpha=8.0, margin=0.1, normalize=normalize, chunk_size=2)
    pos_w = torch.tensor([0.5, 0.0, 0.5, 0.0, 0.0], dtype=torch.float64)
    neg_w = torch.full((5,), 0.2, dtype=torch.float64)

    def terms(a, b):
        if use_prediction:
            return fused_proxy_anchor_terms(a, b, labels, log_w, cfg, pos_w, neg_w)
        return fused_proxy_anchor_terms(a, b, labels, log_w, cfg)

    assert torch.autograd.gradcheck(terms, (x, p), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("normalize", [True, False])
def test_fused_sums_gradcheck(normalize):
    # gradcheck backpropagates (1, 0) and (0, 1): unequal upstream scalars, the recompute path
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 2, 0, 4])
    log_w = torch.tensor([0.0, -0.7, 0.0, -float("inf"), -0.2, 0.0, 0.0], dtype=torch.float64)
    cfg = KernelConfig(alpha=8.0, margin=0.1, normalize=normalize, chunk_size=2)
    pos_w = torch.tensor([0.25, 0.25, 0.25, 0.0, 0.25], dtype=torch.float64)
    neg_w = torch.full((5,), 0.2, dtype=torch.float64)

    def sums(a, b):
        return fused_proxy_anchor_sums(a, b, labels, log_w, cfg, pos_w, neg_w)

    assert torch.autograd.gradcheck(sums, (x, p), eps=1e-6, atol=1e-7)


def test_fused_sums_with_equal_and_unequal_upstream_weights():
    x, labels = make_batch(12, 9, 5, "random", seed=21)
    proxies = torch.randn(9, 5, generator=seeded(22))
    cfg = KernelConfig(alpha=32.0, margin=0.1, normalize=True, chunk_size=4)
    present = torch.zeros(9)
    present[labels] = 1.0
    pos_w, neg_w = present / present.sum(), torch.full((9,), 1 / 9)
    ref_pos, ref_neg, ref_ids = reference_terms(x, proxies, labels, 32.0, 0.1)
    for a, b in ((1.0, 1.0), (2.5, 2.5), (2.0, -0.5)):  # eager gradients, scaled, recomputed
        xg, pg = x.clone().requires_grad_(True), proxies.clone().requires_grad_(True)
        pos, neg = fused_proxy_anchor_sums(xg, pg, labels, None, cfg, pos_w, neg_w)
        (a * pos + b * neg).backward()
        x64, p64 = x.double().requires_grad_(True), proxies.double().requires_grad_(True)
        rp, rn, _ = reference_terms(x64, p64, labels, 32.0, 0.1)
        (a * rp.mean() + b * rn.mean()).backward()
        assert abs(float(pos.detach()) - float(ref_pos.mean())) < 1e-5 * float(ref_pos.mean())
        assert abs(float(neg.detach()) - float(ref_neg.mean())) < 1e-5 * float(ref_neg.mean())
        assert rel_err(xg.grad, x64.grad) < 1e-4 and rel_err(pg.grad, p64.grad) < 1e-4


@pytest.mark.parametrize("seed", range(4))
def test_fused_equals_generic(seed):
    g = torch.Generator().manual_seed(seed)
    b, c, d = 10 + 7 * seed, 5 + 11 * seed, 3 + seed
    x = torch.randn(b, d, generator=g)
    labels = torch.randint(0, c, (b,), generator=g)
    fused = ProxyAnchorLoss(c, d, alpha=32.0, fused=True, chunk_size=1 + seed * 3)
    generic = ProxyAnchorLoss(c, d, alpha=32.0, fused=False)
    generic.proxies.data.copy_(fused.proxies.data)
    a = loss_and_grads(fused, x, labels)
    r = loss_and_grads(generic, x, labels)
    torch.testing.assert_close(a[0], r[0], rtol=1e-5, atol=1e-6)
    assert rel_err(a[1], r[1]) < 1e-4 and rel_err(a[2], r[2]) < 1e-4


def test_chunk_size_does_not_change_result():
    x, labels = make_batch(12, 17, 6, "random", seed=8)
    results = []
    for chunk in (1, 4, 17, 100):
        loss_fn = ProxyAnchorLoss(17, 6, chunk_size=chunk)
        loss_fn.proxies.data = torch.randn(17, 6, generator=seeded(0))
        results.append(loss_and_grads(loss_fn, x, labels))
    # Chunks change only the float32 summation order: gradients (of magnitude ~1) agree to a
    # few float32 ulps.
    for res in results[1:]:
        for got, want in zip(res, results[0]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_same_value_as_pml_builtin_without_miner(fused):
    x, labels = make_batch(32, 20, 16, "random", seed=2)
    ours = ProxyAnchorLoss(20, 16, fused=fused)
    builtin = pml_losses.ProxyAnchorLoss(20, 16)
    builtin.proxies.data.copy_(ours.proxies.data)
    a = loss_and_grads(ours, x, labels)
    x2 = x.clone().requires_grad_(True)
    b = builtin(x2, labels)
    b.backward()
    torch.testing.assert_close(a[0], b.detach(), rtol=1e-5, atol=1e-6)
    assert rel_err(a[1], x2.grad) < 1e-4
    assert rel_err(a[2], builtin.proxies.grad) < 1e-4


def test_get_logits_are_cosine_similarities():
    x, _ = make_batch(5, 4, 3, "random", seed=1)
    loss_fn = ProxyAnchorLoss(4, 3)
    logits = loss_fn.get_logits(x)
    expected = torch.nn.functional.normalize(x) @ torch.nn.functional.normalize(loss_fn.proxies).T
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-6)


def test_proxies_init_and_records():
    torch.manual_seed(0)
    loss_fn = ProxyAnchorLoss(2000, 64, margin=0.2, alpha=16)
    # Kaiming normal, fan_out mode: fan_out of a (C, D) weight is C, std = sqrt(2 / C).
    assert loss_fn.proxies.shape == (2000, 64)
    proxies = loss_fn.proxies.detach()
    std = (2 / 2000) ** 0.5
    assert abs(float(proxies.std()) - std) < 0.05 * std
    assert abs(float(proxies.mean())) < 0.05 * std
    for name in ("num_classes", "alpha", "margin", "embedding_size"):
        assert name in loss_fn._record_these
    assert (loss_fn.num_classes, loss_fn.alpha, loss_fn.margin) == (2000, 16.0, 0.2)


def test_pos_proxy_stat_is_recorded():
    loss_fn = ProxyAnchorLoss(10, 4, collect_stats=True)
    labels = torch.tensor([1, 1, 3, 7, 3])
    loss_fn(torch.randn(5, 4, generator=seeded(0)), labels)
    assert loss_fn.num_pos_proxies == 3
    assert loss_fn.num_excluded_samples == 0


@pytest.mark.parametrize("alpha", [40.0, 40.5, 128.0])
def test_both_exponent_paths_at_extreme_cosines(alpha):
    # alpha <= 40 skips the per-proxy max (exp(alpha * cos) is safe in float32); above it the
    # max is subtracted. Both must hold at cosines of exactly +1 and -1.
    g = torch.Generator().manual_seed(4)
    proxies = torch.randn(6, 5, generator=g)
    x = torch.cat([proxies[:3] * 2.0, -proxies[3:] * 0.5, torch.randn(4, 5, generator=g)])
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 4, 5, 0])
    loss_fn = ProxyAnchorLoss(6, 5, alpha=alpha, chunk_size=4)
    loss_fn.proxies.data.copy_(proxies)
    assert _fixed_shift_is_safe(KernelConfig(alpha, 0.1, True, 4), alpha, None) == (alpha <= 40)
    loss, gx, gp = loss_and_grads(loss_fn, x, labels)
    ref, ref_gx, ref_gp = reference_grads(x, proxies, labels, alpha=alpha, delta=0.1)
    assert abs(float(loss) - float(ref)) <= 1e-5 * abs(float(ref))
    assert rel_err(gx, ref_gx) < 1e-4 and rel_err(gp, ref_gp) < 1e-4


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_sample_weights_match_reference_below_and_above_one(scale):
    # Weights above 1 take the max-subtracted path; at most 1 (PML's miners) the fixed one.
    x, labels = make_batch(16, 7, 5, "random", seed=9)
    proxies = torch.randn(7, 5, generator=seeded(10))
    w = torch.rand(16, generator=seeded(1)) * scale
    w[3] = 0.0  # removed
    cfg = KernelConfig(alpha=32.0, margin=0.1, normalize=True, chunk_size=3)
    assert _fixed_shift_is_safe(cfg, 32.0, w) == (scale <= 1)
    pos, neg = fused_proxy_anchor_terms(x, proxies, labels, w.log(), cfg)
    ref_pos, ref_neg, ref_ids = reference_terms(x, proxies, labels, 32.0, 0.1, weights=w)
    torch.testing.assert_close(pos[ref_ids].double(), ref_pos, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(neg.double(), ref_neg, rtol=1e-5, atol=1e-6)


def test_dot_product_never_skips_the_max():
    assert not _fixed_shift_is_safe(KernelConfig(16.0, 0.1, False, 8), 16.0, None)


@pytest.mark.parametrize("batch", [1, 180, 1024, 100_000])
def test_auto_chunk_size_bounds_the_workspaces(batch):
    budget = 8 * 2**20
    classes = 1_000_000
    rows = auto_chunk_size(batch, classes, budget)
    assert rows >= 64  # never degenerate
    if rows > 64:
        assert 2 * 4 * batch * rows <= budget  # the two float32 (batch, rows) workspaces
    if 64 < rows < classes:
        assert 2 * 4 * batch * (rows + 1) > budget  # and as large as the budget allows
    assert auto_chunk_size(batch, 10, budget) == 10  # never more rows than classes


@pytest.mark.parametrize("chunk", [2, 100])
def test_label_c_means_own_proxy_elsewhere(chunk):
    # Label C (one past the last proxy): the sample's own proxy is not here (a class shard), so
    # it is a negative of every proxy; the terms of proxies 0..C-1 are those of the full set.
    x, labels = make_batch(12, 7, 5, "random", seed=13)
    labels[[1, 4, 9]] = 6  # class 6's proxy lives "on another rank"
    full = torch.randn(7, 5, dtype=torch.float64, generator=seeded(14))
    local = full[:6]
    cfg = KernelConfig(alpha=32.0, margin=0.1, normalize=True, chunk_size=chunk)
    pos, neg = fused_proxy_anchor_terms(x.double(), local, labels, None, cfg)
    ref_pos, ref_neg, ref_ids = reference_terms(x, full, labels, 32.0, 0.1)
    local_ids = ref_ids[ref_ids < 6]
    torch.testing.assert_close(pos[local_ids], ref_pos[ref_ids < 6], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(neg, ref_neg[:6], rtol=1e-12, atol=1e-12)

    def sums(a, b):
        w = torch.full((6,), 0.2, dtype=torch.float64)
        return fused_proxy_anchor_sums(a, b, labels, None, cfg, w, w)

    inputs = (x.double().requires_grad_(True), local.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(sums, inputs, eps=1e-6, atol=1e-7)
