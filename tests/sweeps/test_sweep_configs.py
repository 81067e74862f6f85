"""The shipped sweep configs: every job of every experiment loads with load_config (no training),
every method builds through the registry with the Omniglot config, the launchers compose."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from pml_proxy_anchor.sweeps.experiment import (
    builtin_experiments,
    flatten_settings,
    sweeps_config_dir,
)
from pml_proxy_anchor.sweeps.launch import plan_sweep
from pml_proxy_anchor.training import builders, load_config

DATASETS = ("omniglot", "cub200", "cars196", "sop", "inshop")
EXPERIMENTS = ("compare_lr", "compare", "batch_size", "embedding_size", "alpha_delta")
METHODS = sorted(p.stem for p in (sweeps_config_dir() / "method").glob("*.yaml"))
PAIR_LOSSES = {"multi_similarity", "triplet_semihard", "contrastive", "npairs"}
PROXY_LOSSES = {"proxy_anchor", "pml_proxy_anchor", "proxy_nca", "normalized_softmax"}
JOBS = {"compare_lr": 30, "compare": 30, "batch_size": 15, "embedding_size": 12, "alpha_delta": 25}


def _chosen(tmp_path: Path) -> Path:
    path = tmp_path / "chosen.json"
    path.write_text(json.dumps({method: 1e-3 for method in METHODS}))
    return path


def plan_images(name: str) -> int:
    experiment = yaml.safe_load((sweeps_config_dir() / f"{name}.yaml").read_text())
    return int(experiment["train_images"])


def test_every_experiment_is_shipped() -> None:
    assert builtin_experiments() == sorted(f"{d}/{e}" for d in DATASETS for e in EXPERIMENTS)
    assert len(METHODS) == 10


@pytest.mark.parametrize("name", [f"{d}/{e}" for d in DATASETS for e in EXPERIMENTS])
def test_every_job_of_every_experiment_loads(tmp_path: Path, name: str) -> None:
    text = (sweeps_config_dir() / f"{name}.yaml").read_text()
    chosen = [f"chosen_lr={_chosen(tmp_path)}"] if "chosen_lr:" in text else []
    plan = plan_sweep(name, chosen, sweep_dir=tmp_path / "s")
    assert len(plan.jobs) == JOBS[name.split("/")[1]]
    assert len({job.name for job in plan.jobs}) == len(plan.jobs)  # one folder per job
    assert all("train.seed=" in job.name for job in plan.jobs)  # seeds name the folders
    assert plan.settings.base_config == (
        "omniglot" if name.startswith("omniglot") else f"{name.split('/')[0]}_bninception"
    )
    if name.startswith("omniglot/") and name.split("/")[1] in ("batch_size", "alpha_delta"):
        assert plan.record.budget == {
            "data.name": "omniglot",
            "train.epochs": 6,
            **{"scheduler.step": 2},
        }
    job = plan.jobs[0]
    cfg = job.config(plan.settings)
    assert cfg.run_dir == str(tmp_path / "s" / job.name)
    for job in plan.jobs:
        if job.params.get("method") == "multi_similarity":  # the group's interpolation resolved
            sampler = job.config(plan.settings).sampler.MPerClassSampler
            assert sampler == {"m": 4, "length_before_new_iter": plan_images(name)}


def test_the_proxy_anchor_job_of_compare_is_the_default_omniglot_run(tmp_path: Path) -> None:
    plan = plan_sweep("omniglot/compare", [f"chosen_lr={_chosen(tmp_path)}"], tmp_path / "s")
    (job,) = [j for j in plan.jobs if j.name == "method=proxy_anchor,train.seed=1"]
    swept = job.config(plan.settings)
    default = load_config("omniglot", [f"run_dir={job.run_dir}"])
    assert swept == default


@pytest.mark.parametrize("dataset", ["cub200", "cars196", "sop", "inshop"])
def test_compare_refuses_to_start_without_chosen_learning_rates(
    tmp_path: Path, dataset: str
) -> None:
    # The GPU data sets ship chosen_lr.json with null for every method (not chosen yet).
    with pytest.raises(ValueError, match=r"learning rate of method 'proxy_anchor' is null"):
        plan_sweep(f"{dataset}/compare", sweep_dir=tmp_path / "s")


def test_a_chosen_lr_file_with_a_null_is_refused_naming_it(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.json"
    chosen.write_text(json.dumps({"proxy_anchor": None}))
    with pytest.raises(ValueError, match=r"method 'proxy_anchor' is null.*chosen.json"):
        plan_sweep("omniglot/compare", [f"chosen_lr={chosen}"], sweep_dir=tmp_path / "s")


def test_omniglot_ships_the_lr_its_compare_lr_sweep_chose() -> None:
    # configs/sweeps/omniglot/chosen_lr.json is the --choose-lr output of the committed sweep.
    from pml_proxy_anchor.sweeps.chosen_lr import choose_lr

    shipped = json.loads((sweeps_config_dir() / "omniglot" / "chosen_lr.json").read_text())
    committed = Path(__file__).resolve().parents[2] / "reproduce/results/omniglot/compare_lr/jobs"
    assert shipped == choose_lr(committed)
    assert set(shipped) == set(METHODS)


def test_the_omniglot_train_split_has_train_images_images() -> None:
    from pml_proxy_anchor.data import build_datasets

    cfg = load_config("omniglot")
    train = build_datasets(cfg.data, "small_cnn")["train"]
    for name in ("compare_lr", "compare", "embedding_size"):
        experiment = yaml.safe_load((sweeps_config_dir() / "omniglot" / f"{name}.yaml").read_text())
        assert experiment["train_images"] == len(train) == 9360


@pytest.mark.parametrize("method", METHODS)
def test_every_method_builds_with_the_omniglot_config(method: str) -> None:
    content = OmegaConf.load(sweeps_config_dir() / "method" / f"{method}.yaml")
    resolved = OmegaConf.to_container(
        OmegaConf.merge({"train_images": 9360}, content), resolve=True
    )
    resolved.pop("train_images")
    overrides = flatten_settings(resolved, method)
    cfg = load_config("omniglot", overrides)
    models = builders.build_models(cfg, torch.device("cpu"))
    loss = builders.build_loss(cfg, 468, 512, torch.device("cpu"))
    miner = builders.build_miner(cfg)
    labels = torch.arange(468).repeat_interleave(20)
    sampler = builders.build_sampler(cfg, labels)
    assert (sampler is not None) == (method in PAIR_LOSSES or method.endswith("mperclass"))
    if sampler is not None:
        # As many images per epoch as random batches (whole batches of 128).
        assert len(sampler) == 9360 - 9360 % 128
    assert (miner is not None) == (method in ("multi_similarity", "triplet_semihard"))
    optimizers, _ = builders.build_optimizers(cfg, models, loss)
    learned = list(loss.parameters())
    if method in PROXY_LOSSES | {"soft_triple", "proxy_anchor_mperclass"}:
        assert learned and {468, 4680} & set(learned[0].shape)  # the proxies / centers
        group = optimizers["metric_loss_optimizer"].param_groups[0]
        assert {id(p) for p in group["params"]} == {id(p) for p in learned}
        assert group["lr"] == pytest.approx(1e-3 * 100)  # proxy_lr_multiplier
    else:
        assert not learned and "metric_loss_optimizer" not in optimizers
    embeddings = torch.nn.functional.normalize(
        torch.randn(16, 512, generator=torch.Generator().manual_seed(0)), dim=1
    )
    batch_labels = torch.arange(4).repeat_interleave(4)
    pairs = miner(embeddings, batch_labels) if miner is not None else None
    value = loss(embeddings, batch_labels, pairs)
    assert torch.isfinite(value)


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_slurm"])
def test_the_launcher_configs_compose(tmp_path: Path, launcher: str) -> None:
    plan = plan_sweep(
        "omniglot/alpha_delta", [f"hydra/launcher={launcher}"], sweep_dir=tmp_path / "s"
    )
    assert plan.launcher == launcher
    from hydra.types import RunMode

    with warnings.catch_warnings():  # launcher YAMLs match the plugins' schemas (job.py)
        warnings.simplefilter("ignore")
        cfg = plan.hydra.compose_config(
            "alpha_delta", plan.hydra_overrides, run_mode=RunMode.MULTIRUN
        )
    target = cfg.hydra.launcher._target_
    if launcher == "joblib":
        assert target.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    elif launcher == "submitit_slurm":
        assert target.endswith("SlurmLauncher")
        assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.partition is None
        assert cfg.hydra.launcher.submitit_folder == f"{tmp_path / 's'}/.submitit/%j"
    else:
        assert target.endswith("BasicLauncher")


def test_the_committed_proxy_anchor_seed_1_job_reproduces_the_main_command() -> None:
    # The comparison's Proxy-Anchor job at seed 1 (one torch thread, as joblib gives each of its
    # 2 workers) is the README's main command: the same Recall@1 after every epoch as the
    # committed 1-thread seed-1 run of `pml-proxy-anchor train omniglot`.
    results = Path(__file__).resolve().parents[2] / "reproduce/results/omniglot"
    job = results / "compare/jobs/method=proxy_anchor,train.seed=1/results.json"
    swept = json.loads(job.read_text())
    (main,) = [
        run
        for run in json.loads((results / "default/summary.json").read_text())["runs"]
        if run["seed"] == 1 and run["threads"] == 1
    ]
    curve = [entry["recall_at_1"] for entry in swept["history"]]
    assert len(curve) == len(main["recall_at_1_per_epoch"]) == 12
    np.testing.assert_allclose(curve, main["recall_at_1_per_epoch"], rtol=0, atol=1e-4)
    for k in (1, 2, 4, 8):
        key = f"recall_at_{k}"
        assert swept["final"]["metrics"][key] == pytest.approx(main["final"][key], abs=1e-4)
