"""``torchrun --nproc_per_node=2 -m pml_proxy_anchor train`` end to end (CUB fixture, CPU, gloo).

One 2-process run with class-sharded proxies, through the real command line, for 2 epochs; then:

- it exits 0, and rank 0 alone printed the summary and wrote the run directory;
- its checkpoint holds the full (C, D) proxy matrix and full AdamW moments, equal to those of a
  single-process run with the same global batch (the trainer splits the same global batches over
  the ranks, and the loss is that of the whole global batch): the end-to-end form of the
  equivalence that tests/distributed checks per step;
- resumed with ONE process (``python -m pml_proxy_anchor train ... --resume``), it loads exactly
  those proxies and trains one more epoch, ending where the single-process run resumed to the same
  epoch ends;
- the same holds with replicated proxies and a PML sampler split over the ranks (1 epoch);
- ranks that resolve different configs stop with ``ConfigMismatchError`` and a non-zero exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from dist_workers import free_port

from pml_proxy_anchor.cli import main
from pml_proxy_anchor.training import checkpoint, load_config, run
from pml_proxy_anchor.training.run import TrainingRun
from tests.training.fixture_run import TRAIN_CLASSES, fixture_overrides, make_data

EMBEDDING = 16  # fixture_overrides' model.embedding_size
ATOL = 1e-5  # float32 sums in a different order (2 ranks vs 1 process); measured ~2e-7
LAUNCH_TIMEOUT_S = 300


def _torchrun(config: Path, *args: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--master_port={free_port()}",
        "-m",
        "pml_proxy_anchor",
        "train",
        str(config),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
    )


def _last(run_dir: Path) -> dict[str, Any]:
    return checkpoint.load(run_dir / "checkpoints" / checkpoint.LAST)


def _proxy_moments(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    (moments,) = state["optimizers"]["metric_loss_optimizer"]["state"].values()
    return {k: v for k, v in moments.items() if torch.is_tensor(v) and v.ndim == 2}


def _assert_same_training_state(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["epoch"] == want["epoch"]
    for group in ("models", "loss_funcs"):
        for name, state in want[group].items():
            for key, value in state.items():
                torch.testing.assert_close(
                    got[group][name][key].float(), value.float(), rtol=0, atol=ATOL, msg=key
                )
    for key, value in _proxy_moments(want).items():
        torch.testing.assert_close(_proxy_moments(got)[key], value, rtol=0, atol=ATOL)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 2-process sharded run (torchrun) and the single-process reference on the same data."""
    base = tmp_path_factory.mktemp("torchrun")
    data = make_data(base / "data")
    config = base / "fixture.yaml"
    config.write_text(yaml.safe_dump(fixture_overrides(data, base / "two")))
    proc = _torchrun(config, "train.proxies=sharded", cwd=base)
    assert proc.returncode == 0, f"torchrun exit code {proc.returncode}\n{proc.stderr[-6000:]}"
    single = run(load_config(fixture_overrides(data, base / "one")))
    return {"base": base, "data": data, "config": config, "proc": proc, "single": single}


def test_two_processes_exit_0_and_only_rank_0_writes(two_ranks: dict[str, Any]) -> None:
    out, run_dir = two_ranks["proc"].stdout, two_ranks["base"] / "two"
    assert out.count("finished: 2 of 2 epochs.") == 1, out
    assert out.count("epoch 1/2  loss") == 1 and out.count("epoch 2/2  loss") == 1, out
    results = yaml.safe_load((run_dir / "results.json").read_text())  # JSON is YAML
    assert results["status"] == "finished"
    assert [r["epoch"] for r in results["history"]] == [1, 2]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert len(list((run_dir / "logs" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert len(list((run_dir / "logs" / "csv").glob("accuracies_*.csv"))) == 1
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["proxies"] == "sharded" and saved["train"]["batch_size"] == 8
    assert not (two_ranks["base"] / "runs").exists()


def test_checkpoint_holds_the_full_proxies_of_the_global_batch_run(
    two_ranks: dict[str, Any],
) -> None:
    got, want = _last(two_ranks["base"] / "two"), _last(two_ranks["base"] / "one")
    assert got["loss_funcs"]["metric_loss"]["proxies"].shape == (len(TRAIN_CLASSES), EMBEDDING)
    moments = _proxy_moments(got)
    assert set(moments) == {"exp_avg", "exp_avg_sq"}
    assert all(m.shape == (len(TRAIN_CLASSES), EMBEDDING) for m in moments.values())
    _assert_same_training_state(got, want)
    for a, b in zip(got["history"], two_ranks["single"]["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_resume_on_one_process_loads_the_proxies_and_continues(
    two_ranks: dict[str, Any],
) -> None:
    base, data = two_ranks["base"], two_ranks["data"]
    resumed = base / "resumed"
    shutil.copytree(base / "two", resumed)
    saved = _last(resumed)
    # One process rebuilds the (plain, unsharded) loss and loads the gathered matrix unchanged.
    training = TrainingRun(load_config(fixture_overrides(data, resumed)), resumed)
    assert training.restore(saved) == 3
    assert torch.equal(
        training.parts.loss.proxies.detach(), saved["loss_funcs"]["metric_loss"]["proxies"]
    )
    (state,) = training.parts.optimizers["metric_loss_optimizer"].state.values()
    for key, value in _proxy_moments(saved).items():
        assert torch.equal(state[key], value)
    # The command line, one process, one more epoch.
    args = ["train", str(two_ranks["config"]), "train.epochs=3", "--run-dir", str(resumed)]
    assert main([*args, "--resume"]) == 0
    after = _last(resumed)
    assert after["epoch"] == 3 and [r["epoch"] for r in after["history"]] == [1, 2, 3]
    assert after["history"][:2] == saved["history"]
    proxies = after["loss_funcs"]["metric_loss"]["proxies"]
    assert (proxies - saved["loss_funcs"]["metric_loss"]["proxies"]).abs().max() > 1e-4
    # ... and ends where the single-process run, resumed to epoch 3, ends.
    reference = base / "one_resumed"
    shutil.copytree(base / "one", reference)
    run(load_config(fixture_overrides(data, reference, **{"train.epochs": 3})), resume=True)
    _assert_same_training_state(after, _last(reference))


def test_replicated_proxies_with_a_pml_sampler_split_over_two_processes(
    two_ranks: dict[str, Any],
) -> None:
    """Replicated proxies (GlobalBatchLoss) and PML's MPerClassSampler (built for the global batch,
    its order split over the ranks by ShardedSampler): again the single-process run."""
    base, data = two_ranks["base"], two_ranks["data"]
    sampler = {"pml.MPerClassSampler": {"m": 2, "length_before_new_iter": 24}}
    extra = {"train.epochs": 1, "sampler": sampler}
    config = base / "sampler.yaml"
    config.write_text(yaml.safe_dump(fixture_overrides(data, base / "two_sampler", **extra)))
    proc = _torchrun(config, "train.proxies=replicated", cwd=base)
    assert proc.returncode == 0, f"torchrun exit code {proc.returncode}\n{proc.stderr[-6000:]}"
    run(load_config(fixture_overrides(data, base / "one_sampler", **extra)))
    got, want = _last(base / "two_sampler"), _last(base / "one_sampler")
    assert got["config"]["train"]["proxies"] == "replicated"
    _assert_same_training_state(got, want)


def test_ranks_with_different_configs_stop_with_a_clear_error(
    two_ranks: dict[str, Any],
) -> None:
    base = two_ranks["base"]
    run_dir = base / "mismatch"
    proc = _torchrun(
        two_ranks["config"], "+model.note=${oc.env:RANK}", "--run-dir", str(run_dir), cwd=base
    )
    assert proc.returncode != 0
    assert "the ranks resolved different configs" in proc.stderr
    assert "model.note: '0' (rank 0) vs '1' (rank 1)" in proc.stderr
    assert not run_dir.exists()
