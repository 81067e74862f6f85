"""Data-loading speed of the train transform: images/s of one DataLoader worker, and of a real
DataLoader with 0, 1, 2, ... workers.

Data: ``--images`` synthetic CUB-sized JPEGs (500 x 375 pixels, quality 90; smooth random colour
fields with fine grain, which compress like photographs, about 50 KB each), seeded, written as
``root/<class>/<image>.jpg`` in a temporary folder and read through the project's own
:class:`~pml_proxy_anchor.data.ImageFolderDataset`.

Contenders of the per-worker rate (``images/s = images / median time of one pass`` over every
image, ``--repeats`` passes split over rounds of per-contender blocks; in this process with one
torch thread, as a DataLoader worker runs):

- ``pil/BACKBONE``: the project's train pipeline, ``dataset[i]``: PIL decode (``load_rgb``) and
  :func:`~pml_proxy_anchor.data.build_transform` ``(BACKBONE, train=True)`` = RandomResizedCrop(224)
  + RandomHorizontalFlip + ToTensor + the backbone's normalisation;
- ``pil_decode``: the PIL decode alone (the floor of any CPU pipeline);
- ``tensor_cpu/BACKBONE``: ``torchvision.io.decode_jpeg`` on the CPU, then the same geometry and
  normalisation on uint8 tensors;
- ``tensor_cuda/BACKBONE`` (``--device cuda`` only): ``decode_jpeg(device="cuda")`` on batches of
  ``--batch`` files, the geometry and normalisation on the GPU (file reading included). This one is
  not a worker: it runs in the training process, so compare it with the DataLoader rates.

DataLoader sweep (``--workers 0,1,2``): a ``DataLoader`` over the data set with the first backbone's
pipeline, ``batch_size=--batch``, shuffled, with
:func:`~pml_proxy_anchor.data.workers.loader_kwargs` for ``--device``; ``images/s`` counts from
the first batch to the last (worker start-up, reported apart as ``startup_s``, excluded), the
median over ``--loader-repeats`` epochs (each a fresh iterator). With 0 workers the pipeline runs
in this process with its default torch threads (``loader_threads``), as in training: on a busy
machine, several OpenMP threads contending for the cores can make it many times slower than one
worker (one thread).

    python reproduce/benchmarks/loader_speed.py [--images 64] [--workers 0,1,2] [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.transforms import v2

from pml_proxy_anchor.data import ImageFolderDataset, build_transform
from pml_proxy_anchor.data.base import load_rgb
from pml_proxy_anchor.data.transforms import BN_INCEPTION_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD
from pml_proxy_anchor.data.workers import default_num_workers, loader_kwargs

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, however this file is run
from _common import (
    benchmark_parser,
    check_device,
    cpu_name,
    sync,
    time_in_rounds,
    write_json,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "reproduce" / "benchmarks" / "results" / "loader_speed.json"
IMAGE_SIZE = (500, 375)  # width x height, CUB-200-2011's typical landscape image
JPEG_QUALITY = 90
CLASSES = 4
BACKBONES = ("bn_inception", "resnet50")


# ---------------------------------------------------------------- data
def synthetic_image(rng: np.random.Generator, size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """A smooth random colour field (bicubic upsampling of a coarse grid) plus fine grain."""
    width, height = size
    coarse = rng.integers(0, 256, size=(height // 40 + 2, width // 40 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.int16)
    grain = rng.normal(0.0, 6.0, size=smooth.shape).round().astype(np.int16)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def write_jpegs(root: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` JPEGs as ``root/class_K/img_NNNN.jpg`` (classes round-robin)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        folder = root / f"class_{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{i:04d}.jpg"
        synthetic_image(rng).save(path, quality=JPEG_QUALITY)
        paths.append(path)
    return paths


# ---------------------------------------------------------------- tensor pipeline
class TensorTrainTransform:
    """The train transform of ``backbone`` on a decoded ``(3, H, W)`` uint8 tensor (any device):
    RandomResizedCrop + flip on uint8, then float and the backbone's normalisation (BN-Inception:
    BGR 0..255 minus the mean; ResNet-50: RGB 0..1, ImageNet mean and std)."""

    def __init__(self, backbone: str, crop_size: int = 224) -> None:
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; expected one of {BACKBONES}")
        self.backbone = backbone
        self.geometry = v2.Compose(
            [v2.RandomResizedCrop(crop_size, antialias=True), v2.RandomHorizontalFlip()]
        )

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = self.geometry(image).float()
        if self.backbone == "bn_inception":
            mean = torch.tensor(BN_INCEPTION_MEAN_BGR, device=x.device).view(3, 1, 1)
            return x.flip(0) - mean
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
        return (x / 255.0 - mean) / std


def batched_pass(
    paths: list[str], transform: TensorTrainTransform, batch: int, device: str
) -> list[torch.Tensor]:
    """Read the files, decode them ``batch`` at a time on ``device`` (nvJPEG on CUDA), transform
    them there; the batches, as a training step would take them."""
    batches = []
    for start in range(0, len(paths), batch):
        datas = [read_file(p) for p in paths[start : start + batch]]
        images = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
        batches.append(torch.stack([transform(image) for image in images]))
    sync(device)
    return batches


def make_pass(name: str, dataset: ImageFolderDataset, batch: int) -> Callable[[], None]:
    """A closure doing one pass of contender ``name`` over every image of ``dataset``."""
    kind, _, backbone = name.partition("/")
    paths = list(dataset.paths)
    if kind == "pil":
        dataset.transform = build_transform(backbone, train=True)

        def run() -> None:
            for i in range(len(dataset)):
                dataset[i]

        return run
    if kind == "pil_decode":

        def run() -> None:
            for path in paths:
                load_rgb(path)

        return run
    transform = TensorTrainTransform(backbone)
    if kind == "tensor_cpu":

        def run() -> None:
            for path in paths:
                transform(decode_jpeg(read_file(path), mode=ImageReadMode.RGB))

        return run
    if kind == "tensor_cuda":
        return lambda: batched_pass(paths, transform, batch, "cuda")
    raise ValueError(f"unknown contender {name!r}")


# ---------------------------------------------------------------- DataLoader sweep
def time_loader(
    dataset: ImageFolderDataset, workers: int, batch: int, device: str, repeats: int
) -> dict[str, Any]:
    """Median images/s of ``repeats`` epochs of a DataLoader with ``workers`` workers."""
    kwargs = loader_kwargs(workers, device, persistent_workers=False)
    generator = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, generator=generator, **kwargs
    )
    rates, startups = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        first = None
        count = 0
        for images, _labels in loader:
            if device == "cuda":
                images = images.to(device, non_blocking=True)
            if first is None:
                first = time.perf_counter()
                sync(device)
                first_size = len(images)
                continue
            count += len(images)
        sync(device)
        end = time.perf_counter()
        startups.append(first - start)
        rates.append(count / (end - first) if count else first_size / (first - start))
    return {
        "num_workers": workers,
        "images_per_s": statistics.median(rates),
        "rates": rates,
        "startup_s": statistics.median(startups),
        "loader_kwargs": kwargs,
    }


# ---------------------------------------------------------------- driver
def contenders(backbones: list[str], device: str) -> list[str]:
    names = [f"pil/{b}" for b in backbones] + ["pil_decode"]
    names += [f"tensor_cpu/{b}" for b in backbones]
    if device == "cuda":
        names += [f"tensor_cuda/{b}" for b in backbones]
    return names


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    check_device(args.device)
    backbones = [b for b in args.backbones.split(",") if b]
    unknown = sorted(set(backbones) - set(BACKBONES))
    if unknown or not backbones:
        raise SystemExit(f"--backbones: unknown {unknown}; expected some of {list(BACKBONES)}")
    workers = [int(w) for w in args.workers.split(",") if w != ""]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="loader_speed_") as tmp:
        paths = write_jpegs(Path(tmp), args.images)
        dataset = ImageFolderDataset(tmp)
        jpeg_kb = statistics.mean(p.stat().st_size for p in paths) / 1024
        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)  # a DataLoader worker runs one torch thread
        names = contenders(backbones, args.device)
        runs = {name: make_pass(name, dataset, args.batch) for name in names}
        times = time_in_rounds(runs, args.device, args.warmup, args.repeats, args.rounds)
        torch.set_num_threads(threads)
        rows = []
        for name in names:
            median = statistics.median(times[name])
            kind, _, backbone = name.partition("/")
            rows.append(
                {
                    "contender": name,
                    "backbone": backbone or None,
                    "per_worker": kind != "tensor_cuda",
                    "images_per_s": len(paths) / median,
                    "median_s": median,
                    "times_s": times[name],
                }
            )
        dataset.transform = build_transform(backbones[0], train=True)
        sweep = [
            time_loader(dataset, w, args.batch, args.device, args.loader_repeats) for w in workers
        ]
    per_worker = next(r["images_per_s"] for r in rows if r["contender"] == f"pil/{backbones[0]}")
    return {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "threads": args.threads,
        "threads_note": "per-worker contenders run with this many torch threads, as a worker",
        "loader_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "images": len(paths),
        "image_size": list(IMAGE_SIZE),
        "jpeg_quality": JPEG_QUALITY,
        "mean_jpeg_kb": round(jpeg_kb, 1),
        "crop_size": 224,
        "batch": args.batch,
        "timing": f"median of {args.repeats} passes in {args.rounds} rounds of blocks",
        "results": rows,
        "workers": sweep,
        "per_worker_images_per_s": per_worker,
        "default_num_workers": default_num_workers(),
    }


def format_table(result: dict[str, Any]) -> str:
    """The per-worker contenders, then the DataLoader sweep, as one markdown table."""
    lines = ["| pipeline | images/s | ms per image |", "|---|---:|---:|"]
    for row in result["results"]:
        who = "one worker" if row["per_worker"] else f"GPU, batches of {result['batch']}"
        rate = row["images_per_s"]
        lines.append(f"| {row['contender']} ({who}) | {rate:.0f} | {1e3 / rate:.1f} |")
    for row in result["workers"]:
        rate = row["images_per_s"]
        lines.append(
            f"| DataLoader, num_workers={row['num_workers']} (start-up {row['startup_s']:.2f} s) "
            f"| {rate:.0f} | {1e3 / rate:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="synthetic JPEGs to write")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="comma list")
    parser.add_argument("--workers", default="0,1,2", help="DataLoader num_workers to sweep")
    parser.add_argument("--batch", type=int, default=32, help="DataLoader / GPU decode batch")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes per block")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per contender")
    parser.add_argument("--rounds", type=int, default=1, help="rounds the repeats are split over")
    parser.add_argument("--loader-repeats", type=int, default=2, help="epochs per worker count")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the per-worker")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    args = parser.parse_args(argv)
    if args.images < 2 or args.batch < 1 or args.repeats < 1 or args.rounds < 1:
        raise SystemExit("--images must be >= 2, --batch, --repeats and --rounds >= 1")
    result = run_benchmark(args)
    result["table_markdown"] = format_table(result)
    print(
        f"\n{result['images']} JPEGs {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} q{JPEG_QUALITY} "
        f"(~{result['mean_jpeg_kb']} KB), {result['cpu']}, torch {result['torch']}\n"
    )
    print(result["table_markdown"])
    write_json(args.out, result)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
