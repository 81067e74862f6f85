"""Smoke test of reproduce/benchmarks/loader_speed.py at a tiny size: the synthetic JPEGs, every
per-worker contender, the DataLoader sweep and the JSON and table are checked. No timing is
asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pml_proxy_anchor.data import build_transform
from tests.fixtures.benchmarks import load_benchmark

TINY = ["--images", "4", "--repeats", "1", "--warmup", "0", "--batch", "2", "--loader-repeats", "1"]


def load_script():
    return load_benchmark("loader_speed")


def test_jpegs_are_cub_sized_and_seeded(tmp_path: Path) -> None:
    bench = load_script()
    paths = bench.write_jpegs(tmp_path / "a", 5, seed=3)
    again = bench.write_jpegs(tmp_path / "b", 5, seed=3)
    assert [p.relative_to(tmp_path / "a") for p in paths][:2] == [
        Path("class_0/img_0000.jpg"),
        Path("class_1/img_0001.jpg"),
    ]
    for path, other in zip(paths, again):
        assert path.read_bytes() == other.read_bytes()
        with Image.open(path) as img:
            assert (img.format, img.size, img.mode) == ("JPEG", (500, 375), "RGB")


def test_tensor_pipeline_matches_the_project_normalisation() -> None:
    """Without the random geometry (a crop of the full image at its own size), the tensor
    pipeline gives the project's transform's values."""
    bench = load_script()
    rgb = torch.randint(
        0, 256, (3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    image = Image.fromarray(rgb.permute(1, 2, 0).numpy())
    for backbone in bench.BACKBONES:
        ours = bench.TensorTrainTransform(backbone)
        ours.geometry = lambda x: x  # identity geometry
        project = build_transform(backbone, train=False, crop_size=224, resize_size=224)
        torch.testing.assert_close(ours(rgb), project(image), atol=1e-4, rtol=1e-5)


def test_batched_decode_pass_on_the_cpu(tmp_path: Path) -> None:
    """The GPU contender's code (batched ``decode_jpeg``, transform, stack), run on the CPU."""
    bench = load_script()
    paths = [str(p) for p in bench.write_jpegs(tmp_path, 5)]
    torch.manual_seed(0)
    batches = bench.batched_pass(paths, bench.TensorTrainTransform("resnet50"), 2, "cpu")
    assert [tuple(b.shape) for b in batches] == [(2, 3, 224, 224)] * 2 + [(1, 3, 224, 224)]
    assert all(b.dtype == torch.float32 and torch.isfinite(b).all() for b in batches)


def test_tiny_run_writes_every_contender(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = load_script()
    out = tmp_path / "loader_speed.json"
    args = [*TINY, "--workers", "0,1", "--out", str(out)]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    names = [r["contender"] for r in result["results"]]
    assert names == [
        "pil/bn_inception",
        "pil/resnet50",
        "pil_decode",
        "tensor_cpu/bn_inception",
        "tensor_cpu/resnet50",
    ]
    for row in result["results"]:
        assert row["per_worker"] and len(row["times_s"]) == 1 and row["images_per_s"] > 0
    assert [w["num_workers"] for w in result["workers"]] == [0, 1]
    assert result["workers"][0]["loader_kwargs"] == {"num_workers": 0, "pin_memory": False}
    assert result["workers"][1]["loader_kwargs"]["prefetch_factor"] == 2
    assert all(w["images_per_s"] > 0 and w["startup_s"] >= 0 for w in result["workers"])
    assert result["per_worker_images_per_s"] == result["results"][0]["images_per_s"]
    assert (result["images"], result["image_size"], result["jpeg_quality"]) == (4, [500, 375], 90)
    assert result["device"] == "cpu" and result["threads"] == 1
    assert isinstance(result["default_num_workers"], int)
    assert result["table_markdown"] in capsys.readouterr().out


def test_unknown_backbone_is_refused(tmp_path: Path) -> None:
    bench = load_script()
    with pytest.raises(SystemExit, match=r"unknown \['small_cnn'\]"):
        bench.main([*TINY, "--backbones", "small_cnn", "--out", str(tmp_path / "x.json")])


@pytest.mark.cuda
def test_gpu_decode_contenders(tmp_path: Path) -> None:
    bench = load_script()
    out = tmp_path / "loader_speed.json"
    assert bench.main([*TINY, "--workers", "0", "--device", "cuda", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    gpu = [r for r in result["results"] if r["contender"].startswith("tensor_cuda/")]
    assert [r["per_worker"] for r in gpu] == [False, False] and all(
        r["images_per_s"] > 0 for r in gpu
    )
    assert result["workers"][0]["loader_kwargs"]["pin_memory"] is True


@pytest.mark.cuda
def test_gpu_decode_matches_the_cpu_decode(tmp_path: Path) -> None:
    """nvJPEG and libjpeg-turbo may round differently, by a level or two, never more on average."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    bench = load_script()
    path = bench.write_jpegs(tmp_path, 2)[1]
    data = read_file(str(path))
    cpu = decode_jpeg(data, mode=ImageReadMode.RGB)
    gpu = decode_jpeg([data], mode=ImageReadMode.RGB, device="cuda")[0].cpu()
    assert gpu.shape == cpu.shape == (3, 375, 500)
    assert float((gpu.float() - cpu.float()).abs().mean()) < 2.0
    with Image.open(path) as img:
        pil = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
    assert float((pil.float() - cpu.float()).abs().mean()) < 2.0
