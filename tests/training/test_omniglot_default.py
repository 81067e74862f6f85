"""The embedded default: ``configs/omniglot.yaml`` through the real CLI, trainer and inference.

One 1-epoch smoke run of the shipped config on a subset (4 characters per split via
``data.max_classes``, a narrow CNN) shared by the tests of this module; then its results files, the
three plots, ``load_embedder`` and ``embed`` (Python and CLI) on raw Omniglot PNGs taken from the
original zips (105x105, and a resized copy).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pml_proxy_anchor.cli import main
from pml_proxy_anchor.data.omniglot import Omniglot
from pml_proxy_anchor.inference import embed, load_embedder
from pml_proxy_anchor.training import builders, load_config
from pml_proxy_anchor.training.errors import ConfigValueError
from pml_proxy_anchor.training.hooks import gradient_clippers

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "omniglot.yaml"
ZIP = REPO.parent / "shared" / "data" / "omniglot" / "images_background_small1.zip"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMOKE = [
    "train.epochs=1",
    "train.batch_size=32",
    "train.device=cpu",
    "+data.max_classes=4",
    "model.channels=[8,8,16,32]",
    "model.embedding_size=32",
    "eval.batch_size=128",
]


def test_config_is_the_researched_recipe() -> None:
    cfg = load_config(CONFIG)
    assert cfg.data.name == "omniglot" and cfg.data.image_size == 28
    assert cfg.data.class_rotations == 4 and cfg.data.augment is True
    assert list(cfg.model.channels) == [64, 64, 128, 512] and cfg.model.pool_last is False
    assert cfg.model.embedding_size == 512
    assert cfg.loss == {"ProxyAnchorLoss": {"margin": 0.1, "alpha": 32}}
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.warm_epochs) == (12, 128, 0)
    assert cfg.train.bn_freeze is False and cfg.train.grad_clip is None
    assert list(cfg.eval.k_values) == [1, 2, 4, 8]
    assert (cfg.scheduler.step, cfg.scheduler.gamma) == (4, 0.5)


def _optimizer_groups(cfg_path: Path, overrides: list[str] = ()) -> dict[str, tuple[float, float]]:
    cfg = load_config(cfg_path, list(overrides))
    cfg.model.pretrained = "none"  # random weights on purpose: no file here
    models = builders.build_models(cfg, torch.device("cpu"))
    loss = builders.build_loss(cfg, 10, builders.embedding_size(models["embedder"], cfg), "cpu")
    optimizers, _ = builders.build_optimizers(cfg, models, loss)
    return {
        name: (group["lr"], group["weight_decay"])
        for name, optimizer in optimizers.items()
        for group in optimizer.param_groups
    }


def test_omniglot_optimizers_keep_weight_decay_off_the_proxies() -> None:
    groups = _optimizer_groups(CONFIG, ["model.channels=[4,4]"])
    assert groups["trunk_optimizer"] == pytest.approx((1e-3, 1e-2), rel=1e-12)
    assert groups["embedder_optimizer"] == pytest.approx((1e-3, 1e-2), rel=1e-12)
    assert groups["metric_loss_optimizer"] == pytest.approx((1e-1, 0.0), rel=1e-12)


def test_paper_configs_decay_the_proxies_like_the_model() -> None:
    groups = _optimizer_groups(REPO / "configs" / "cub200_resnet50.yaml")
    assert groups["metric_loss_optimizer"][1] == groups["trunk_optimizer"][1] == 1e-4


def test_bad_proxy_weight_decay_is_refused() -> None:
    with pytest.raises(ConfigValueError, match="proxy_weight_decay"):
        load_config(CONFIG, ["optimizer.proxy_weight_decay=-1"])


def test_null_grad_clip_means_no_clipper_and_a_value_means_one_per_module() -> None:
    modules = {
        "trunk": torch.nn.Linear(2, 2),
        "loss": torch.nn.Linear(2, 2),
        "empty": torch.nn.ReLU(),
    }
    assert gradient_clippers(modules, load_config(CONFIG).train.grad_clip) == {}
    clippers = gradient_clippers(modules, 10.0)
    assert sorted(clippers) == ["loss_grad_clipper", "trunk_grad_clipper"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("omniglot") / "run"
    assert main(["train", str(CONFIG), "--run-dir", str(run_dir), *SMOKE]) == 0
    return run_dir


def test_smoke_run_writes_results_with_recall_at_1_to_8(smoke_run: Path) -> None:
    results = json.loads((smoke_run / "results.json").read_text())
    assert results["status"] == "finished" and results["dataset"] == "omniglot"
    assert results["epochs_completed"] == 1
    metrics = results["final"]["metrics"]
    for k in (1, 2, 4, 8):
        assert 0.0 <= metrics[f"recall_at_{k}"] <= 1.0
    recalls = [metrics[f"recall_at_{k}"] for k in (1, 2, 4, 8)]
    assert recalls == sorted(recalls)  # Recall@K cannot fall as K grows
    assert results["history"][0]["recall_at_8"] == metrics["recall_at_8"]
    markdown = (smoke_run / "results.md").read_text()
    assert "| R@1 | R@2 | R@4 | R@8 |" in markdown
    assert f"{100 * metrics['recall_at_1']:.1f}" in markdown


def test_smoke_run_writes_three_valid_pngs(smoke_run: Path) -> None:
    plots = json.loads((smoke_run / "results.json").read_text())["plots"]
    assert plots["skipped"] == {}
    markdown = (smoke_run / "results.md").read_text()
    for name in ("curves", "retrieval_grid", "embedding_projection"):
        path = smoke_run / "plots" / f"{name}.png"
        assert plots[name] == f"plots/{name}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 200
        assert f"]({plots[name]})" in markdown
    test_characters = Omniglot("test", max_classes=4).characters
    assert plots["projection_classes"] == test_characters  # 4 < 20: every class is drawn


@pytest.fixture(scope="module")
def raw_pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three Korean PNGs from the original zip, plus one of them resized to 64x48 pixels."""
    if not ZIP.is_file():
        pytest.skip(f"the Omniglot zips are not at {ZIP}")
    out = tmp_path_factory.mktemp("pngs")
    paths = []
    with zipfile.ZipFile(ZIP) as archive:
        names = sorted(
            n for n in archive.namelist() if "/Korean/character01/" in n and n.endswith(".png")
        )
        for name in names[:3]:
            target = out / Path(name).name
            target.write_bytes(archive.read(name))
            paths.append(target)
    with Image.open(paths[0]) as image:
        image.resize((64, 48)).save(out / "resized.png")
    return [*paths, out / "resized.png"]


def test_load_embedder_and_embed_on_raw_pngs(smoke_run: Path, raw_pngs: list[Path]) -> None:
    embedder = load_embedder(smoke_run)
    out = embed(embedder, raw_pngs, batch_size=2)
    assert out.shape == (4, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4), atol=1e-5, rtol=0)
    # The zip PNG is the bundled image: same embedding as the test split's own item.
    test = Omniglot("test", max_classes=4)
    file_name = raw_pngs[0].name
    index = next(i for i, p in enumerate(test.paths) if p == f"Korean/character01/{file_name}")
    with torch.no_grad():
        bundled = embedder(embedder.transform(Image.fromarray(test.raw_image(index)))[None])
    torch.testing.assert_close(out[0], bundled[0], atol=1e-5, rtol=0)


def test_cli_embed_writes_npy(smoke_run: Path, raw_pngs: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "emb.npy"
    args = ["embed", str(smoke_run), *map(str, raw_pngs), "--out", str(target)]
    assert main(args) == 0
    saved = np.load(target)
    assert saved.shape == (4, 32)
    np.testing.assert_allclose(saved, embed(smoke_run, raw_pngs).numpy(), atol=1e-6, rtol=0)
