"""load_embedder / embed on a run trained on fixture images (real trainer, real checkpoint)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pml_proxy_anchor.data import CUB200
from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.inference import (
    Embedder,
    EmbedInputError,
    UnreadableImagesError,
    embed,
    load_embedder,
)
from pml_proxy_anchor.training import (
    CheckpointNotFoundError,
    DeviceNotAvailableError,
    load_config,
    run,
)
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


def test_a_single_path_is_one_image(trained: dict[str, Path]) -> None:
    model = load_embedder(trained["run"])
    path = CUB200(str(trained["data"]), split="test").paths[0]
    for single in (str(path), Path(path)):
        out = embed(model, single)
        assert out.shape == (1, 16)
        torch.testing.assert_close(out, embed(model, [path]), rtol=0, atol=0)


def test_pil_images_embed_like_their_files(trained: dict[str, Path]) -> None:
    model = load_embedder(trained["run"])
    paths = CUB200(str(trained["data"]), split="test").paths[:3]
    from_files = embed(model, paths, batch_size=2)
    images = [Image.open(p) for p in paths]
    torch.testing.assert_close(embed(model, images, batch_size=2), from_files, rtol=0, atol=0)
    # same batches, same numbers; other batch sizes differ only by float summation order
    torch.testing.assert_close(embed(model, images[1]), embed(model, [paths[1]]), rtol=0, atol=0)
    mixed = embed(model, [paths[0], images[1], Path(paths[2])])
    torch.testing.assert_close(mixed, embed(model, paths), rtol=0, atol=0)
    torch.testing.assert_close(mixed, from_files, rtol=1e-5, atol=1e-6)
    grey = Image.open(paths[0]).convert("L")  # any mode PIL converts to RGB is accepted
    expected = embed(model, [grey.convert("RGB")])
    torch.testing.assert_close(embed(model, grey), expected, rtol=0, atol=0)


def test_embed_runs_in_eval_mode_and_restores_the_mode(trained: dict[str, Path]) -> None:
    model = load_embedder(trained["run"])
    paths = CUB200(str(trained["data"]), split="test").paths[:4]
    expected = embed(model, paths)
    model.train()  # BatchNorm in train mode would use the batch's statistics
    torch.testing.assert_close(embed(model, paths), expected, rtol=0, atol=0)
    assert model.training


@pytest.mark.parametrize(
    ("images", "match"),
    [
        ([], r"no images given"),
        (np.zeros((8, 8, 3), np.uint8), r"images is a ndarray.*PIL\.Image\.fromarray"),
        (torch.zeros(2, 3, 8, 8), r"images is a Tensor.*call the Embedder directly"),
        (b"a.png", r"images is a bytes"),
        (["a.png", 3], r"images\[1\] is a int"),
        ([Image.new("RGB", (0, 4))], r"images\[0\] is an empty PIL image"),
        (42, r"images is a int"),
    ],
)
def test_images_of_the_wrong_kind_are_refused(
    trained: dict[str, Path], images: object, match: str
) -> None:
    model = load_embedder(trained["run"])
    with pytest.raises(EmbedInputError, match=match):
        embed(model, images)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, "8"])
def test_bad_batch_size_is_refused(trained: dict[str, Path], batch_size: object) -> None:
    model = load_embedder(trained["run"])
    with pytest.raises(EmbedInputError, match=r"batch_size must be an integer >= 1"):
        embed(model, CUB200(str(trained["data"]), split="test").paths[:1], batch_size=batch_size)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(trained: dict[str, Path]) -> None:
    path = CUB200(str(trained["data"]), split="test").paths[0]
    with pytest.raises(DeviceNotAvailableError, match=r"device='cuda' asks for CUDA.*device=cpu"):
        load_embedder(trained["run"], device="cuda")
    with pytest.raises(DeviceNotAvailableError, match=r"device='cuda' asks for CUDA"):
        embed(load_embedder(trained["run"]), path, device="cuda")
    with pytest.raises(DeviceNotAvailableError, match=r"device='cuda' asks for CUDA"):
        embed(trained["run"], path, device="cuda")


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"], ids=str
)
def test_garbage_checkpoint_is_named_not_a_raw_unpickling_error(
    tmp_path: Path, trained: dict[str, Path], content: bytes
) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(content)
    with pytest.raises(UserError, match=r"model\.pt") as caught:
        load_embedder(bad)
    assert not isinstance(caught.value, (pickle.UnpicklingError, EOFError))
    truncated = tmp_path / "best.pt"
    truncated.write_bytes((trained["run"] / "checkpoints" / "best.pt").read_bytes()[:300])
    with pytest.raises(UserError, match=r"best\.pt"):
        embed(truncated, CUB200(str(trained["data"]), split="test").paths[:1])


def test_bad_which_and_run_dir_are_refused(trained: dict[str, Path]) -> None:
    with pytest.raises(UserError, match=r"unknown which 'bset': did you mean 'best'"):
        load_embedder(trained["run"], which="bset")
    with pytest.raises(EmbedInputError, match=r"run_dir must be a run directory .* got a int"):
        load_embedder(3)  # type: ignore[arg-type]
    with pytest.raises(EmbedInputError, match=r"first argument must be a run directory"):
        embed(torch.nn.Linear(2, 2), ["a.png"])  # type: ignore[arg-type]


def test_error_classes_are_user_errors() -> None:
    for cls in (UnreadableImagesError, EmbedInputError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError)
