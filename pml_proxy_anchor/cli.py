"""The ``pml-proxy-anchor`` command line (also ``python -m pml_proxy_anchor``): parsing only.

Subcommands::

    train CONFIG [key=value ...] [--resume] [--overwrite] [--run-dir DIR]
    configs                  the built-in configs (``train NAME`` works from any directory)
    eval RUN_DIR_OR_CHECKPOINT [--which best|last] [--device D] [--batch-size N]
    embed RUN_DIR IMAGES... --out FILE.npy|FILE.pt [--which best|last] [--batch-size N]
    report RUN_DIR
    data check NAME ROOT [--decode]
    recall ...               (pml_proxy_anchor.evaluation.standalone)
    sweep EXPERIMENT [key=a,b ...]       (pml_proxy_anchor.sweeps.launch; Hydra multirun)
    sweep-report SWEEP_DIR [--out DIR]   (pml_proxy_anchor.sweeps.report)

Each calls one library function (``training.run``, ``training.evaluate``, ``inference.embed``,
``data.check_dataset``, ...). Errors a user can fix (:class:`pml_proxy_anchor.errors.UserError`)
are printed as ``error: ...`` with exit code 2; running out of memory is printed with a hint and
exit code 3; Ctrl-C prints what will continue the work and exits with 130. Anything else is a bug
and keeps its traceback. ``--traceback`` shows the full traceback of every error.

``train`` also runs on several processes and machines: ``torchrun --nproc_per_node=N -m
pml_proxy_anchor train CONFIG ...`` (README "Scaling out"). Then only rank 0 prints the summary;
an error is printed by every rank that hits it as ``error: [rank R/N] ...`` (a rank that died or
hung: ``RankFailureError``; ranks with different configs: ``ConfigMismatchError``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pml_proxy_anchor import __version__
from pml_proxy_anchor.errors import UserError

EXIT_USER_ERROR = 2
EXIT_OUT_OF_MEMORY = 3
EXIT_INTERRUPTED = 130

TRAIN_EXAMPLES = """examples:
  pml-proxy-anchor train omniglot                       # the bundled Omniglot default
  pml-proxy-anchor train omniglot train.epochs=2 --run-dir runs/try
  pml-proxy-anchor train cub200_bninception data.root=/data/CUB_200_2011 \\
      model.pretrained=/weights/bn_inception-52deb4733.pth
  pml-proxy-anchor train my_config.yaml                 # a config file of your own
  pml-proxy-anchor train runs/try/config.yaml --resume  # continue runs/try
"""
EVAL_EXAMPLES = """examples:
  pml-proxy-anchor eval runs/omniglot                   # Recall@K of checkpoints/best.pt
  pml-proxy-anchor eval runs/omniglot/checkpoints/last.pt --device cpu
"""
EMBED_EXAMPLES = """examples:
  pml-proxy-anchor embed runs/omniglot a.png b.png --out vectors.npy
"""
REPORT_EXAMPLES = """examples:
  pml-proxy-anchor report runs/omniglot                 # rewrite and print results.md
"""
DATA_EXAMPLES = """examples:
  pml-proxy-anchor data check cub200 /data/CUB_200_2011
  pml-proxy-anchor data check sop /data/Stanford_Online_Products --decode
"""
CONFIGS_EXAMPLES = """examples:
  pml-proxy-anchor configs                              # the names `train NAME` takes
"""


def _versions() -> str:
    from importlib import metadata

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"pml-proxy-anchor {__version__} (pytorch-metric-learning "
        f"{version('pytorch-metric-learning')}, torch {version('torch')})"
    )


def _sub(
    sub: argparse._SubParsersAction, name: str, help_text: str, examples: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pml-proxy-anchor",
        description="Proxy-Anchor loss (Kim et al., CVPR 2020) on pytorch-metric-learning.",
        epilog="Run `pml-proxy-anchor COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=_versions())
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback on errors"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show PML's INFO logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = _sub(sub, "train", "train a model from a config", TRAIN_EXAMPLES)
    train.add_argument(
        "config",
        help="a built-in config name (list them with `pml-proxy-anchor configs`) or a YAML file",
    )
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. train.epochs=5 data.root=/data/CUB_200_2011 "
        "(+key=value adds a new key)",
    )
    train.add_argument("--resume", action="store_true", help="continue from checkpoints/last.pt")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in the run directory (only what the tool wrote there is removed)",
    )
    train.add_argument(
        "--run-dir",
        help="run directory (default: the directory of a run's own config.yaml, else the "
        "config's run_dir, else runs/<config name>)",
    )

    _sub(sub, "configs", "list the built-in configs", CONFIGS_EXAMPLES)

    ev = _sub(sub, "eval", "Recall@K of a trained run or checkpoint", EVAL_EXAMPLES)
    ev.add_argument("path", help="run directory or checkpoint file")
    ev.add_argument("--which", choices=("best", "last"), default="best")
    ev.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    ev.add_argument("--batch-size", type=int, default=None)

    em = _sub(sub, "embed", "embeddings of new images with a trained run", EMBED_EXAMPLES)
    em.add_argument("run_dir", help="run directory or checkpoint file")
    em.add_argument("images", nargs="+", help="image files")
    em.add_argument("--out", required=True, help="output file: .npy (numpy) or .pt (torch)")
    em.add_argument("--which", choices=("best", "last"), default="best")
    em.add_argument("--batch-size", type=int, default=64)
    em.add_argument("--device", default="cpu")

    rep = _sub(sub, "report", "rewrite results.md of a run (ours vs the paper)", REPORT_EXAMPLES)
    rep.add_argument("run_dir")

    data = _sub(sub, "data", "data set tools", DATA_EXAMPLES)
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_sub.add_parser(
        "check",
        help="found vs expected image counts of a data set",
        epilog=DATA_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("name", help="cub200 | cars196 | sop | inshop")
    check.add_argument("root", help="the data set's root folder")
    check.add_argument(
        "--decode",
        action="store_true",
        help="also decode every image (finds truncated or corrupt files; slower)",
    )

    recall = sub.add_parser(
        "recall", help="Recall@K from saved embeddings and labels", add_help=False
    )
    recall.add_argument("args", nargs=argparse.REMAINDER)
    sweep = sub.add_parser(
        "sweep", help="run a sweep (many trainings) on Hydra's launchers", add_help=False
    )
    sweep.add_argument("args", nargs=argparse.REMAINDER)
    sweep_report = sub.add_parser(
        "sweep-report",
        help="tables, plots and summary.json of a sweep directory",
        add_help=False,
    )
    sweep_report.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _train(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.training import load_config, run
    from pml_proxy_anchor.training.run_dir import run_dir_for_config_file

    overrides = list(args.overrides)
    run_dir = args.run_dir
    if run_dir is None:
        # A run's own config.yaml (also in a copied run directory) names that directory.
        own = run_dir_for_config_file(args.config)
        run_dir = str(own) if own is not None else None
    if run_dir is not None:
        overrides.append(f"run_dir={run_dir}")
    cfg = load_config(args.config, overrides)
    if not cfg.run_dir:
        cfg.run_dir = str(Path("runs") / Path(args.config).stem)
    results = run(cfg, resume=args.resume, overwrite=args.overwrite)
    if _rank() == 0:
        print(f"{results['status']}: {results['epochs_completed']} of {results['epochs']} epochs.")
        print(f"Results: {Path(cfg.run_dir) / 'results.md'}")
    return 0


def _configs(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.training.config import builtin_config_summary, builtin_configs

    for name in builtin_configs():
        print(f"{name:22} {builtin_config_summary(name)}")
    return 0


def _rank() -> int:
    """This process's rank under torchrun (``RANK``), 0 otherwise."""
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def _where() -> str:
    """``"[rank R/N] "`` under torchrun with several processes, else ``""``."""
    world = os.environ.get("WORLD_SIZE", "1")
    return f"[rank {_rank()}/{world}] " if world.isdigit() and int(world) > 1 else ""


def _eval(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.training import evaluate

    evaluation = evaluate(
        args.path, which=args.which, device=args.device, batch_size=args.batch_size
    )
    print(f"{evaluation['checkpoint']} (epoch {evaluation['epoch']}):")
    for name, value in evaluation["metrics"].items():
        print(f"  {name:>16}: {value:.4f}")
    return 0


class OutputPathError(UserError, ValueError):
    """An output file name the command cannot write."""


def _embed(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from pml_proxy_anchor.inference import embed, load_embedder

    out = Path(args.out)
    if out.is_dir():
        raise OutputPathError(f"--out {out} is a directory; give a file name such as {out}/e.npy.")
    if out.suffix not in (".npy", ".pt"):
        raise OutputPathError(
            f"--out {out}: expected a file name ending in .npy (numpy) or .pt (torch)."
        )
    embedder = load_embedder(args.run_dir, which=args.which, device=args.device)
    embeddings = embed(embedder, args.images, batch_size=args.batch_size, device=args.device)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, embeddings.numpy())
    else:
        torch.save({"embeddings": embeddings, "paths": [str(p) for p in args.images]}, out)
    print(f"wrote {tuple(embeddings.shape)} embeddings to {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.training.record import refresh_report

    print(refresh_report(args.run_dir))
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.data import check_dataset

    report = check_dataset(args.name, args.root, decode=args.decode)
    print(report)
    return 0 if getattr(report, "ok", True) else 1


def _recall(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.evaluation import standalone

    return int(standalone.main(list(args.args)) or 0)


def _sweep(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.sweeps import launch

    return int(launch.main(list(args.args)) or 0)


def _sweep_report(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.sweeps import report

    return int(report.main(list(args.args)) or 0)


FORWARDED = ("recall", "sweep", "sweep-report")  # parse their own arguments (and --help)
COMMANDS = {
    "train": _train,
    "configs": _configs,
    "eval": _eval,
    "embed": _embed,
    "report": _report,
    "data": _data_check,
    "recall": _recall,
    "sweep": _sweep,
    "sweep-report": _sweep_report,
}


def out_of_memory_hint(err: BaseException) -> str | None:
    """A one-line explanation with the fix when ``err`` is an out-of-memory condition."""
    if isinstance(err, MemoryError):
        where = "host memory"
    else:
        import torch

        text = str(err)
        if isinstance(err, torch.OutOfMemoryError) or "CUDA out of memory" in text:
            where = "GPU memory"
        elif isinstance(err, RuntimeError) and "can't allocate memory" in text:
            where = "host memory"
        else:
            return None
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"out of {where} ({first[:200]}). Fix: lower train.batch_size or eval.batch_size; "
        "for very many classes use train.proxies=sharded over several processes; on a GPU "
        "set train.device to a free one."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command in FORWARDED:
        # Everything after the command name, in its order: argparse would put options that
        # come before a positional (`sweep --choose-lr DIR --out F`) after it.
        raw = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
        args.args = raw[raw.index(args.command) + 1 :]
    elif args.command == "train" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]  # overrides after an option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    logging.getLogger("pml_proxy_anchor").setLevel(logging.INFO)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt as err:  # first: a RunInterrupted is a UserError too
        if args.traceback:
            raise
        print(f"{_where()}{err or 'interrupted.'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UserError as err:
        if args.traceback:
            raise
        print(f"error: {_where()}{err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (MemoryError, RuntimeError) as err:
        hint = out_of_memory_hint(err)
        if hint is None or args.traceback:
            raise
        print(f"error: {_where()}{hint}", file=sys.stderr)
        return EXIT_OUT_OF_MEMORY


if __name__ == "__main__":
    raise SystemExit(main())
