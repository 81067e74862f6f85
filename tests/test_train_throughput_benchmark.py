"""Smoke test of reproduce/benchmarks/train_throughput.py at a tiny size (32 px, batch 2, one
step): every requested (backbone, contender) trains, the proxies stay float32, and the JSON and
table are written. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.benchmarks import load_benchmark

TINY = ["--image-size", "32", "--batch", "2", "--steps", "1", "--warmup", "0", "--threads", "1"]


def load_script():
    return load_benchmark("train_throughput")


def test_tiny_run_in_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = load_script()
    out = tmp_path / "train_throughput.json"
    args = [*TINY, "--in-process", "--contenders", "fp32,bf16,channels_last"]
    assert bench.main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["device"], result["image_size"], result["steps"]) == ("cpu", 32, 1)
    assert result["isolated"] is False and result["threads"] == 1
    rows = {(r["backbone"], r["contender"]): r for r in result["results"]}
    expected = {
        (b, c)
        for b in ("bn_inception", "vit_small_patch16_224")
        for c in ("fp32", "bf16", "channels_last")
    }
    assert set(rows) == expected
    for (backbone, _), row in rows.items():
        if backbone != "bn_inception" and bench.timm_missing():
            assert row["skipped"].startswith("timm is not installed")
            continue
        assert row["batch"] == 2 and len(row["times_s"]) == 1 and row["images_per_s"] > 0
        assert row["loss_finite"] and row["proxies_dtype"] == "torch.float32"
        assert row["memory_method"] in ("VmHWM", "ru_maxrss")
    assert rows[("bn_inception", "fp32")]["parameters_m"] == pytest.approx(10.7, abs=0.1)
    printed = capsys.readouterr().out
    assert "| bn_inception | 2 | fp32 |" in printed and result["table_markdown"] in printed


def test_isolated_run_and_default_batches(tmp_path: Path) -> None:
    bench = load_script()
    assert bench.BACKBONES == {"bn_inception": 180, "vit_small_patch16_224": 128}
    out = tmp_path / "t.json"
    args = [*TINY, "--backbones", "bn_inception", "--contenders", "fp32", "--out", str(out)]
    assert bench.main(args) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["contender"] == "fp32" and row["peak_memory_mb"] > 0 and "error" not in row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image-size", "48"], r"--image-size 48: must be a multiple of 32"),
        (["--backbones", "resnet18"], r"--backbones: unknown \['resnet18'\]"),
        (["--contenders", "fp16"], r"--contenders: unknown \['fp16'\]"),
        (["--steps", "0"], r"--steps must be >= 1"),
    ],
)
def test_bad_flags_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    bench = load_script()
    with pytest.raises(SystemExit, match=message):
        bench.main([*TINY, *args, "--out", str(tmp_path / "x.json")])


@pytest.mark.cuda
def test_cuda_run_reports_gpu_memory(tmp_path: Path) -> None:
    bench = load_script()
    out = tmp_path / "t.json"
    args = ["--device", "cuda", "--image-size", "64", "--batch", "4", "--steps", "2"]
    assert bench.main([*args, "--warmup", "1", "--in-process", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for row in result["results"]:
        assert row["memory_method"] == "cuda.max_memory_allocated" and row["peak_memory_mb"] > 0
        assert row["loss_finite"] and row["proxies_dtype"] == "torch.float32"
