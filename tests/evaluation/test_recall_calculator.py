"""RecallAtKCalculator inside PML: metrics, PML's own metrics, testers, logging presets, presets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch
from pytorch_metric_learning.testers import GlobalEmbeddingSpaceTester
from pytorch_metric_learning.utils import logging_presets
from recall_reference import brute_force_hits

from pml_proxy_anchor.evaluation import RecallAtKCalculator, compute_recall_at_k, presets

CPU = torch.device("cpu")


def _clustered(n: int, d: int, classes: int, seed: int, noise: float = 0.8):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, d, generator=g)
    x = centres[labels] + noise * torch.randn(n, d, generator=g)
    return torch.nn.functional.normalize(x, dim=1), labels


def test_metrics_are_one_per_k_and_match_brute_force() -> None:
    x, y = _clustered(200, 8, 20, seed=0)
    calc = RecallAtKCalculator(k_values=(1, 2, 4, 8), device=CPU, normalize=False)
    out = calc.get_accuracy(x, y)
    assert list(out) == ["recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8"]
    ref = brute_force_hits(x.numpy(), y.numpy(), None, None, (1, 2, 4, 8))
    for k in (1, 2, 4, 8):
        assert out[f"recall_at_{k}"] == pytest.approx(ref[k].mean(), abs=1e-12)


def test_pml_metrics_keep_working_alongside() -> None:
    x, y = _clustered(160, 8, 16, seed=1)
    calc = RecallAtKCalculator(
        k_values=(1, 10),
        include=("recall_at_1", "precision_at_1", "r_precision", "mean_average_precision_at_r"),
        device=CPU,
    )
    out = calc.get_accuracy(x, y)
    assert set(out) == {
        "recall_at_1",
        "precision_at_1",
        "r_precision",
        "mean_average_precision_at_r",
    }
    # no lone queries, continuous data: P@1 (PML, faiss) and R@1 (ours) are the same quantity
    assert out["precision_at_1"] == pytest.approx(out["recall_at_1"], abs=1e-12)
    assert 0.0 < out["mean_average_precision_at_r"] <= out["r_precision"] + 1e-12 <= 1.0 + 1e-12
    assert set(calc.get_curr_metrics()) == set(out)


def test_include_empty_means_every_metric_and_exclude_works() -> None:
    calc = RecallAtKCalculator(k_values=(1, 4), include=(), exclude=("NMI", "AMI"), device=CPU)
    names = calc.get_curr_metrics()
    assert {"recall_at_1", "recall_at_4", "precision_at_1", "r_precision"} <= set(names)
    assert "NMI" not in names
    with pytest.raises(ValueError, match=r"'recall_at_2', but its K is not in k_values \(1,\)"):
        RecallAtKCalculator(k_values=(1,), include=("recall_at_2",))


def test_avg_of_avgs_and_per_class() -> None:
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.2]])
    y = torch.tensor([0, 0, 1, 1, 1])  # item 4 (class 1) sits in class 0's cluster: a miss
    per_class = RecallAtKCalculator(k_values=(1,), return_per_class=True, device=CPU)
    assert per_class.get_accuracy(x, y)["recall_at_1"] == pytest.approx([1.0, 2 / 3], abs=1e-12)
    avg = RecallAtKCalculator(k_values=(1,), avg_of_avgs=True, device=CPU)
    assert avg.get_accuracy(x, y)["recall_at_1"] == pytest.approx((1.0 + 2 / 3) / 2, abs=1e-12)


def test_approximate_option_agrees_on_small_data() -> None:
    x, y = _clustered(400, 16, 40, seed=2)
    exact = RecallAtKCalculator(k_values=(1, 4), device=CPU).get_accuracy(x, y)
    approx_calc = RecallAtKCalculator(k_values=(1, 4), exact=False, device=CPU)
    approx = approx_calc.get_accuracy(x, y)
    for k in exact:  # HNSW on 400 points with efSearch >= 64 finds (almost) every neighbour
        assert approx[k] == pytest.approx(exact[k], abs=0.01)
    assert approx_calc.description() == "approx"


def test_presets() -> None:
    assert presets.recall_k_values("CUB_200_2011") == (1, 2, 4, 8)
    assert presets.recall_k_values("cars196") == (1, 2, 4, 8)
    assert presets.recall_k_values("SOP") == (1, 10, 100, 1000)
    assert presets.recall_k_values("Stanford_Online_Products") == (1, 10, 100, 1000)
    assert presets.recall_k_values("In-Shop") == (1, 10, 20, 30, 40)
    assert presets.recall_k_values("omniglot") == (1, 2, 4, 8)
    calc = presets.calculator_for("inshop", device=CPU)
    assert calc.get_curr_metrics() == [f"recall_at_{k}" for k in (1, 10, 20, 30, 40)]
    assert presets.calculator_for("sop", k_values=(1, 5)).k_values == (1, 5)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def _tester_setup(tmp_path: Path | None = None):
    torch.manual_seed(0)
    raw, y = _clustered(180, 12, 15, seed=3, noise=1.2)
    model = torch.nn.Linear(12, 6)
    data = {
        "query": _Pairs(raw[:60], y[:60]),
        "gallery": _Pairs(raw[60:], y[60:]),
        "test": _Pairs(raw, y),
    }
    return model, data


def _embed(model: torch.nn.Module, ds: _Pairs) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return torch.nn.functional.normalize(model(ds.x), dim=1), ds.y


def test_global_embedding_space_tester_query_vs_gallery_and_self() -> None:
    model, data = _tester_setup()
    tester = GlobalEmbeddingSpaceTester(
        accuracy_calculator=RecallAtKCalculator(k_values=(1, 2, 4), device=CPU),
        data_device=CPU,
        dataloader_num_workers=0,
        batch_size=64,
    )
    acc = tester.test(data, 1, model, splits_to_eval=[("query", ["gallery"]), ("test", ["test"])])
    assert {"recall_at_1_level0", "recall_at_2_level0", "recall_at_4_level0"} <= set(acc["query"])
    q, ql = _embed(model, data["query"])
    g, gl = _embed(model, data["gallery"])
    t, tl = _embed(model, data["test"])
    ref_qg = brute_force_hits(q.numpy(), ql.numpy(), g.numpy(), gl.numpy(), (1, 2, 4))
    ref_self = brute_force_hits(t.numpy(), tl.numpy(), None, None, (1, 2, 4))
    for k in (1, 2, 4):  # query/gallery: nothing excluded; a split against itself: self-retrieval
        assert acc["query"][f"recall_at_{k}_level0"] == pytest.approx(ref_qg[k].mean(), abs=1e-6)
        assert acc["test"][f"recall_at_{k}_level0"] == pytest.approx(ref_self[k].mean(), abs=1e-6)


def test_results_reach_record_keeper_through_logging_presets(tmp_path: Path) -> None:
    model, data = _tester_setup()
    record_keeper, _, _ = logging_presets.get_record_keeper(
        str(tmp_path / "logs"), str(tmp_path / "tensorboard")
    )
    hooks = logging_presets.get_hook_container(
        record_keeper, primary_metric="recall_at_1", validation_split_name="query"
    )
    tester = GlobalEmbeddingSpaceTester(
        accuracy_calculator=RecallAtKCalculator(k_values=(1, 2), device=CPU),
        end_of_testing_hook=hooks.end_of_testing_hook,
        data_device=CPU,
        dataloader_num_workers=0,
    )
    splits = [("query", ["gallery"])]
    for epoch in (1, 2):
        hooks.run_tester_separately(
            tester, data, epoch, model, None, splits_to_eval=splits, skip_eval_if_already_done=False
        )
        record_keeper.save_records()
    history = hooks.get_accuracy_history(tester, "query", return_all_metrics=True)
    assert history["epoch"] == [1, 2]
    assert len(history["recall_at_1_level0"]) == 2
    assert history["recall_at_1_level0"][-1] == pytest.approx(
        tester.all_accuracies["query"]["recall_at_1_level0"], abs=1e-9
    )
    best_epoch, best = hooks.get_best_epoch_and_accuracy(tester, "query")
    assert best_epoch in (1, 2) and best == pytest.approx(max(history["recall_at_1_level0"]))
    dbs = list((tmp_path / "logs").rglob("*.db"))
    assert dbs, "record-keeper wrote no SQLite file"
    with sqlite3.connect(dbs[0]) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        cols = {c[1] for t in tables for c in con.execute(f"PRAGMA table_info('{t}')")}
    assert "recall_at_1_level0" in cols


def test_compute_recall_at_k_matches_calculator() -> None:
    x, y = _clustered(150, 8, 10, seed=4)
    calc = RecallAtKCalculator(k_values=(1, 3), device=CPU)
    assert compute_recall_at_k(x.numpy(), y.numpy(), k_values=(1, 3)) == calc.get_accuracy(x, y)
