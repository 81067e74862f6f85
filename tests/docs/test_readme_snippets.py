"""Every code block of README.md and reproduce/README.md works as written.

- ``python`` blocks run, in document order, in one working directory that holds what the docs
  assume a reader has: ``configs/`` (the repository's), two images ``a.png`` and ``b.png``, and
  ``runs/omniglot``, a run of the main command made tiny (1 epoch, 4 characters per split).
  Names a block declares with ``<!-- snippet: needs ... -->`` get small stand-ins
  (tests/docs/snippets.py).
  :data:`SHRINK` cuts the training a block starts to the same tiny size.
- ``bash`` blocks: every ``pml-proxy-anchor`` / ``python -m pml_proxy_anchor`` / ``torchrun``
  command is parsed by the CLI's own argparse (usage lines with ``[--opt a|b]`` are filled in),
  ``train``'s config file and overrides are composed with ``load_config`` (an unknown key fails),
  ``recall`` is parsed by the standalone parser, scripts must exist, and the commands that are
  cheap here (``embed`` on the tiny run) are run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from snippets import DOCS, PLACEHOLDERS, REPO, Block, all_blocks, blocks, commands, fill_synopsis

from pml_proxy_anchor import cli
from pml_proxy_anchor.evaluation import standalone

TINY = ["train.epochs=1", "+data.max_classes=4", "data.class_rotations=1", "train.batch_size=32"]
#: text of a python block -> what the test runs instead (the same call, a tiny budget)
SHRINK = {'"train.epochs=2", "+data.max_classes=20"': ", ".join(f'"{o}"' for o in TINY)}
LANGS = ("python", "bash", "text", "yaml")
#: programs a bash block may name without the test checking their arguments
UNCHECKED = ("pip", "tensorboard")
#: CLI subcommands the test runs: name -> whether this command line is cheap enough here
CHEAP = {
    "embed": lambda args, work: (work / args[1]).exists(),  # on the tiny run
    "configs": lambda args, work: True,  # lists the built-in configs
}
HELP = ("-h", "--help", "--version")

#: scripts whose arguments are parsed: path -> parse(module, argv)
SCRIPT_PARSERS = {
    "reproduce/readme_figures.py": lambda module, argv: module.build_parser().parse_args(argv),
}

PYTHON = all_blocks("python")
BASH = all_blocks("bash")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pml_proxy_anchor.training import load_config, run

    work = tmp_path_factory.mktemp("readme")
    (work / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        pixels = np.where(rng.random((105, 105)) < 0.9, 255, 0).astype(np.uint8)
        Image.fromarray(pixels).save(work / name)  # uint8 (H, W): grayscale
    cwd = os.getcwd()
    os.chdir(work)
    try:
        run(load_config("configs/omniglot.yaml", [*TINY, "run_dir=runs/omniglot"]))
    finally:
        os.chdir(cwd)
    return work


@pytest.fixture
def in_workdir(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workdir)
    return workdir


def test_every_block_has_a_known_language() -> None:
    for doc in ("README.md", "reproduce/README.md"):
        for block in blocks(doc):
            assert block.lang in LANGS, f"{block.id}: fence language {block.lang!r} not in {LANGS}"


def test_every_shrink_applies_to_a_block() -> None:
    for text in SHRINK:
        assert any(text in b.code for b in PYTHON), f"no python block contains {text}"


def test_blocks_and_directives_are_read() -> None:
    text = "x\n<!-- snippet: needs a, b -->\n\n```python\nprint(a)\n```\n```bash\nls\n```\n"
    first, second = blocks("README.md", text)
    assert (first.lang, first.line, first.needs) == ("python", 4, ("a", "b"))
    assert first.code == "print(a)\n"
    assert (second.lang, second.needs, second.skip) == ("bash", (), None)
    skip = blocks("README.md", "<!-- snippet: skip (needs CUB) -->\n```python\n1\n```\n")[0]
    assert skip.skip == "needs CUB"
    with pytest.raises(ValueError, match="malformed snippet directive"):
        blocks("README.md", "<!-- snippet: need a -->\n```python\n1\n```\n")
    with pytest.raises(ValueError, match="never closed"):
        blocks("README.md", "```python\n1\n")


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_runs(block: Block, in_workdir: Path) -> None:
    if block.skip:
        pytest.skip(block.skip)
    unknown = [name for name in block.needs if name not in PLACEHOLDERS]
    assert not unknown, f"{block.id}: no stand-in for {unknown}; add it to snippets.PLACEHOLDERS"
    code = block.code
    for text, tiny in SHRINK.items():
        code = code.replace(text, tiny)
    namespace: dict[str, Any] = {"__name__": "__snippet__"}
    namespace.update({name: PLACEHOLDERS[name]() for name in block.needs})
    exec(compile(code, block.id, "exec"), namespace)  # noqa: S102 - the docs' own code


def _parse_cli(args: list[str], where: str) -> Any:
    """The CLI's parser, with the same handling of extra arguments as ``cli.main``."""
    parser = cli._parser()
    try:
        parsed, extra = parser.parse_known_args(args)
        if parsed.command == "recall":
            standalone.build_parser().parse_args([*parsed.args, *extra])
        elif parsed.command == "train" and all("=" in e and not e.startswith("-") for e in extra):
            parsed.overrides = [*parsed.overrides, *extra]
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:
        pytest.fail(f"{where}: `{' '.join(args)}` does not parse (exit {exc.code})")
    return parsed


def _check_cli(args: list[str], where: str, work: Path) -> None:
    from pml_proxy_anchor.models import BACKBONES, resolve_pretrained
    from pml_proxy_anchor.training import load_config
    from pml_proxy_anchor.training.config import resolve_config_path

    elided = "..." in args  # "train CONFIG ... --resume": the elided part is not checked
    args = fill_synopsis(args)
    if args and args[0] == "sweep":
        _check_sweep(args, where)
        return
    if any(a in HELP for a in args):
        with pytest.raises(SystemExit) as exc:
            cli.main(args)
        assert exc.value.code == 0, f"{where}: `pml-proxy-anchor {' '.join(args)}` failed"
        return
    parsed = _parse_cli(args, where)
    if parsed.command == "train" and not parsed.config.isupper():  # CONFIG: a usage line
        cfg = load_config(resolve_config_path(parsed.config), parsed.overrides)  # unknown keys
        if not elided:  # a paper backbone needs model.pretrained (a file or none)
            resolve_pretrained(BACKBONES[cfg.model.backbone], cfg.model.pretrained)
    if parsed.command in CHEAP and CHEAP[parsed.command](args, work):
        assert cli.main(args) == 0, f"{where}: `pml-proxy-anchor {' '.join(args)}` failed"


def _check_sweep(args: list[str], where: str) -> None:
    """A sweep command parses; a listing or a dry run (every job's config loaded) is run."""
    from pml_proxy_anchor.sweeps.launch import _parser as sweep_parser

    try:
        sweep_parser().parse_intermixed_args(args[1:])
    except SystemExit as exc:
        pytest.fail(f"{where}: `pml-proxy-anchor {' '.join(args)}` does not parse ({exc.code})")
    if "--list" in args or "--dry-run" in args:
        assert cli.main(args) == 0, f"{where}: `pml-proxy-anchor {' '.join(args)}` failed"


YAML = [b for doc in DOCS for b in blocks(doc) if b.lang == "yaml"]


@pytest.mark.parametrize("block", YAML, ids=[b.id for b in YAML])
def test_yaml_block_parses(block: Block) -> None:
    import yaml

    assert isinstance(yaml.safe_load(block.code), dict), f"{block.id}: not a YAML mapping"


def _check_module(module: str, rest: list[str], where: str, work: Path) -> None:
    if module == "pml_proxy_anchor":
        _check_cli(rest, where, work)
    elif module == "pml_proxy_anchor.evaluation.standalone":
        try:
            standalone.build_parser().parse_args(rest)
        except SystemExit as exc:
            pytest.fail(f"{where}: `python -m {module} {' '.join(rest)}` (exit {exc.code})")
    elif module != "pytest":
        pytest.fail(f"{where}: the docs test does not know `python -m {module}`")


def _check_script(script: str, rest: list[str], where: str) -> None:
    path = REPO / script
    assert path.is_file(), f"{where}: {script} does not exist"
    if path.suffix == ".sh":
        assert os.access(path, os.X_OK), f"{where}: {script} is not executable"
    if script in SCRIPT_PARSERS:
        module = _script_module(path)
        try:
            SCRIPT_PARSERS[script](module, rest)
        except SystemExit as exc:
            pytest.fail(f"{where}: `python {script} {' '.join(rest)}` (exit {exc.code})")


def _script_module(path: Path) -> Any:
    name = path.stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.parametrize("block", BASH, ids=[b.id for b in BASH])
def test_bash_block_commands_exist_and_parse(block: Block, in_workdir: Path) -> None:
    if block.skip:
        pytest.skip(block.skip)
    for command in commands(block.code):
        program, rest = command[0], command[1:]
        where = f"{block.id}: {' '.join(command)}"
        if program == "pml-proxy-anchor":
            _check_cli(rest, where, in_workdir)
        elif program in ("python", "python3", "torchrun"):
            if "-m" in rest:
                at = rest.index("-m")
                _check_module(rest[at + 1], rest[at + 2 :], where, in_workdir)
            else:
                assert program != "torchrun", f"{where}: torchrun without -m"
                _check_script(rest[0], rest[1:], where)
        elif program.startswith("reproduce/"):
            _check_script(program, rest, where)
        elif program not in UNCHECKED:
            pytest.fail(f"{where}: the docs test does not know the program {program!r}")


def test_help_in_a_block_is_run(capsys: pytest.CaptureFixture[str]) -> None:
    _check_cli(["train", "--help"], "example", REPO)
    assert "--run-dir" in capsys.readouterr().out


def test_a_wrong_option_in_a_block_fails() -> None:
    """The checks above would catch a renamed option or config key."""
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        _check_cli(["eval", "runs/x", "--wich", "best"], "example", REPO)
    from pml_proxy_anchor.training.errors import ConfigKeyError

    with pytest.raises(ConfigKeyError, match="train.epoch"):
        _check_cli(["train", "configs/omniglot.yaml", "train.epoch=2"], "example", REPO)
    with pytest.raises(ValueError, match="model.pretrained is not set"):
        _check_cli(["train", "sop_bninception", "data.root=/data/SOP"], "example", REPO)
