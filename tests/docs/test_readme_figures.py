"""The README's Omniglot figures are what reproduce/results/omniglot/default/summary.json holds,
and that file's aggregates are those of its runs (reproduce/readme_figures.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _load_script() -> Any:
    name = "readme_figures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "reproduce/readme_figures.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


figures = _load_script()


def _run(seed: int, threads: int, r1: list[float], finals: tuple[float, ...]) -> dict[str, Any]:
    return {
        "seed": seed, "threads": threads, "cpu": "CPU X", "cpu_count": 2, "torch": "2.0",
        "pytorch_metric_learning": "2.9.0", "epochs": len(r1),
        "final": {f"recall_at_{k}": v for k, v in zip((1, 2, 4, 8), finals)},
        "recall_at_1_per_epoch": r1, "wall_seconds": 100.0 + seed,
    }  # fmt: skip


def test_readme_block_is_rendered_from_the_committed_summary() -> None:
    readme = (REPO / "README.md").read_text()
    expected = figures.render_readme(readme, figures.load_summary())
    assert readme == expected, (
        "README.md's figures block differs from reproduce/results/omniglot/default/summary.json; "
        "run `python reproduce/readme_figures.py render`"
    )


def test_committed_summary_aggregates_are_those_of_its_runs() -> None:
    summary = figures.load_summary()
    assert figures.summarize(summary["runs"]) == summary
    assert all(r["epochs"] == 12 for r in summary["runs"])  # the default command's 12 epochs


def test_mean_std_and_thread_range_on_constructed_runs() -> None:
    runs = [
        _run(1, 2, [0.5, 0.9], (0.90, 0.95, 0.97, 0.99)),
        _run(2, 2, [0.6, 0.8], (0.80, 0.85, 0.87, 0.89)),
        _run(1, 1, [0.4, 0.7], (0.70, 0.75, 0.77, 0.79)),
    ]
    summary = figures.summarize(runs)
    seeds = summary["seeds_at_main_threads"]
    assert seeds["seeds"] == [1, 2]
    assert seeds["recall_at_1"] == {"mean": 0.85, "std": pytest.approx(0.070711, abs=1e-6)}
    assert seeds["epoch1_recall_at_1"]["mean"] == pytest.approx(0.55)
    across = summary["across_threads"]
    assert (across["seed"], sorted(across["threads"])) == (1, [1, 2])
    assert across["recall_at_1"] == {"min": 0.70, "max": 0.90}
    assert across["epoch1_recall_at_1"] == {"min": 0.4, "max": 0.5}
    block = figures.render_block(summary)
    assert "| 0.8500 ± 0.0707 |" in block
    assert "final R@1 0.7000-0.9000" in block
    assert "| 2 | 2 | 0.8000 | 0.8500 | 0.8700 | 0.8900 | 0.600, 0.800 | 1 min 42 s |" in block


def test_summary_refuses_duplicate_runs_and_a_missing_main_thread_count() -> None:
    run = _run(1, 2, [0.5], (0.9, 0.9, 0.9, 0.9))
    with pytest.raises(figures.FiguresError, match="same \\(seed, threads\\)"):
        figures.summarize([run, run])
    with pytest.raises(figures.FiguresError, match="no run at 2 threads"):
        figures.summarize([_run(1, 1, [0.5], (0.9, 0.9, 0.9, 0.9))])


def _write_run(run_dir: Path, status: str = "finished", info: bool = True) -> None:
    run_dir.mkdir(parents=True)
    history = [{"epoch": e, "recall_at_1": 0.5 + 0.1 * e} for e in (1, 2)]
    metrics = {f"recall_at_{k}": 0.9 for k in (1, 2, 4, 8)}
    results = {"status": status, "dataset": "omniglot", "history": history,
               "final": {"epoch": 2, "metrics": metrics}}  # fmt: skip
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"train": {"seed": 3, "epochs": 2}}))
    if info:
        figures.describe(run_dir, threads=2, wall_seconds=61.04)


def test_collect_reads_a_run_and_names_what_is_missing(tmp_path: Path) -> None:
    _write_run(tmp_path / "ok")
    summary = figures.collect([tmp_path / "ok"], tmp_path / "out/summary.json")
    run = summary["runs"][0]
    assert (run["seed"], run["threads"], run["wall_seconds"]) == (3, 2, 61.0)
    assert run["recall_at_1_per_epoch"] == [0.6, 0.7]
    assert json.loads((tmp_path / "out/summary.json").read_text()) == summary
    _write_run(tmp_path / "no_info", info=False)
    with pytest.raises(figures.FiguresError, match="figures_run.json.*describe"):
        figures.read_run(tmp_path / "no_info")
    _write_run(tmp_path / "running", status="running")
    with pytest.raises(figures.FiguresError, match="status 'running'"):
        figures.read_run(tmp_path / "running")


def test_render_check_fails_when_the_readme_differs(tmp_path: Path, capsys) -> None:
    summary = tmp_path / "summary.json"
    runs = [_run(1, 2, [0.5], (0.9, 0.9, 0.9, 0.9))]
    summary.write_text(json.dumps(figures.summarize(runs)))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{figures.START}\nold figures\n{figures.END}\noutro\n")
    args = ["render", "--summary", str(summary), "--readme", str(readme)]
    assert figures.main([*args, "--check"]) == 1
    assert "differs" in capsys.readouterr().err
    assert figures.main(args) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "old figures" not in text
    assert figures.main([*args, "--check"]) == 0
    readme.write_text("no markers\n")
    assert figures.main(args) == 2
    assert "expected one" in capsys.readouterr().err
