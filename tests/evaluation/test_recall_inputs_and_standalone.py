"""Bad input -> clear errors; absent classes -> counted misses; the standalone entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_proxy_anchor.evaluation import RecallAtKWarning, RecallInputError, compute_recall_at_k
from pml_proxy_anchor.evaluation.standalone import evaluate_files, format_table, main

X = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2, 2]]
Y = np.array([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"query_labels": Y[:5]},
            r"length mismatch: query embeddings has 6 rows but query labels has 5",
        ),
        ({"k_values": (1, 6)}, r"K=6 is larger than the gallery.*N - 1 = 5"),
        ({"k_values": (0, 1)}, r"positive integers"),
        ({"query": np.zeros((0, 4), np.float32), "query_labels": []}, r"is empty"),
        ({"query": X[0]}, r"2-D array"),
        ({"query_labels": Y + 0.5}, r"non-integer"),
        ({"gallery": X}, r"without gallery_labels"),
        ({"gallery_labels": Y}, r"gallery_labels were given without gallery"),
        ({"gallery": X[:, :3], "gallery_labels": Y}, r"dimension 4 but gallery embeddings have 3"),
        ({"gallery": X[:3], "gallery_labels": Y[:3], "k_values": (4,)}, r"only 3 items"),
    ],
)
def test_bad_input_raises_clear_error(kwargs: dict, match: str) -> None:
    args = {"query": X, "query_labels": Y, "k_values": (1,)} | kwargs
    with pytest.raises(RecallInputError, match=match):
        compute_recall_at_k(**args)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_embeddings_name_the_rows(bad: float) -> None:
    x = X.copy()
    x[3, 1] = bad
    with pytest.raises(
        RecallInputError, match=r"1 row\(s\) with NaN or Inf values \(first rows: \[3\]\)"
    ):
        compute_recall_at_k(x, Y, k_values=(1,))
    with pytest.raises(RecallInputError, match="gallery embeddings has 1 row"):
        compute_recall_at_k(X, Y, x, Y, k_values=(1,))


def test_error_is_a_value_error() -> None:
    assert issubclass(RecallInputError, ValueError)


def test_absent_class_counts_as_miss_with_warning() -> None:
    q = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    g = np.array([[1, 0], [0, 1]], dtype=np.float32)
    with pytest.warns(RecallAtKWarning, match=r"1 of 3 queries have no item of their class"):
        out = compute_recall_at_k(q, [0, 1, 5], g, [0, 1], k_values=(1, 2))
    assert out == {
        "recall_at_1": pytest.approx(2 / 3, abs=1e-12),
        "recall_at_2": pytest.approx(2 / 3, abs=1e-12),
    }
    # self-retrieval: a singleton class has no positive either
    with pytest.warns(RecallAtKWarning, match=r"2 of 6 queries"):
        out = compute_recall_at_k(X, [0, 0, 1, 1, 2, 3], k_values=(1,))
    assert out["recall_at_1"] == pytest.approx(4 / 6, abs=1e-12)


def _write(tmp_path: Path, suffix: str) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(10), 4)
    x = (np.eye(10)[labels] + 0.6 * rng.standard_normal((40, 10))).astype(np.float32)
    paths = {}
    for name, arr in {
        "qe": x[:15],
        "ql": labels[:15],
        "ge": x[15:],
        "gl": labels[15:],
        "e": x,
        "l": labels,
    }.items():
        paths[name] = tmp_path / f"{name}{suffix}"
        if suffix == ".npy":
            np.save(paths[name], arr)
        else:
            torch.save(torch.from_numpy(arr), paths[name])
    paths["x"], paths["labels"] = x, labels  # type: ignore[assignment]
    return paths


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_evaluate_files_both_protocols_write_json(tmp_path: Path, suffix: str) -> None:
    p = _write(tmp_path, suffix)
    x, labels = p["x"], p["labels"]
    out = evaluate_files(p["e"], p["l"], k_values=(1, 2), out_json=tmp_path / "self.json")
    assert out["protocol"] == "self-retrieval" and out["num_gallery"] == 39
    assert out == json.loads((tmp_path / "self.json").read_text())
    assert out["recall_at_1"] == compute_recall_at_k(x, labels, k_values=(1,))["recall_at_1"]
    qg = evaluate_files(p["qe"], p["ql"], p["ge"], p["gl"], k_values=(1, 10))
    expected = compute_recall_at_k(x[:15], labels[:15], x[15:], labels[15:], (1, 10))
    assert {k: qg[k] for k in expected} == expected
    assert qg["protocol"] == "query/gallery" and qg["queries_without_positive"] == 0
    table = format_table(qg)
    assert "| R@1 | R@10 |" in table and f"{100 * qg['recall_at_1']:.2f}" in table


def test_main_prints_table_and_reports_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    p = _write(tmp_path, ".npy")
    files = [str(p["qe"]), str(p["ql"]), "--gallery", str(p["ge"]), str(p["gl"])]
    rc = main([*files, "--preset", "cub200", "--out", str(tmp_path / "r.json")])
    assert rc == 0
    assert "| R@1 | R@2 | R@4 | R@8 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["k_values"] == [1, 2, 4, 8]
    rc = main([*files, "--preset", "inshop"])  # K=40 > 25 gallery items
    assert rc == 2 and "K=40 is larger than the gallery" in capsys.readouterr().err
    rc = main([str(tmp_path / "missing.npy"), str(p["ql"])])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    p = _write(tmp_path, ".npy")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pml_proxy_anchor.evaluation.standalone",
            str(p["e"]),
            str(p["l"]),
            "--k",
            "1",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "| R@1 | R@5 |" in done.stdout and "self-retrieval: 40 queries" in done.stdout
