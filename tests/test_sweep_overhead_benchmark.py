"""Smoke test of reproduce/benchmarks/sweep_overhead.py at its tiniest budget: the separate
``train`` runs, the sweep of the same jobs and the joblib sweep all finish, and the JSON holds both
ratios. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.fixtures.benchmarks import load_benchmark


def _bench():
    return load_benchmark("sweep_overhead")


def test_tiny_run_times_every_contender_and_writes_the_ratios(tmp_path: Path) -> None:
    out = tmp_path / "sweep_overhead.json"
    args = ["--quick", "--iters", "2", "--repeats", "1", "--out", str(out)]
    assert _bench().main(args) == 0
    result = json.loads(out.read_text())
    assert (result["epochs"], result["iterations_per_epoch"], result["repeats"]) == (1, 2, 1)
    assert result["jobs"] == 3 and result["threads_per_job"] == 1
    for name in ("separate", "sweep", "one_job", "two_jobs"):
        assert len(result["times_s"][name]) == 1 and result["times_s"][name][0] > 0
    ratios = result["ratios"]
    assert set(ratios) == {"sweep_vs_separate", "two_jobs_vs_one"}
    assert all(isinstance(r, float) and r > 0 for r in ratios.values())
    assert "2 jobs, joblib n_jobs=2, 1 thread each" in result["table"]


def test_the_experiment_sweeps_the_seeds_with_the_overrides_as_its_budget(tmp_path: Path) -> None:
    bench = _bench()
    path = bench.write_experiment(
        tmp_path / "exp.yaml", ["train.epochs=1", "model.channels=[8, 8]", "data.augment=false"]
    )
    experiment = yaml.safe_load(path.read_text())
    assert experiment == {
        "base_config": "omniglot",
        "budget": {
            "train": {"epochs": 1},
            "model": {"channels": [8, 8]},
            "data": {"augment": False},
        },
        "hydra": {"sweeper": {"params": {"train.seed": "1,2,3"}}},
    }
    with pytest.raises(ValueError, match="'train.epochs' is not key=value"):
        bench.parse_overrides(["train.epochs"])


def test_bad_budget_flags_are_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        _bench().main(["--iters", "0"])
    assert "--iters, --epochs and --repeats must be at least 1" in capsys.readouterr().err
