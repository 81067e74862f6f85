"""The package on a CUDA GPU against the CPU: the Proxy-Anchor loss in fp32 / bf16 / fp16 against
the float64 reference, Recall@K equal to the CPU's, the class-sharded loss, and mixed-precision
training steps (autocast bf16; fp16 with a GradScaler).

Every test here is marked ``cuda``: skipped (and counted as skipped) without a GPU;
``reproduce/gpu_check.sh`` runs them with ``pytest -m cuda``. The checks are written for any
device (``DEVICE``) so that they can be tried on the CPU with autocast as well.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from pml_proxy_anchor.distributed import ShardedProxyAnchorLoss
from pml_proxy_anchor.evaluation import RecallAtKCalculator, compute_recall_at_k
from pml_proxy_anchor.losses import ProxyAnchorLoss

pytestmark = pytest.mark.cuda
TESTS = Path(__file__).resolve().parents[1]
DEVICE = "cuda"


def _load(name: str, relative: str) -> ModuleType:
    """A helper module of another test folder, by path (its folder is not on ``sys.path``)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pa_reference = _load("pa_reference", "losses/pa_reference.py")
dist_workers = _load("dist_workers", "distributed/dist_workers.py")

# ||computed - float64 reference|| / ||reference||, by quantity and dtype. On the very embeddings
# the loss saw ("same_"): the loss computes in float32 with autocast off whatever the input dtype,
# so dl/dP (float32, like the proxies) meets float32's bound, while the loss value and dl/dx come
# back in the embeddings' dtype, rounded to 8 significant bits in bf16 and 11 in fp16. Against the
# float64 embeddings before any rounding ("rounded_"), the forward pass under autocast shows too.
FP32, BF16, FP16 = torch.float32, torch.bfloat16, torch.float16
TOL = {
    "same_loss": {FP32: 1e-5, BF16: 8e-3, FP16: 1e-3},
    "same_x_grad": {FP32: 1e-4, BF16: 1e-2, FP16: 2e-3},
    "same_proxy_grad": {FP32: 1e-4, BF16: 1e-4, FP16: 1e-4},
}
ROUNDING_TOL = {FP32: 1e-4, BF16: 5e-2, FP16: 1e-2}
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(autouse=True)
def highest_matmul_precision() -> Iterator[None]:
    """float32 matrix products in full float32 (no TF32) for the parity checks, restored after."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


# ---------------------------------------------------------------- the loss
def loss_parity(device: str, dtype: torch.dtype, fused: bool, alpha: float) -> dict[str, float]:
    """Relative errors of loss, dl/dx and dl/dP on ``device``: the embeddings come out of a Linear
    layer under autocast to ``dtype`` (plain float32 for float32), as in mixed-precision
    training; the reference is float64 on the CPU, on the very embeddings the loss saw
    (``same_*``) and on the float32 embeddings before rounding (``rounded_*``)."""
    gen = pa_reference.seeded(7)
    inputs = torch.randn(96, 24, generator=gen)
    labels = torch.randint(0, 20, (96,), generator=gen)
    head = torch.nn.Linear(24, 32)
    with torch.no_grad():
        head.weight.copy_(torch.randn(32, 24, generator=gen) / 24**0.5)
        head.bias.zero_()
    loss_fn = ProxyAnchorLoss(20, 32, alpha=alpha, fused=fused)
    with torch.no_grad():
        loss_fn.proxies.copy_(torch.randn(20, 32, generator=gen))
    head, loss_fn = head.to(device), loss_fn.to(device)
    autocast = dtype != torch.float32
    with torch.autocast(device, dtype=dtype if autocast else torch.bfloat16, enabled=autocast):
        emb = head(inputs.to(device))
        assert emb.dtype == dtype
        emb.retain_grad()
        loss = loss_fn(emb, labels.to(device))
    loss.backward()
    assert loss.dtype == dtype and loss_fn.proxies.dtype == torch.float32  # PML's convention
    proxies = loss_fn.proxies.detach().cpu()
    same = pa_reference.reference_grads(emb.detach().cpu(), proxies, labels, alpha=alpha)
    exact = head.cpu().double()(inputs.double())
    rounded = pa_reference.reference_grads(exact, proxies, labels, alpha=alpha)
    got = (loss.detach().cpu(), emb.grad.cpu(), loss_fn.proxies.grad.cpu())
    errors = {}
    for prefix, ref in (("same", same), ("rounded", rounded)):
        for name, a, b in zip(("loss", "x_grad", "proxy_grad"), got, ref):
            errors[f"{prefix}_{name}"] = pa_reference.rel_err(a, b)
    return errors


@pytest.mark.parametrize("alpha", [32.0, 128.0])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "pml-path"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
def test_loss_matches_the_float64_reference(dtype: torch.dtype, fused: bool, alpha: float) -> None:
    errors = loss_parity(DEVICE, dtype, fused, alpha)
    for name, err in errors.items():
        tol = TOL[name][dtype] if name in TOL else ROUNDING_TOL[dtype]
        assert err < tol, (name, err, errors)


# ---------------------------------------------------------------- Recall@K
def recall_data(n: int = 300, d: int = 16, classes: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Clustered float32 embeddings with exact duplicates (ties decided by the index rule)."""
    rng = np.random.default_rng(3)
    labels = np.arange(n) % classes
    centres = rng.standard_normal((classes, d))
    x = (centres[labels] + 0.8 * rng.standard_normal((n, d))).astype(np.float32)
    x[1::7] = x[0::7][: len(x[1::7])]  # duplicates of other classes' rows: ties
    return x, labels


@pytest.mark.parametrize("block_size", [None, 7])
def test_recall_equals_the_cpu(block_size: int | None) -> None:
    x, y = recall_data()
    ks = (1, 2, 4, 8, 16, 32)
    cpu = compute_recall_at_k(x, y, k_values=ks, device="cpu", block_size=block_size)
    assert compute_recall_at_k(x, y, k_values=ks, device=DEVICE, block_size=block_size) == cpu
    q, g = slice(0, 120), slice(120, None)
    cpu_qg = compute_recall_at_k(x[q], y[q], x[g], y[g], k_values=ks, device="cpu")
    assert compute_recall_at_k(x[q], y[q], x[g], y[g], k_values=ks, device=DEVICE) == cpu_qg
    calc = RecallAtKCalculator(k_values=ks, device=torch.device(DEVICE))
    xt, yt = torch.from_numpy(x).to(DEVICE), torch.from_numpy(y).to(DEVICE)
    assert calc.get_accuracy(xt, yt) == cpu


# ---------------------------------------------------------------- the sharded loss
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_sharded_loss_in_one_process_matches_the_reference(dtype: torch.dtype) -> None:
    batch = dist_workers.global_batch(3)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    x_cpu = batch["inputs"] @ batch["weight"].T
    loss = ShardedProxyAnchorLoss.from_loss(dist_workers.make_loss(batch)).to(DEVICE, dtype)
    x = x_cpu.to(DEVICE, dtype, copy=True).requires_grad_(True)
    value = loss(x, batch["labels"].to(DEVICE))
    value.backward()
    x_ref = x_cpu.detach().clone().requires_grad_(True)
    p_ref = batch["proxies"].clone().requires_grad_(True)
    expected = dist_workers.reference_loss(x_ref, batch["labels"], p_ref)
    expected.backward()
    assert value.device.type == DEVICE and loss.proxies.device.type == DEVICE
    for got, ref in ((value, expected), (x.grad, x_ref.grad), (loss.proxies.grad, p_ref.grad)):
        torch.testing.assert_close(got.cpu().double(), ref, atol=tol, rtol=tol)


# ---------------------------------------------------------------- mixed-precision training
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(24, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))


def train_steps(device: str, dtype: torch.dtype, steps: int = 10) -> dict[str, object]:
    """``steps`` AdamW steps of a small model + the loss under autocast to ``dtype``; float16
    with ``torch.amp.GradScaler`` (bfloat16 needs none). The scaler starts at 2^16, which
    overflows the float16 gradients of the first steps: it skips those and halves its scale."""
    gen = pa_reference.seeded(11)
    inputs = torch.randn(64, 24, generator=gen).to(device)
    labels = torch.randint(0, 10, (64,), generator=gen).to(device)
    model = small_model().to(device)
    loss_fn = ProxyAnchorLoss(10, 16).to(device)
    before = loss_fn.proxies.detach().clone()
    params = [*model.parameters(), *loss_fn.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype):
            loss = loss_fn(model(inputs), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
    with torch.no_grad():  # the trained state, once in fp32 and once under autocast
        fp32_loss = float(loss_fn(model(inputs), labels))
        with torch.autocast(device, dtype=dtype):
            autocast_loss = float(loss_fn(model(inputs), labels))
    return {
        "losses": losses,
        "autocast_vs_fp32": abs(autocast_loss - fp32_loss) / abs(fp32_loss),
        "proxies_dtype": loss_fn.proxies.dtype,
        "proxies_moved": float((loss_fn.proxies.detach() - before).abs().max()),
        "grads_finite": all(bool(torch.isfinite(p.grad).all()) for p in params),
        "scale": scaler.get_scale() if scaler.is_enabled() else None,
    }


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16-scaler"])
def test_mixed_precision_training_step(dtype: torch.dtype) -> None:
    got = train_steps(DEVICE, dtype)
    losses = got["losses"]
    assert all(np.isfinite(losses)) and got["grads_finite"]
    assert got["proxies_dtype"] == torch.float32  # master proxies stay float32
    assert got["proxies_moved"] > 0  # the optimizer stepped (a scaler skips inf/NaN steps only)
    assert losses[-1] < 0.9 * losses[0]  # it trains
    assert got["autocast_vs_fp32"] < ROUNDING_TOL[dtype]
    if dtype == torch.float16:
        assert got["scale"] is not None and 0 < got["scale"] < float("inf")
