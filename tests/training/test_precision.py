"""``train.precision`` (fp32, tf32, bf16, fp16), ``train.channels_last``, ``train.compile`` and
``train.num_workers=auto``.

Units of :class:`~pml_proxy_anchor.training.precision.Precision` (autocast per precision, TF32
switches set explicitly and restored, a GradScaler only for fp16 on CUDA, its state saved and
restored, bad names refused with a did-you-mean, bf16 refused on a GPU without it: CUDA faked
with monkeypatch, no GPU needed); then real runs on the fixture on the CPU: bf16 trains its
forward pass in bfloat16 and evaluates in float32, with proxies and optimizer state float32; a
bf16 run stopped and resumed ends where an uninterrupted one ends; channels_last and compile
(with the eager backend) train. The tests marked ``cuda`` run fp16 and bf16 on a real GPU.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pml_proxy_anchor.data.workers import default_num_workers
from pml_proxy_anchor.distributed import DistributedContext
from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.training import (
    CompileError,
    ConfigMismatchError,
    ConfigValueError,
    NonFiniteLossError,
    Precision,
    PrecisionNotSupportedError,
    builders,
    checkpoint,
    load_config,
    run,
)
from pml_proxy_anchor.training.device import resolve_device
from pml_proxy_anchor.training.precision import (
    MIN_LOSS_SCALE,
    PRECISIONS,
    check_precision,
    tf32_enabled,
)
from pml_proxy_anchor.training.run import TrainingRun, build_components
from pml_proxy_anchor.training.speed import CompiledForward, channels_last_batch
from tests.training.fixture_run import fixture_overrides, make_data

RECALLS = ("recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8")
run_module = importlib.import_module(
    "pml_proxy_anchor.training.run"
)  # `training.run` is a function


@pytest.fixture
def tf32_flags() -> Iterator[None]:
    """Leave the process's TF32 switches as they were, whatever a test does."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, bf16: bool, name: str = "Tesla V100-SXM2-16GB"):
    """Make this process believe it has one CUDA GPU (for the checks only: nothing runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))


# ---------------------------------------------------------------- Precision units
@pytest.mark.usefixtures("tf32_flags")
@pytest.mark.parametrize(("name", "inside"), [("fp32", False), ("tf32", True), ("bf16", False)])
def test_tf32_switches_are_set_explicitly_and_restored(name: str, inside: bool) -> None:
    for before in ((True, True), (False, True), (False, False)):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
        with Precision(name, "cpu").math_mode():
            assert _flags() == (inside, inside)
        assert _flags() == before
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (False, True)
    with pytest.raises(RuntimeError, match="boom"), tf32_enabled(True):
        raise RuntimeError("boom")
    assert _flags() == (False, True)  # restored on an error too


@pytest.mark.parametrize(
    ("name", "dtype"), [("fp32", torch.float32), ("tf32", torch.float32), ("bf16", torch.bfloat16)]
)
def test_autocast_computes_in_the_precision_on_the_cpu(name: str, dtype: torch.dtype) -> None:
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    precision = Precision(name, "cpu")
    with precision.autocast():
        assert torch.is_autocast_enabled("cpu") is (name == "bf16")
        out = layer(x)
    assert out.dtype == dtype
    assert layer.weight.dtype == torch.float32  # autocast computes in bf16, stores float32
    assert precision.scaler is None and precision.state_dict() == {}
    assert precision.loss_scale_collapsed() is None


def test_fp16_is_refused_off_cuda_with_the_fix() -> None:
    with pytest.raises(PrecisionNotSupportedError, match=r"fp16 needs a CUDA GPU.*bf16.*fp32"):
        Precision("fp16", "cpu")
    assert issubclass(PrecisionNotSupportedError, UserError)


def test_scaler_only_for_fp16_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, bf16=True)
    device = resolve_device("cuda")
    fp16 = Precision("fp16", device)
    assert isinstance(fp16.scaler, torch.amp.GradScaler) and fp16.scaler.is_enabled()
    assert fp16.dtype == torch.float16
    for name in ("fp32", "tf32", "bf16"):
        assert Precision(name, device).scaler is None


def test_the_loss_scale_is_saved_restored_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, bf16=True)
    fp16 = Precision("fp16", "cuda")
    state = fp16.state_dict()
    assert state["scale"] == 2.0**16 and state["_growth_tracker"] == 0
    resumed = Precision("fp16", "cuda")
    resumed.load_state_dict({**state, "scale": 512.0, "_growth_tracker": 7})
    assert resumed.scaler.get_scale() == 512.0
    assert resumed.state_dict()["_growth_tracker"] == 7
    assert resumed.loss_scale_collapsed() is None
    old = Precision("fp16", "cuda")
    old.load_state_dict(None)  # a checkpoint written before the scaler was saved
    old.load_state_dict({})
    assert old.scaler.get_scale() == 2.0**16
    collapsed = Precision("fp16", "cuda")
    collapsed.load_state_dict({**state, "scale": MIN_LOSS_SCALE / 4})
    assert collapsed.loss_scale_collapsed() == MIN_LOSS_SCALE / 4


def test_bf16_on_a_gpu_without_bf16_names_the_gpu_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_gpu(monkeypatch, bf16=False)
    with pytest.raises(PrecisionNotSupportedError) as info:
        Precision("bf16", resolve_device("cuda"))
    message = str(info.value)
    assert "Tesla V100-SXM2-16GB" in message and "compute capability 7.0" in message
    assert "train.precision=fp16" in message and "fp32" in message
    Precision("fp16", "cuda")  # the fix works on that GPU
    Precision("fp32", "cuda")


def test_bf16_on_a_gpu_without_bf16_stops_the_run_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``build_components`` checks the precision first (before data, models and the run
    directory's files): its device is the run's (a fake GPU here)."""
    cfg = load_config(
        fixture_overrides(tmp_path / "no-data", tmp_path / "run", **{"train.precision": "bf16"})
    )
    _fake_gpu(monkeypatch, bf16=False)
    ctx = DistributedContext(0, 1, 0, resolve_device("cuda"), None)
    with pytest.raises(PrecisionNotSupportedError, match="Tesla V100"):
        build_components(cfg, ctx)  # the data root does not exist: not read yet


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fp8", r"'fp8' is not supported; expected one of fp32, tf32, bf16, fp16.*Fix: "),
        ("bf61", r"Did you mean bf16\?.*Fix: train\.precision=bf16"),
        ("FP16", r"Did you mean fp16.*Fix: train\.precision=fp16"),
        ("float32", r"expected one of fp32, tf32, bf16, fp16"),
        (16, r"must be a name, one of fp32, tf32, bf16, fp16"),
    ],
)
def test_bad_precision_names_are_refused(value: Any, message: str) -> None:
    with pytest.raises(ConfigValueError, match=message):
        check_precision(value)
    with pytest.raises(ConfigValueError, match=message):
        Precision(value, "cpu")


def test_config_keys_defaults_and_checks_at_load() -> None:
    cfg = load_config("omniglot")
    assert cfg.train.precision == "fp32"  # the paper's
    assert cfg.train.channels_last is False and cfg.train.compile is False
    assert set(PRECISIONS) == {"fp32", "tf32", "bf16", "fp16"}
    for name in PRECISIONS:
        assert load_config("omniglot", [f"train.precision={name}"]).train.precision == name
    with pytest.raises(ConfigValueError, match=r"train\.precision='fp8' is not supported"):
        load_config("omniglot", ["train.precision=fp8"])
    with pytest.raises(ConfigValueError, match=r"Did you mean bf16"):
        load_config("omniglot", ["train.precision=bf61"])
    for key in ("channels_last", "compile"):
        with pytest.raises(ConfigValueError, match=rf"train\.{key}='yes' must be true or false"):
            load_config("omniglot", [f"train.{key}=yes"])
    assert load_config("omniglot", ["train.num_workers=auto"]).train.num_workers == "auto"
    with pytest.raises(ConfigValueError, match=r"num_workers='atuo' must be an integer or auto"):
        load_config("omniglot", ["train.num_workers=atuo"])


def test_num_workers_auto_is_resolved_for_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config("omniglot", ["train.num_workers=auto"])
    cpu = torch.device("cpu")
    assert builders.resolve_num_workers(cfg, cpu) == default_num_workers(gpus=0)
    assert builders.resolve_num_workers(cfg, torch.device("cuda")) == default_num_workers(gpus=1)
    monkeypatch.setattr(builders.distributed, "get_world_size", lambda: 4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert builders.resolve_num_workers(cfg, cpu) == default_num_workers(gpus=4)
    assert builders.resolve_num_workers(load_config("omniglot"), cpu) == 0  # set to 0 there


def test_the_train_loader_takes_loader_kwargs_without_persistent_workers(tmp_path: Path) -> None:
    """Workers restart every epoch from that epoch's seeds, so a resume replays the epoch."""
    data = make_data(tmp_path / "data")
    cfg = load_config(fixture_overrides(data, tmp_path / "run", **{"train.num_workers": 1}))
    trainer = TrainingRun(cfg, tmp_path / "run").trainer
    trainer.initialize_dataloader()
    loader = trainer.dataloader
    assert (loader.num_workers, loader.pin_memory, loader.prefetch_factor) == (1, False, 2)
    assert loader.persistent_workers is False


# ---------------------------------------------------------------- speed switches
def test_channels_last_batch_changes_layout_not_values() -> None:
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    y = channels_last_batch(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, y)
    flat = torch.ones(2, 3)
    assert channels_last_batch(flat) is flat


def test_compiled_forward_computes_the_module_and_names_the_fix_on_failure() -> None:
    layer = nn.Linear(4, 2)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(CompiledForward(layer, backend="eager")(x), layer(x))

    def broken_backend(graph: Any, example_inputs: Any) -> Any:
        raise RuntimeError("no C++ compiler here")

    with pytest.raises(
        CompileError,
        match=r"torch\.compile failed.*no C\+\+ compiler.*"
        r"Fix: train\.compile=false",
    ):
        CompiledForward(layer, backend=broken_backend)(x)


# ---------------------------------------------------------------- real runs on the CPU
class DtypeRecorder:
    """Output dtypes of every Conv2d call, split by grad mode (training vs evaluation), and the
    TF32 switches seen during the calls."""

    def __init__(self) -> None:
        self.train: set[torch.dtype] = set()
        self.eval: set[torch.dtype] = set()
        self.flags: set[tuple[bool, bool]] = set()
        self.channels_last_inputs: set[bool] = set()

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(module, nn.Conv2d):
            (self.train if torch.is_grad_enabled() else self.eval).add(output.dtype)
            self.flags.add(_flags())
            if torch.is_grad_enabled():
                self.channels_last_inputs.add(
                    inputs[0].is_contiguous(memory_format=torch.channels_last)
                )


def _recorded_run(cfg: Any) -> tuple[dict[str, Any], DtypeRecorder]:
    recorder = DtypeRecorder()
    handle = nn.modules.module.register_module_forward_hook(recorder)
    try:
        return run(cfg), recorder
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def bf16_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("bf16")
    data = make_data(base / "data")
    saved = _flags()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (True, True)
    try:
        bf16 = {"train.precision": "bf16"}
        full, recorder = _recorded_run(load_config(fixture_overrides(data, base / "full", **bf16)))
        flags_after = _flags()
        stopped = run(
            load_config(
                fixture_overrides(data, base / "stopped", **bf16, **{"train.stop_after_epoch": 1})
            )
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return {
        "base": base,
        "data": data,
        "full": full,
        "stopped": stopped,
        "recorder": recorder,
        "flags_after": flags_after,
    }


def test_bf16_run_trains_in_bf16_and_evaluates_in_float32(bf16_runs: dict[str, Any]) -> None:
    results, recorder = bf16_runs["full"], bf16_runs["recorder"]
    assert results["status"] == "finished" and results["epochs_completed"] == 2
    assert recorder.train == {torch.bfloat16}
    assert recorder.eval == {torch.float32}
    assert recorder.flags == {(False, False)}  # bf16 is not tf32: set off for the run...
    assert bf16_runs["flags_after"] == (True, True)  # ...and restored afterwards
    for record in results["history"]:
        assert all(0.0 <= record[k] <= 1.0 for k in RECALLS)


def test_bf16_run_keeps_proxies_and_optimizer_state_float32(bf16_runs: dict[str, Any]) -> None:
    state = checkpoint.load(Path(bf16_runs["full"]["run_dir"]) / "checkpoints" / "last.pt")
    assert state["loss_funcs"]["metric_loss"]["proxies"].dtype == torch.float32
    for group in ("models", "loss_funcs"):
        for module in state[group].values():
            for value in module.values():
                assert not value.is_floating_point() or value.dtype == torch.float32
    moments = [
        value
        for optimizer in state["optimizers"].values()
        for per_param in optimizer["state"].values()
        for key, value in per_param.items()
        if key in ("exp_avg", "exp_avg_sq")
    ]
    assert all(optimizer["state"] for optimizer in state["optimizers"].values())
    assert moments and all(m.dtype == torch.float32 for m in moments)
    assert state["scaler"] == {}  # no loss scaling in bf16


def test_bf16_run_resumes_to_the_uninterrupted_run(bf16_runs: dict[str, Any]) -> None:
    stopped, full = bf16_runs["stopped"], bf16_runs["full"]
    assert stopped["status"] == "stopped" and stopped["epochs_completed"] == 1
    resumed_dir = bf16_runs["base"] / "resumed"
    shutil.copytree(stopped["run_dir"], resumed_dir)
    last = resumed_dir / "checkpoints" / "last.pt"
    old_format = checkpoint.load(last)
    del old_format["scaler"]  # a checkpoint written before the scaler state was saved
    checkpoint.save_atomic(old_format, last)
    cfg = load_config(
        fixture_overrides(bf16_runs["data"], resumed_dir, **{"train.precision": "bf16"})
    )
    resumed = run(cfg, resume=True)
    assert resumed["status"] == "finished"
    for a, b in zip(resumed["history"], full["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)
        for k in RECALLS:
            assert a[k] == pytest.approx(b[k], abs=1e-9)
    got = checkpoint.load(resumed_dir / "checkpoints" / "last.pt")
    want = checkpoint.load(Path(full["run_dir"]) / "checkpoints" / "last.pt")
    for name, state in want["loss_funcs"].items():
        for key, value in state.items():
            torch.testing.assert_close(got["loss_funcs"][name][key], value, rtol=1e-6, atol=1e-7)


def test_resume_refuses_another_precision(bf16_runs: dict[str, Any]) -> None:
    cfg = load_config(fixture_overrides(bf16_runs["data"], bf16_runs["stopped"]["run_dir"]))
    with pytest.raises(ConfigMismatchError, match=r"train\.precision: 'bf16' -> 'fp32'"):
        run(cfg, resume=True)


@pytest.mark.usefixtures("tf32_flags")
def test_fp32_and_tf32_runs_set_the_switches(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (False, True)
    for name, seen in (("fp32", (False, False)), ("tf32", (True, True))):
        overrides = {"train.precision": name, "train.epochs": 1}
        results, recorder = _recorded_run(
            load_config(fixture_overrides(data, tmp_path / name, **overrides))
        )
        assert results["status"] == "finished"
        assert recorder.flags == {seen}
        assert recorder.train == recorder.eval == {torch.float32}
        assert _flags() == (False, True)


def test_channels_last_run_feeds_channels_last_batches(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    overrides = {"train.channels_last": True, "train.epochs": 1}
    cfg = load_config(fixture_overrides(data, tmp_path / "run", **overrides))
    results, recorder = _recorded_run(cfg)
    assert results["status"] == "finished"
    assert recorder.channels_last_inputs == {True}
    assert recorder.train == recorder.eval == {torch.float32}


def test_compiled_run_trains_and_saves_plain_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trunk's training forward goes through torch.compile (the eager backend here: the
    wiring, not Inductor); the checkpoints load into a plain model (no ``_orig_mod.`` keys)."""
    compiled: list[nn.Module] = []
    real_compile = torch.compile

    def eager_compile(module: nn.Module, **options: Any) -> Any:
        compiled.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    data = make_data(tmp_path / "data")
    overrides = {"train.compile": True, "train.epochs": 1}
    cfg = load_config(fixture_overrides(data, tmp_path / "run", **overrides))
    training = TrainingRun(cfg, tmp_path / "run")
    results = training.train()
    assert results["status"] == "finished"
    assert compiled == [training.parts.models["trunk"]]
    state = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    models = builders.build_models(cfg, torch.device("cpu"))
    checkpoint.load_state_dicts(models, state["models"], "models")


# ---------------------------------------------------------------- loss scaling on the CPU
class CpuLossScaling(Precision):
    """fp32 with a GradScaler on the CPU: every loss-scaling path of fp16 (scale, unscale before
    clipping, step, update, skipped steps, the saved scale) without CUDA. Scaling by powers of
    two is exact in float32, so such a run trains exactly as plain fp32."""

    init_scale = 2.0**10
    growth_interval = 2

    def __init__(self, name: str, device: Any) -> None:
        super().__init__(name, device)
        self.scaler = torch.amp.GradScaler(
            "cpu", init_scale=self.init_scale, growth_interval=self.growth_interval
        )


def test_loss_scaling_trains_like_fp32_and_resumes_its_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_data(tmp_path / "data")
    plain = run(load_config(fixture_overrides(data, tmp_path / "plain")))
    monkeypatch.setattr(run_module, "Precision", CpuLossScaling)
    scaled = run(load_config(fixture_overrides(data, tmp_path / "scaled")))
    for a, b in zip(scaled["history"], plain["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert [a[k] for k in RECALLS] == [b[k] for k in RECALLS]
    # 2 epochs x 3 steps, none skipped, growth every 2 steps: 2^10 -> 2^13.
    full = checkpoint.load(tmp_path / "scaled" / "checkpoints" / "last.pt")["scaler"]
    assert (full["scale"], full["_growth_tracker"]) == (2.0**13, 0)
    stop = {"train.stop_after_epoch": 1}
    run(load_config(fixture_overrides(data, tmp_path / "resumed", **stop)))
    half = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")["scaler"]
    assert (half["scale"], half["_growth_tracker"]) == (2.0**11, 1)
    resumed = run(load_config(fixture_overrides(data, tmp_path / "resumed")), resume=True)
    assert resumed["history"][-1]["loss"] == pytest.approx(scaled["history"][-1]["loss"], rel=1e-6)
    assert checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")["scaler"] == full


def _overflow_at(training: TrainingRun, steps: set[int] | None) -> None:
    """Make the embeddings' gradient infinite at these training steps (None: at every step)."""
    count = {"step": 0}

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if not output.requires_grad:
            return  # evaluation
        count["step"] += 1
        if steps is None or count["step"] in steps:
            output.register_hook(lambda grad: torch.full_like(grad, float("inf")))

    training.parts.models["embedder"].register_forward_hook(hook)


def _one_epoch_with_cpu_loss_scaling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **scaling: float
) -> TrainingRun:
    """A one-epoch run of the fixture data whose precision is CpuLossScaling with these settings."""
    for name, value in scaling.items():
        monkeypatch.setattr(CpuLossScaling, name, value)
    monkeypatch.setattr(run_module, "Precision", CpuLossScaling)
    data = make_data(tmp_path / "data")
    cfg = load_config(fixture_overrides(data, tmp_path / "run", **{"train.epochs": 1}))
    return TrainingRun(cfg, tmp_path / "run")


def test_an_overflowing_step_is_skipped_not_a_divergence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    training = _one_epoch_with_cpu_loss_scaling(tmp_path, monkeypatch, growth_interval=2000)
    embedder = training.parts.models["embedder"]
    _overflow_at(training, {2})
    before = {k: v.clone() for k, v in embedder.state_dict().items()}
    results = training.train()
    assert results["status"] == "finished"
    state = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["scaler"]["scale"] == 2.0**9  # halved once
    assert any(not torch.equal(before[k], v) for k, v in embedder.state_dict().items())
    assert all(torch.isfinite(v).all() for v in embedder.state_dict().values())


def test_a_collapsing_loss_scale_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    training = _one_epoch_with_cpu_loss_scaling(tmp_path, monkeypatch, init_scale=4.0)
    _overflow_at(training, None)
    with pytest.raises(
        NonFiniteLossError,
        match=r"loss scale fell to 0\.5 \(below 1\).*train\.precision=bf16 or fp32.*"
        r"iteration 3/3",
    ):
        training.train()


# ---------------------------------------------------------------- on a CUDA GPU
def _cuda_overrides(precision: str, **extra: Any) -> dict[str, Any]:
    return {"train.precision": precision, "train.device": "cuda", **extra}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_run_on_cuda_scales_the_loss_and_resumes_its_scale(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    full = run(load_config(fixture_overrides(data, tmp_path / "full", **_cuda_overrides("fp16"))))
    stopped_cfg = _cuda_overrides("fp16", **{"train.stop_after_epoch": 1})
    stopped = run(load_config(fixture_overrides(data, tmp_path / "stopped", **stopped_cfg)))
    assert full["status"] == "finished" and stopped["status"] == "stopped"
    state = checkpoint.load(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert state["scaler"]["scale"] >= MIN_LOSS_SCALE
    assert state["loss_funcs"]["metric_loss"]["proxies"].dtype == torch.float32
    resumed = run(
        load_config(fixture_overrides(data, tmp_path / "stopped", **_cuda_overrides("fp16"))),
        resume=True,
    )
    assert resumed["status"] == "finished"
    for a, b in zip(resumed["history"], full["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    final = checkpoint.load(tmp_path / "stopped" / "checkpoints" / "last.pt")
    want = checkpoint.load(tmp_path / "full" / "checkpoints" / "last.pt")
    assert final["scaler"]["scale"] == want["scaler"]["scale"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_run_on_cuda(tmp_path: Path) -> None:
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        with pytest.raises(PrecisionNotSupportedError, match=torch.cuda.get_device_name(0)):
            Precision("bf16", "cuda")
        return
    data = make_data(tmp_path / "data")
    results, recorder = _recorded_run(
        load_config(fixture_overrides(data, tmp_path / "run", **_cuda_overrides("bf16")))
    )
    assert results["status"] == "finished"
    assert recorder.train == {torch.bfloat16} and recorder.eval == {torch.float32}
