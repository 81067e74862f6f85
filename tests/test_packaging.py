"""The package works for someone who pip-installed it: what the wheel carries, what it declares.

- the wheel holds the built-in configs (as ``pml_proxy_anchor/configs``), the LICENSE, the Omniglot
  bundle and ``py.typed``, and declares pytorch-metric-learning ``>=2.5,<3``;
- every third-party module the package imports is declared in pyproject.toml;
- the explicit package list of pyproject.toml names every folder of ``pml_proxy_anchor/``;
- built-in configs load by name from any directory (the current directory holds no config);
- importing with a pytorch-metric-learning outside 2.5-2.x stops with a clear message.
"""

from __future__ import annotations

import ast
import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

import pml_proxy_anchor
from pml_proxy_anchor.training.config import (
    builtin_config_dir,
    builtin_config_path,
    builtin_config_summary,
    builtin_configs,
    load_config,
)

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BUILTIN = {
    "cars196_bninception",
    "cars196_resnet50",
    "cars196_vit_s16",
    "cub200_bninception",
    "cub200_resnet50",
    "cub200_vit_s16",
    "inshop_bninception",
    "inshop_vit_s16",
    "omniglot",
    "sop_bninception",
    "sop_vit_s16",
}
# Top-level module -> the distribution that provides it.
DISTRIBUTIONS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "pytorch_metric_learning": "pytorch-metric-learning",
    "faiss": "faiss-cpu",
    "record_keeper": "record-keeper",
    "tensorboard": "tensorboard",
    "tqdm": "tqdm",
    "numpy": "numpy",
    "omegaconf": "omegaconf",
    "matplotlib": "matplotlib",
    "PIL": "pillow",
    "scipy": "scipy",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "hydra": "hydra-core",
    "timm": "timm",
}
# The sweep layer: experiments, the method group, chosen learning rates, launcher configs.
SWEEP_FILES = (
    "sweeps/omniglot/alpha_delta.yaml",
    "sweeps/omniglot/compare.yaml",
    "sweeps/omniglot/chosen_lr.json",
    "sweeps/cub200/compare_lr.yaml",
    "sweeps/method/proxy_anchor.yaml",
    "hydra/launcher/basic.yaml",
    "hydra/launcher/joblib.yaml",
    "hydra/launcher/submitit_slurm.yaml",
)


def _declared() -> set[str]:
    names = set()
    for requirement in PYPROJECT["project"]["dependencies"]:
        name = requirement.split(";")[0]
        for stop in "<>=!~[ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower())
    return names


def test_every_third_party_import_is_declared() -> None:
    imported: dict[str, str] = {}
    for path in sorted((ROOT / "pml_proxy_anchor").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top != "pml_proxy_anchor":
                    imported.setdefault(top, str(path.relative_to(ROOT)))
    unknown = {top: where for top, where in imported.items() if top not in DISTRIBUTIONS}
    assert not unknown, f"declare these in pyproject.toml and in DISTRIBUTIONS: {unknown}"
    missing = {DISTRIBUTIONS[top] for top in imported} - _declared()
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_pml_is_pinned_below_3() -> None:
    pins = [d for d in PYPROJECT["project"]["dependencies"] if "pytorch-metric-learning" in d]
    assert len(pins) == 1 and pins[0].replace(" ", "").startswith("pytorch-metric-learning>=2.5,<3")


def test_the_package_list_names_every_folder() -> None:
    folders = {
        ".".join(p.relative_to(ROOT).parts)
        for p in (ROOT / "pml_proxy_anchor").rglob("*")
        if p.is_dir() and "__pycache__" not in p.parts
    }
    folders.add("pml_proxy_anchor")
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert set(setuptools["packages"]) == folders | {"pml_proxy_anchor.configs"}
    assert setuptools["package-dir"] == {"pml_proxy_anchor.configs": "configs"}


def test_version_matches_pyproject() -> None:
    assert pml_proxy_anchor.__version__ == PYPROJECT["project"]["version"]


def test_wheel_carries_configs_license_and_assets(tmp_path: Path) -> None:
    """Build the wheel from a copy of the sources (a few seconds, no network: the installed
    setuptools builds it) and read its file list and metadata."""
    pytest.importorskip("setuptools")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("configs", "pml_proxy_anchor"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    out = tmp_path / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = out.glob("pml_proxy_anchor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        (metadata_name,) = [f for f in files if f.endswith(".dist-info/METADATA")]
        metadata = email.message_from_string(archive.read(metadata_name).decode())
        license_text = archive.read(
            next(f for f in files if f.endswith(".dist-info/licenses/LICENSE"))
        ).decode()
    for name in [*BUILTIN, "base"]:
        assert f"pml_proxy_anchor/configs/{name}.yaml" in files, name
    for name in SWEEP_FILES:
        assert f"pml_proxy_anchor/configs/{name}" in files, name
    assert "pml_proxy_anchor/sweeps/launch.py" in files
    for asset in ("omniglot_small.npz", "omniglot_small.json", "OMNIGLOT_LICENSE"):
        assert f"pml_proxy_anchor/data/assets/{asset}" in files, asset
    assert "pml_proxy_anchor/py.typed" in files
    assert "MIT License" in license_text and "pml-proxy-anchor developers" in license_text
    requires = metadata.get_all("Requires-Dist")
    for launcher in ("hydra-core", "hydra-joblib-launcher", "hydra-submitit-launcher"):
        assert any(r.startswith(launcher) for r in requires), launcher
    assert any(r.startswith("pytorch-metric-learning") and "<3" in r for r in requires)
    assert {"pyyaml", "scikit-learn"} <= {r.split(">")[0].split("<")[0] for r in requires}
    assert metadata["License-Expression"] == "MIT"
    assert not any(f.startswith(("tests/", "tools/", "reproduce/", "configs/")) for f in files)


def test_builtin_configs_are_listed() -> None:
    assert set(builtin_configs()) == BUILTIN
    assert builtin_configs() == sorted(builtin_configs())
    assert (builtin_config_dir() / "base.yaml").is_file()
    assert builtin_config_path("omniglot") == builtin_config_dir() / "omniglot.yaml"
    with pytest.raises(FileNotFoundError, match=r"no built-in config 'omniglott'.*omniglot"):
        builtin_config_path("omniglott")
    assert builtin_config_summary("omniglot").startswith("omniglot with small_cnn: the bundled")
    assert builtin_config_summary("cub200_resnet50").startswith(
        "cub200 with resnet50: docs/paper.md section 2 (batch 120"
    )


def test_builtin_configs_load_by_name_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    omniglot = load_config("omniglot")
    assert omniglot.data.name == "omniglot" and omniglot.train.epochs == 12
    assert omniglot.optimizer.weight_decay == pytest.approx(1e-2)  # the file over base.yaml
    assert omniglot.train.grad_clip is None
    cub = load_config("cub200_bninception", ["data.root=/data/CUB_200_2011"])
    assert cub.data.root == "/data/CUB_200_2011" and cub.train.batch_size == 180
    assert cub.loss == {"ProxyAnchorLoss": {"margin": 0.1, "alpha": 32}}  # from base.yaml
    # The README's commands name configs/NAME.yaml: the built-in one when no such file exists.
    assert load_config("configs/omniglot.yaml") == omniglot
    assert load_config("omniglot.yaml") == omniglot


def test_a_file_in_the_current_directory_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "omniglot.yaml").write_text(
        "defaults: [base]\ndata: {name: omniglot}\nmodel: {backbone: small_cnn}\n"
        "train: {epochs: 3}\n"
    )
    mine = load_config("omniglot")
    assert mine.train.epochs == 3 and mine.train.batch_size == 180  # base.yaml, built in


def test_an_unknown_name_lists_the_builtin_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as caught:
        load_config("omniglott")
    message = str(caught.value)
    assert "config file omniglott does not exist" in message
    assert "Did you mean the built-in config omniglot?" in message
    assert "Built-in configs (usable by name from any directory): cars196_bninception" in message


def _import_with_pml_version(version: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        f"m.version = lambda name: {version!r} if name == 'pytorch-metric-learning' "
        "else real(name)\n"
        "import pml_proxy_anchor\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_import_with_pml_3_says_what_to_install() -> None:
    result = _import_with_pml_version("3.0.0")
    assert result.returncode != 0
    assert (
        "pml_proxy_anchor.PMLVersionError: pml-proxy-anchor needs pytorch-metric-learning 2.x "
        "(PML 3 removed the trainers/testers this plugin builds on); found 3.0.0. "
        "Fix: pip install 'pytorch-metric-learning>=2.5,<3'"
    ) in result.stderr
    assert _import_with_pml_version("2.9.0").returncode == 0


@pytest.mark.parametrize(
    ("version", "ok"),
    [("2.5.0", True), ("2.9.0", True), ("2.10.1", True), ("2.4.1", False), ("3.0.0rc1", False)]
    + [("3.1", False), ("1.7.3", False), ("garbage", False)],
)
def test_check_pml_version(version: str, ok: bool) -> None:
    if ok:
        assert pml_proxy_anchor.check_pml_version(version) == version
    else:
        with pytest.raises(ImportError, match=r"pip install 'pytorch-metric-learning>=2\.5,<3'"):
            pml_proxy_anchor.check_pml_version(version)
