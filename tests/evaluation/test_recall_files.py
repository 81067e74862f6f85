"""The ``recall`` command on bad files and arguments: exit 2, the file or argument named."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.evaluation import RecallInputError, compute_recall_at_k
from pml_proxy_anchor.evaluation.standalone import (
    RecallFileNotFoundError,
    evaluate_files,
    load_array,
    main,
)

FIX = r"numeric array saved with np\.save"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 6
    x = (np.eye(6)[labels] + 0.7 * rng.standard_normal((24, 6))).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    np.save(tmp_path / "l.npy", labels)
    return {"e": tmp_path / "e.npy", "l": tmp_path / "l.npy", "dir": tmp_path}


def _bad_file(tmp_path: Path, kind: str) -> Path:
    x = np.ones((4, 3), np.float32)
    p = tmp_path / f"{kind}.{'pt' if kind.endswith('pt') else 'npy'}"
    if kind == "pickled_npy":
        np.save(p, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    elif kind == "empty_npy":
        p.write_bytes(b"")
    elif kind == "truncated_npy":
        np.save(p, x)
        p.write_bytes(p.read_bytes()[:100])
    elif kind == "garbage_npy":
        p.write_bytes(np.random.default_rng(0).bytes(300))
    elif kind == "npz_npy":
        with open(p, "wb") as handle:
            np.savez(handle, a=x)
    elif kind == "truncated_pt":
        torch.save(torch.from_numpy(x), p)
        p.write_bytes(p.read_bytes()[:200])
    elif kind == "garbage_pt":
        p.write_bytes(np.random.default_rng(1).bytes(300))
    elif kind == "pickled_pt":
        p.write_bytes(pickle.dumps({"a": object}, protocol=2))
    elif kind == "empty_pt":
        p.write_bytes(b"")
    return p


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("pickled_npy", r"holds pickled python objects"),
        ("empty_npy", r"is empty \(0 bytes\)"),
        ("truncated_npy", r"is not a readable \.npy array \(truncated or corrupt"),
        ("garbage_npy", r"is not a \.npy file \(no NumPy header\)"),
        ("npz_npy", r"is an \.npz archive, not one array"),
        ("truncated_pt", r"is not a readable torch file \(truncated or corrupt"),
        ("garbage_pt", r"is not a torch file of tensors"),
        ("pickled_pt", r"is not a torch file of tensors"),
        ("empty_pt", r"is empty \(0 bytes\)"),
    ],
)
def test_unreadable_files_are_named_with_the_fix(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture, kind: str, match: str
) -> None:
    bad = _bad_file(tmp_path, kind)
    with pytest.raises(RecallInputError, match=rf"{bad.name} {match}.*{FIX}"):
        load_array(bad)
    assert main([str(bad), str(files["l"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and "Traceback" not in err


def test_missing_file_and_directory_are_named(files: dict[str, Path]) -> None:
    missing = files["dir"] / "missing.npy"
    with pytest.raises(RecallFileNotFoundError, match=r"file not found: .*missing\.npy"):
        load_array(missing)
    assert issubclass(RecallFileNotFoundError, UserError)
    assert issubclass(RecallFileNotFoundError, FileNotFoundError)
    folder = files["dir"] / "folder.npy"
    folder.mkdir()
    with pytest.raises(RecallFileNotFoundError, match=r"is a directory, not a file"):
        load_array(folder)


def test_the_embed_commands_pt_output_is_read(files: dict[str, Path]) -> None:
    x, labels = np.load(files["e"]), np.load(files["l"])
    written = files["dir"] / "embedded.pt"
    torch.save({"embeddings": torch.from_numpy(x), "paths": ["a.png"] * 24}, written)
    out = evaluate_files(written, files["l"], k_values=(1, 2))
    expected = compute_recall_at_k(x, labels, k_values=(1, 2))
    assert {k: out[k] for k in expected} == expected
    other = files["dir"] / "dict.pt"
    torch.save({"x": torch.ones(2)}, other)
    with pytest.raises(RecallInputError, match=r"dict\.pt holds a dict, expected a single tensor"):
        load_array(other)


def test_input_errors_name_the_files(files: dict[str, Path]) -> None:
    names = files["dir"] / "names.npy"
    np.save(names, np.array([f"c{i % 6}" for i in range(24)]))
    with pytest.raises(
        RecallInputError, match=r"query labels have dtype <U2 .*\(files: .*names\.npy\)"
    ):
        evaluate_files(files["e"], names)
    zeros = files["dir"] / "zeros.npy"
    np.save(zeros, np.zeros((24, 6), np.float32))
    with pytest.raises(RecallInputError, match=r"all-zero row.*\(files: .*zeros\.npy"):
        evaluate_files(zeros, files["l"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu(files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main([str(files["e"]), str(files["l"]), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device 'cuda' asks for CUDA" in err and "--device cpu" in err


def test_unknown_preset_and_bad_k(files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main([str(files["e"]), str(files["l"]), "--preset", "cub20"]) == 2
    assert "unknown --preset 'cub20': did you mean 'cub200'" in capsys.readouterr().err
    assert main([str(files["e"]), str(files["l"]), "--k", "0", "1"]) == 2
    assert "not a positive integer: 0" in capsys.readouterr().err
    assert main([str(files["e"]), str(files["l"]), "--preset", "CUB_200_2011"]) == 0
    assert "| R@1 | R@2 | R@4 | R@8 |" in capsys.readouterr().out


def test_unwritable_out_is_named(files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    target = files["dir"] / "a_folder"
    target.mkdir()
    assert main([str(files["e"]), str(files["l"]), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the results to {target}" in err and "--out" in err
    assert os.listdir(target) == []
