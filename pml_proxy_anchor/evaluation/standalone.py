"""Standalone Recall@K from embedding files: print the table, write JSON.

``pml-proxy-anchor recall QUERY_EMB QUERY_LABELS [--gallery EMB LABELS] [--preset sop | --k 1 10]``
(also ``python -m pml_proxy_anchor.evaluation.standalone ...``). Files are ``.npy`` arrays or
``.pt`` tensors: embeddings (N, D), labels (N,). Without a gallery every embedding is a query
against all the others (self-retrieval); with one, queries search the gallery only.
Protocol: Kim et al., CVPR 2020, Sec. 4 (see :mod:`pml_proxy_anchor.evaluation.recall`).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pml_proxy_anchor.errors import UserError
from pml_proxy_anchor.registry import choose

from .presets import (
    DEFAULT_K_VALUES,
    PAPER_K_VALUES,
    canonical_dataset_name,
    recall_k_values,
)
from .recall import NO_POSITIVE, RecallAtKWarning, recall_metric_name, recall_ranks
from .validation import RecallInputError, check_device, check_k_values


class RecallFileNotFoundError(UserError, FileNotFoundError):
    """An embedding or label file given to ``recall`` does not exist (or is not a file)."""


_FILE_FIX = (
    "expected a numeric array saved with np.save (.npy) or a tensor saved with torch.save "
    "(.pt); fix: re-save it, e.g. np.save(path, embeddings.astype(np.float32)) or "
    "`pml-proxy-anchor embed ... --out FILE.npy`"
)


def load_array(path: str | Path) -> np.ndarray:
    """Load a ``.npy`` array or a ``.pt`` tensor (``torch.load(weights_only=True)``).

    A ``.pt`` file may also hold the dict written by ``pml-proxy-anchor embed --out FILE.pt``
    (its ``"embeddings"`` tensor is used). Missing, empty, corrupt and pickled files are refused
    with the file named.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "not found"
        raise RecallFileNotFoundError(
            f"embedding/label file {what}: {p}; expected a .npy or .pt file; "
            "fix: check the path (e.g. the output of `pml-proxy-anchor embed`)"
        )
    if p.suffix not in (".npy", ".pt", ".pth"):
        raise RecallInputError(
            f"unsupported file type {p.suffix!r} for {p}; expected .npy or .pt; "
            "fix: save with numpy.save or torch.save"
        )
    if p.stat().st_size == 0:
        raise RecallInputError(f"{p} is empty (0 bytes); {_FILE_FIX}")
    if p.suffix == ".npy":
        return _load_npy(p)
    return _load_pt(p)


def _load_npy(p: Path) -> np.ndarray:
    with open(p, "rb") as handle:
        magic = handle.read(6)
    if magic.startswith(b"PK"):
        raise RecallInputError(f"{p} is an .npz archive, not one array; {_FILE_FIX}")
    if magic != b"\x93NUMPY":
        raise RecallInputError(f"{p} is not a .npy file (no NumPy header); {_FILE_FIX}")
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err):
            raise RecallInputError(
                f"{p} holds pickled python objects (an object array), which are not loaded for "
                f"safety; {_FILE_FIX}"
            ) from None
        raise _corrupt_npy(p, err) from None
    except (OSError, EOFError, pickle.UnpicklingError) as err:
        raise _corrupt_npy(p, err) from None


def _corrupt_npy(p: Path, err: BaseException) -> RecallInputError:
    return RecallInputError(
        f"{p} is not a readable .npy array (truncated or corrupt: {_first_sentence(err)}); "
        f"{_FILE_FIX}"
    )


def _first_sentence(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(". ")[0][:160]


def _load_pt(p: Path) -> np.ndarray:
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise RecallInputError(
            f"{p} is not a torch file of tensors (not written by torch.save, or it holds python "
            f"objects, which are not loaded for safety); {_FILE_FIX}"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise RecallInputError(
            f"{p} is not a readable torch file (truncated or corrupt: {_first_sentence(err)}); "
            f"{_FILE_FIX}"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("embeddings"), torch.Tensor):
        obj = obj["embeddings"]  # the file written by `pml-proxy-anchor embed --out FILE.pt`
    if not isinstance(obj, torch.Tensor):
        raise RecallInputError(
            f"{p} holds a {type(obj).__name__}, expected a single tensor; "
            "fix: torch.save(tensor, path)"
        )
    return obj.detach().numpy()


class RecallOutputError(UserError, OSError):
    """The results JSON cannot be written where ``--out`` says."""


def _name_files(err: RecallInputError, files: dict[str, str | Path | None]) -> RecallInputError:
    """The same error with the files it came from appended."""
    named = ", ".join(f"{what}: {path}" for what, path in files.items() if path is not None)
    return RecallInputError(f"{err} (files: {named})")


def evaluate_files(
    query_emb_path: str | Path,
    query_labels_path: str | Path,
    gallery_emb_path: str | Path | None = None,
    gallery_labels_path: str | Path | None = None,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    out_json: str | Path | None = None,
    *,
    normalize: bool = True,
    exact: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Recall@K of the embeddings in the files; returns (and optionally writes) a flat dict.

    Keys: ``recall_at_<K>`` for each K, ``protocol`` ("self-retrieval" or "query/gallery"),
    ``num_queries``, ``num_gallery``, ``queries_without_positive``, ``k_values``, ``exact``.
    """
    if (gallery_emb_path is None) != (gallery_labels_path is None):
        raise RecallInputError(
            "give both gallery embeddings and gallery labels, or neither (self-retrieval)"
        )
    ks = check_k_values(k_values)
    check_device(device, "--device")
    q, ql = load_array(query_emb_path), load_array(query_labels_path)
    g = gl = None
    if gallery_emb_path is not None and gallery_labels_path is not None:
        g, gl = load_array(gallery_emb_path), load_array(gallery_labels_path)
    files = {
        "query embeddings": query_emb_path,
        "query labels": query_labels_path,
        "gallery embeddings": gallery_emb_path,
        "gallery labels": gallery_labels_path,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecallAtKWarning)  # reported as a count below
        try:
            ranks, _ = recall_ranks(
                q, ql, g, gl, k_values=ks, normalize=normalize, exact=exact, device=device
            )
        except RecallInputError as err:
            raise _name_files(err, files) from None
    results: dict[str, Any] = {
        recall_metric_name(k): float((ranks < k).double().mean()) for k in ks
    }
    results.update(
        protocol="self-retrieval" if g is None else "query/gallery",
        num_queries=int(len(q)),
        num_gallery=int(len(q) - 1 if g is None else len(g)),
        queries_without_positive=int((ranks == NO_POSITIVE).sum()),
        k_values=list(ks),
        exact=bool(exact),
    )
    if out_json is not None:
        out = Path(out_json)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")
        except OSError as err:
            raise RecallOutputError(
                f"cannot write the results to {out} ({err.strerror or err}); expected a writable "
                "file path; fix: choose another --out path (a file, in a folder you can write)"
            ) from None
    return results


def format_table(results: dict[str, Any]) -> str:
    """A Markdown table of the ``recall_at_<K>`` entries (in %), with the protocol underneath."""
    keys = sorted(
        (k for k in results if k.startswith("recall_at_")), key=lambda k: int(k.rsplit("_", 1)[1])
    )
    header = "| " + " | ".join(f"R@{k.rsplit('_', 1)[1]}" for k in keys) + " |"
    rule = "|" + "|".join("---:" for _ in keys) + "|"
    row = "| " + " | ".join(f"{100 * results[k]:.2f}" for k in keys) + " |"
    lines = [header, rule, row]
    if "protocol" in results:
        lines.append(
            f"\n{results['protocol']}: {results['num_queries']} queries, "
            f"{results['num_gallery']} gallery items per query, "
            f"{results['queries_without_positive']} without a positive (counted as misses)"
        )
    return "\n".join(lines)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``recall`` arguments (on ``parser`` if given, e.g. a CLI subparser)."""
    p = parser or argparse.ArgumentParser(
        prog="pml-proxy-anchor recall", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("query_embeddings", help="(N, D) embeddings, .npy or .pt")
    p.add_argument("query_labels", help="(N,) integer labels, .npy or .pt")
    p.add_argument(
        "--gallery",
        nargs=2,
        metavar=("EMBEDDINGS", "LABELS"),
        help="gallery files (query/gallery protocol, e.g. In-Shop); omit for self-retrieval",
    )
    ks = p.add_mutually_exclusive_group()
    ks.add_argument("--k", type=int, nargs="+", help="the Ks (default 1 2 4 8)")
    ks.add_argument("--preset", help="the paper's Ks for a dataset: cub200, cars196, sop, inshop")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--no-normalize", action="store_true", help="inner product, not cosine")
    p.add_argument(
        "--approximate", action="store_true", help="faiss HNSW index (approximate, for huge data)"
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: where the data is)")
    return p


def preset_k_values(preset: str | None) -> tuple[int, ...]:
    """The paper's Ks for ``--preset`` (1 2 4 8 without one); an unknown name is refused."""
    if preset is None:
        return DEFAULT_K_VALUES
    if canonical_dataset_name(preset) is None:
        choose(preset, PAPER_K_VALUES, "--preset")  # raises, with the closest names
    return recall_k_values(preset)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pml-proxy-anchor recall``; returns the exit status."""
    args = build_parser().parse_args(argv)
    gallery = args.gallery or (None, None)
    try:
        k_values = tuple(args.k) if args.k else preset_k_values(args.preset)
        results = evaluate_files(
            args.query_embeddings,
            args.query_labels,
            gallery[0],
            gallery[1],
            k_values=k_values,
            out_json=args.out,
            normalize=not args.no_normalize,
            exact=not args.approximate,
            device=args.device,
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
