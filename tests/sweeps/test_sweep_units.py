"""Units of the sweep layer: values handed from Hydra to the config loader, torch threads per
job, chosen learning rates (reading and choosing), and their bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pml_proxy_anchor.sweeps.chosen_lr import choose_lr, choose_lr_command
from pml_proxy_anchor.sweeps.errors import SweepConfigError
from pml_proxy_anchor.sweeps.experiment import (
    Experiment,
    config_override,
    flatten_settings,
    format_value,
    parse_overrides,
    read_chosen_lr,
)
from pml_proxy_anchor.sweeps.job import THREADS_ENV, job_threads
from pml_proxy_anchor.training.config_overrides import parse_value


@pytest.mark.parametrize(
    "value",
    [4, 0.0001, 1e-12, -3.5, True, None, "3", "a b", "/x/y", [1, 2], {"A": {"m": 2}}, math.inf],
)
def test_values_reach_the_loader_unchanged(value: object) -> None:
    assert parse_value(format_value(value)) == value


def test_hydra_overrides_become_loader_overrides() -> None:
    parsed = parse_overrides(["a.b=1e-4", "+c=x", "loss={MultiSimilarityLoss: {alpha: 2}}"])
    assert [config_override(o) for o in parsed] == [
        "a.b=0.0001",
        "+c=x",
        "loss={MultiSimilarityLoss: {alpha: 2}}",
    ]
    (delete,) = parse_overrides(["~train.seed"])
    with pytest.raises(SweepConfigError, match=r"deleting a key.*train.seed=null"):
        config_override(delete)
    with pytest.raises(SweepConfigError, match=r"a=\("):
        parse_overrides(["a=("])


def test_settings_flatten_to_overrides_and_specs_stay_whole() -> None:
    settings = {"train": {"epochs": 6}, "loss": {"MultiSimilarityLoss": {"alpha": 2}}}
    assert flatten_settings(settings, "budget") == [
        "train.epochs=6",
        "loss={MultiSimilarityLoss: {alpha: 2}}",
    ]
    with pytest.raises(SweepConfigError, match=r"budget must be a mapping"):
        flatten_settings([1, 2], "budget")


def test_threads_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    joblib = OmegaConf.create({"_target_": "x.JoblibLauncher", "n_jobs": 2})
    basic = OmegaConf.create({"_target_": "x.BasicLauncher"})
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert job_threads(joblib, cpu_count=8) == 4
    assert job_threads(joblib, cpu_count=1) == 1
    assert job_threads(OmegaConf.create({"_target_": "JoblibLauncher", "n_jobs": -1}), 8) == 1
    assert job_threads(basic, cpu_count=8) is None
    monkeypatch.setenv(THREADS_ENV, "3")
    assert job_threads(basic, cpu_count=8) == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(SweepConfigError, match=THREADS_ENV):
            job_threads(basic)


def test_chosen_lr_files_and_their_bad_versions(tmp_path: Path) -> None:
    experiment = Experiment("x", tmp_path / "x.yaml")
    (tmp_path / "ok.json").write_text(json.dumps({"a": 1e-3, "b": None}))
    assert read_chosen_lr("ok.json", experiment) == {"a": 1e-3, "b": None}
    assert read_chosen_lr({"a": 1}, experiment) == {"a": 1.0}
    with pytest.raises(SweepConfigError, match=r"missing.json does not exist.*--choose-lr"):
        read_chosen_lr("missing.json", experiment)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SweepConfigError, match=r"bad.json is not valid"):
        read_chosen_lr("bad.json", experiment)
    for lr in (0, -1e-3, "fast", True, math.nan):
        with pytest.raises(SweepConfigError, match=r"learning rate of 'a' must be a positive"):
            read_chosen_lr({"a": lr}, experiment)
    with pytest.raises(SweepConfigError, match=r"must map each method"):
        read_chosen_lr([1e-3], experiment)


def _fake_lr_sweep(root: Path, r1: dict[tuple[str, float, int], float | None]) -> Path:
    """A compare_lr sweep directory: sweep.json and a results.json per job (None: failed)."""
    jobs = []
    for (method, lr, seed), value in r1.items():
        name = f"method={method},optimizer.lr={lr},train.seed={seed}"
        (root / name).mkdir(parents=True)
        history = [] if value is None else [{"epoch": 1, "recall_at_1": value}]
        status = "failed" if value is None else "finished"
        (root / name / "results.json").write_text(
            json.dumps({"status": status, "epochs": 1, "history": history})
        )
        jobs.append({"name": name, "params": {"method": method, "optimizer.lr": lr}})
    record = {"experiment": "t", "parameters": ["method", "optimizer.lr", "train.seed"]}
    (root / "sweep.json").write_text(json.dumps({**record, "jobs": jobs}))
    return root


def test_choose_lr_takes_the_best_mean_final_recall(tmp_path: Path) -> None:
    sweep = _fake_lr_sweep(
        tmp_path / "s",
        {
            ("a", 1e-4, 1): 0.5,
            ("a", 1e-4, 2): 0.7,  # mean 0.6
            ("a", 1e-3, 1): 0.65,
            ("a", 1e-3, 2): 0.6,  # mean 0.625: chosen
            ("b", 1e-4, 1): 0.8,  # tie: the smaller lr
            ("b", 1e-3, 1): 0.8,
            ("c", 1e-3, 1): None,  # failed: no lr for c
        },
    )
    assert choose_lr(sweep) == {"a": 1e-3, "b": 1e-4, "c": None}
    out = tmp_path / "chosen.json"
    assert choose_lr_command(sweep, out) == 1  # c has no finished job
    assert json.loads(out.read_text()) == {"a": 1e-3, "b": 1e-4, "c": None}


def test_choose_lr_refuses_a_sweep_without_methods_and_lrs(tmp_path: Path) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps({"parameters": ["train.seed"], "jobs": []}))
    with pytest.raises(SweepConfigError, match=r"does not sweep method and optimizer.lr"):
        choose_lr(tmp_path)
    with pytest.raises(SweepConfigError, match=r"not a sweep directory"):
        choose_lr(tmp_path / "nothing")


@pytest.mark.parametrize("flags_first", [True, False])
def test_choose_lr_through_the_command_line_in_the_readmes_word_order(
    tmp_path: Path, flags_first: bool
) -> None:
    # `pml-proxy-anchor sweep --choose-lr DIR --out FILE` (the README's form) once failed with
    # "--choose-lr: expected one argument": the top-level parser reordered the arguments.
    from pml_proxy_anchor.cli import main as cli_main

    sweep = _fake_lr_sweep(tmp_path / "s", {("a", 1e-4, 1): 0.5, ("a", 1e-3, 1): 0.6})
    out = tmp_path / "chosen.json"
    args = ["--choose-lr", str(sweep), "--out", str(out)]
    argv = ["sweep", *args] if flags_first else ["-v", "sweep", *args[2:], *args[:2]]
    assert cli_main(argv) == 0
    assert json.loads(out.read_text()) == {"a": 1e-3}
