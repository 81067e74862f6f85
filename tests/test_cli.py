"""The command line end to end on fixture data: train, resume, eval, embed, report, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_proxy_anchor.cli import main
from pml_proxy_anchor.data import CUB200
from tests.training.fixture_run import make_data

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _train_args(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        str(CONFIGS / "cub200_bninception.yaml"),
        "model.backbone=small_cnn",
        "+model.channels=8",
        "+model.blocks=2",
        "model.embedding_size=16",
        f"data.root={data}",
        "+data.image_size=32",
        "train.epochs=2",
        "train.batch_size=8",
        "train.num_workers=0",
        "train.device=cpu",
        "scheduler.step=1",
        "optimizer.lr=1e-3",
        "eval.batch_size=16",
        "--run-dir",
        str(run_dir),
        *extra,
    ]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cli")
    data = make_data(base / "data")
    run_dir = base / "run"
    assert main(_train_args(data, run_dir, "train.stop_after_epoch=1")) == 0
    assert main(_train_args(data, run_dir, "--resume")) == 0
    return {"data": data, "run": run_dir}


def test_train_then_resume_finishes_the_run(cli_run: dict[str, Path]) -> None:
    results = json.loads((cli_run["run"] / "results.json").read_text())
    assert results["status"] == "finished" and [r["epoch"] for r in results["history"]] == [1, 2]
    saved = (cli_run["run"] / "config.yaml").read_text()
    assert "backbone: small_cnn" in saved and "batch_size: 8" in saved


def test_eval_writes_the_evaluation_beside_the_paper(
    cli_run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(cli_run["run"]), "--device", "cpu"]) == 0
    assert "recall_at_1" in capsys.readouterr().out
    results = json.loads((cli_run["run"] / "results.json").read_text())
    best = results["best"]
    assert results["evaluation"]["epoch"] == best["epoch"]
    assert results["evaluation"]["metrics"]["recall_at_1"] == pytest.approx(
        best["metrics"]["recall_at_1"], abs=1e-9
    )
    assert "ours, eval of best.pt" in (cli_run["run"] / "results.md").read_text()


def test_embed_writes_npy_and_pt(cli_run: dict[str, Path], tmp_path: Path) -> None:
    paths = CUB200(str(cli_run["data"]), split="test").paths[:3]
    assert main(["embed", str(cli_run["run"]), *paths, "--out", str(tmp_path / "e.npy")]) == 0
    array = np.load(tmp_path / "e.npy")
    assert array.shape == (3, 16)
    assert main(["embed", str(cli_run["run"]), *paths, "--out", str(tmp_path / "e.pt")]) == 0
    saved = torch.load(tmp_path / "e.pt", weights_only=True)
    np.testing.assert_allclose(saved["embeddings"].numpy(), array, rtol=1e-6, atol=1e-7)
    assert saved["paths"] == [str(p) for p in paths]


def test_report_renders_paper_numbers_for_the_dataset(
    cli_run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(cli_run["run"])]) == 0
    # small_cnn has no paper row; the table still lists our numbers.
    assert "| ours, best (epoch" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_code_2(
    cli_run: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    config = str(CONFIGS / "cub200_bninception.yaml")
    assert main(["train", config, "train.epoch=3"]) == 2
    assert "did you mean train.epochs" in capsys.readouterr().err.lower()
    assert main(_train_args(cli_run["data"], cli_run["run"])) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", config, "data.root=/nowhere"]) == 2
    assert "/nowhere" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", config, "train.device=cuda"]) == 2
        assert "no usable CUDA" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing written for a run that could not start
    assert main(["eval", str(cli_run["data"])]) == 2
    assert "checkpoints/best.pt" in capsys.readouterr().err


def test_data_check_reports_counts(
    cli_run: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["data", "check", "cub200", str(cli_run["data"])])
    out = capsys.readouterr().out
    assert code == 1  # a fixture has far fewer images than the real CUB-200-2011
    assert "cub200" in out.lower() or "CUB" in out


def test_an_error_under_torchrun_names_the_rank(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = str(CONFIGS / "cub200_bninception.yaml")
    assert main(["train", config, "train.proxies=shardded"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: [rank 1/2] train.proxies='shardded' is not supported; expected one of "
        "replicated, sharded"
    )


def test_version_names_the_package_and_pml(capsys: pytest.CaptureFixture[str]) -> None:
    import pytorch_metric_learning

    import pml_proxy_anchor

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"pml-proxy-anchor {pml_proxy_anchor.__version__}" in out
    assert f"pytorch-metric-learning {pytorch_metric_learning.__version__}" in out


@pytest.mark.parametrize("command", ["train", "configs", "eval", "embed", "report", "data"])
def test_every_subcommand_help_shows_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"pml-proxy-anchor {command}" in out


def test_configs_lists_the_builtin_configs(capsys: pytest.CaptureFixture[str]) -> None:
    from pml_proxy_anchor.training.config import builtin_configs

    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == builtin_configs()
    assert "omniglot" in builtin_configs() and "cub200_bninception" in builtin_configs()


def test_a_copied_run_directory_resumes_in_the_copy_through_the_cli(
    cli_run: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(cli_run["run"], copy)
    original = (cli_run["run"] / "results.json").read_bytes()
    # The "Fix" command the tool prints: the config.yaml inside the run (naming the old run_dir).
    assert main(["train", str(copy / "config.yaml"), "--resume", "train.epochs=3"]) == 0
    assert json.loads((copy / "results.json").read_text())["epochs_completed"] == 3
    assert (cli_run["run"] / "results.json").read_bytes() == original
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_prints_the_message_and_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pml_proxy_anchor import cli

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt("interrupted during epoch 1; start again with --overwrite")

    monkeypatch.setitem(cli.COMMANDS, "configs", interrupted)
    assert main(["configs"]) == 130
    assert "start again with --overwrite" in capsys.readouterr().err


def test_out_of_memory_is_one_line_with_a_hint_and_exit_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pml_proxy_anchor import cli

    def out_of_memory(args: object) -> int:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setitem(cli.COMMANDS, "configs", out_of_memory)
    assert main(["configs"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: out of GPU memory") and "train.batch_size" in err


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RuntimeError that is not the user's (here an injected shape error) is not turned into
    a one-line 'error:' that looks like a user mistake."""
    from pml_proxy_anchor import cli

    def shape_bug(args: object) -> int:
        torch.zeros(2, 3) @ torch.zeros(2, 3)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "configs", shape_bug)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        main(["configs"])


def test_embed_refuses_a_bad_output_name(
    cli_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = CUB200(str(cli_run["data"]), split="test").paths[:1]
    assert main(["embed", str(cli_run["run"]), *paths, "--out", str(tmp_path / "e.csv")]) == 2
    assert ".npy" in capsys.readouterr().err
    assert main(["embed", str(cli_run["run"]), *paths, "--out", str(tmp_path)]) == 2
    assert "directory" in capsys.readouterr().err


def test_sweep_report_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.sweeps.fixtures_report import write_job

    sweep = tmp_path / "sweep"
    for lr, r1 in ((1e-3, 0.5), (1e-2, 0.7)):
        for seed in (1, 2):
            write_job(
                sweep / f"lr{lr}_seed{seed}",
                [r1 - 0.1, r1],
                **{"optimizer.lr": lr, "train.seed": seed},
            )
    assert main(["sweep-report", str(sweep), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    r1 = {row["params"]["optimizer.lr"]: row["recall_at_1"] for row in summary["rows"]}
    assert r1 == {1e-3: {"mean": 0.5, "std": 0.0}, 1e-2: {"mean": 0.7, "std": 0.0}}
    assert "summary.md" in capsys.readouterr().out
    assert main(["sweep-report", str(tmp_path / "nowhere")]) == 2
