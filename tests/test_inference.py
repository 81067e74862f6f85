"""load_embedder / embed on a run trained on fixture images (real trainer, real checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pml_proxy_anchor.data import CUB200
from pml_proxy_anchor.inference import Embedder, UnreadableImagesError, embed, load_embedder
from pml_proxy_anchor.training import CheckpointNotFoundError, load_config, run
from tests.training.fixture_run import fixture_overrides, make_data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("inference")
    data = make_data(base / "data")
    run(load_config(fixture_overrides(data, base / "run")))
    return {"run": base / "run", "data": data}


def test_load_embedder_returns_the_best_checkpoint_in_eval_mode(trained: dict[str, Path]) -> None:
    model = load_embedder(trained["run"])
    assert isinstance(model, Embedder) and not model.training
    assert not any(m.training for m in model.modules())
    best = torch.load(trained["run"] / "checkpoints" / "best.pt", weights_only=True)
    assert model.epoch == best["epoch"]
    for key, value in best["models"]["trunk"].items():
        assert torch.equal(model.trunk.state_dict()[key], value)
    assert model.embedding_size == 16


def test_embed_matches_the_test_split_embeddings(trained: dict[str, Path]) -> None:
    model = load_embedder(trained["run"])
    test = CUB200(str(trained["data"]), split="test", transform=model.transform)
    paths = test.paths[:5]
    out = embed(model, paths, batch_size=2)
    assert out.shape == (5, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5), rtol=0, atol=1e-5)
    with torch.no_grad():
        expected = model(torch.stack([test[i][0] for i in range(5)]))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(embed(trained["run"], paths), out, rtol=1e-5, atol=1e-6)


def test_unreadable_images_are_all_named(trained: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    missing = tmp_path / "missing.png"
    test = CUB200(str(trained["data"]), split="test")
    with pytest.raises(UnreadableImagesError, match=r"2 of 3 .*broken\.jpg.*missing\.png"):
        embed(trained["run"], [test.paths[0], bad, missing])


def test_load_embedder_on_a_directory_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match=r"checkpoints/best\.pt"):
        load_embedder(tmp_path)
