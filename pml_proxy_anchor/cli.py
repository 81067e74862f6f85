"""The ``pml-proxy-anchor`` command line (also ``python -m pml_proxy_anchor``): parsing only.

Subcommands::

    train CONFIG [key=value ...] [--resume] [--overwrite] [--run-dir DIR]
    eval RUN_DIR_OR_CHECKPOINT [--which best|last] [--device D] [--batch-size N]
    embed RUN_DIR IMAGES... --out FILE.npy|FILE.pt [--which best|last] [--batch-size N]
    report RUN_DIR
    data check NAME ROOT
    recall ...            (pml_proxy_anchor.evaluation.standalone)

Each calls one library function (``training.run``, ``training.evaluate``, ``inference.embed``,
``data.check_dataset``, ...). Errors of bad input are printed as ``error: ...`` with exit code 2;
``--traceback`` shows the full traceback instead.

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

EXPECTED_ERRORS = (ValueError, RuntimeError, FileNotFoundError, KeyError, FileExistsError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pml-proxy-anchor",
        description="Proxy-Anchor loss (Kim et al., CVPR 2020) on pytorch-metric-learning.",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback on errors"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show PML's INFO logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model from a config file")
    train.add_argument("config", help="YAML config, e.g. configs/omniglot.yaml")
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. train.epochs=5 data.root=/data/CUB_200_2011 "
        "(+key=value adds a new key)",
    )
    train.add_argument("--resume", action="store_true", help="continue from checkpoints/last.pt")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--run-dir", help="run directory (default: the config's run_dir)")

    ev = sub.add_parser("eval", help="Recall@K of a trained run or checkpoint")
    ev.add_argument("path", help="run directory or checkpoint file")
    ev.add_argument("--which", choices=("best", "last"), default="best")
    ev.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    ev.add_argument("--batch-size", type=int, default=None)

    em = sub.add_parser("embed", help="embeddings of new images with a trained run")
    em.add_argument("run_dir", help="run directory or checkpoint file")
    em.add_argument("images", nargs="+", help="image files")
    em.add_argument("--out", required=True, help="output file: .npy (numpy) or .pt (torch)")
    em.add_argument("--which", choices=("best", "last"), default="best")
    em.add_argument("--batch-size", type=int, default=64)
    em.add_argument("--device", default="cpu")

    rep = sub.add_parser("report", help="rewrite results.md of a run (ours vs the paper)")
    rep.add_argument("run_dir")

    data = sub.add_parser("data", help="data set tools")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_sub.add_parser("check", help="found vs expected image counts of a data set")
    check.add_argument("name", help="cub200 | cars196 | sop | inshop")
    check.add_argument("root", help="the data set's root folder")

    recall = sub.add_parser(
        "recall", help="Recall@K from saved embeddings and labels", add_help=False
    )
    recall.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _train(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.training import load_config, run

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    cfg = load_config(args.config, overrides)
    if not cfg.run_dir:
        cfg.run_dir = str(Path("runs") / Path(args.config).stem)
    results = run(cfg, resume=args.resume, overwrite=args.overwrite)
    if _rank() == 0:
        print(f"{results['status']}: {results['epochs_completed']} of {results['epochs']} epochs.")
        print(f"Results: {Path(cfg.run_dir) / 'results.md'}")
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


def _embed(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from pml_proxy_anchor.inference import embed, load_embedder

    out = Path(args.out)
    if out.suffix not in (".npy", ".pt"):
        raise ValueError(f"--out {out}: expected a .npy or .pt file name.")
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
    from pml_proxy_anchor.training.report import read_results, write_results

    results = read_results(args.run_dir)
    if results is None:
        raise FileNotFoundError(
            f"no results.json in {args.run_dir}; expected a run directory written by "
            "`pml-proxy-anchor train`."
        )
    write_results(args.run_dir, results)
    print((Path(args.run_dir) / "results.md").read_text())
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.data import check_dataset

    report = check_dataset(args.name, args.root)
    print(report)
    return 0 if getattr(report, "ok", True) else 1


def _recall(args: argparse.Namespace) -> int:
    from pml_proxy_anchor.evaluation import standalone

    return int(standalone.main(list(args.args)) or 0)


COMMANDS = {
    "train": _train,
    "eval": _eval,
    "embed": _embed,
    "report": _report,
    "data": _data_check,
    "recall": _recall,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "recall":
        args.args = [*args.args, *extra]
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
    except EXPECTED_ERRORS as err:
        if args.traceback:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {_where()}{message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
