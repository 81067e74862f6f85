"""Code blocks of the Markdown docs, and the placeholders the docs tests give them.

A fenced block is taken with the HTML comment right before it, if any (blank lines between are
allowed):

- ``<!-- snippet: needs NAME, NAME -->``: the block uses names the reader supplies (``model``,
  ``labels``, ...); the test defines them with small stand-ins from :data:`PLACEHOLDERS`;
- ``<!-- snippet: skip (REASON) -->``: the block is not run; the reason is shown by pytest.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "reproduce/README.md")

_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*snippet:\s*(needs|skip)\s*(.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its code and its directive."""

    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    needs: tuple[str, ...] = ()
    skip: str | None = None
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", f"{self.doc}:{self.line}")


def blocks(doc: str, text: str | None = None) -> list[Block]:
    """The fenced blocks of ``doc`` (a path relative to the repository) in order."""
    lines = (REPO / doc).read_text().splitlines() if text is None else text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, lang = i, match.group(1)
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{doc}:{start + 1}: code block never closed")
        needs, skip = _directive(lines, start, doc)
        code = "\n".join(lines[start + 1 : end]) + "\n"
        found.append(Block(doc, start + 1, lang, code, needs, skip))
        i = end + 1
    return found


def _directive(lines: list[str], fence: int, doc: str) -> tuple[tuple[str, ...], str | None]:
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j < 0 or "snippet:" not in lines[j]:
        return (), None
    match = _DIRECTIVE.match(lines[j].strip())
    if not match:
        raise ValueError(
            f"{doc}:{j + 1}: malformed snippet directive {lines[j].strip()!r}; expected "
            "'<!-- snippet: needs NAME, NAME -->' or '<!-- snippet: skip (REASON) -->'"
        )
    kind, rest = match.groups()
    if kind == "skip":
        if not rest:
            raise ValueError(f"{doc}:{j + 1}: a skipped snippet must give its reason")
        return (), rest.strip("()")
    return tuple(name.strip() for name in rest.split(",") if name.strip()), None


def all_blocks(lang: str) -> list[Block]:
    return [b for doc in DOCS for b in blocks(doc) if b.lang == lang]


# ---------------------------------------------------------------- python placeholders
N, NUM_CLASSES = 40, 10  # one small batch for every placeholder, so they fit together


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def _labels() -> torch.Tensor:
    return torch.arange(N) % NUM_CLASSES


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 512))


def _pairs(n: int, dim: int, seed: int) -> torch.utils.data.TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.randn(n, dim, generator=gen), torch.arange(n) % 10)


def _embedder() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(16, 8)


#: name -> factory of the stand-in the docs tests give a snippet that ``needs`` the name.
PLACEHOLDERS: dict[str, Callable[[], Any]] = {
    "model": _model,
    "images": lambda: torch.randn(N, 3, 8, 8, generator=_gen()),
    "labels": _labels,
    "embeddings": lambda: torch.randn(N, 8, generator=_gen()),
    "query_set": lambda: _pairs(30, 16, 1),
    "gallery_set": lambda: _pairs(60, 16, 2),  # In-Shop's K go up to 40
    "trunk": torch.nn.Identity,
    "embedder": _embedder,
    "epoch": lambda: 1,
    "cfg": lambda: {"train": {"seed": 1, "batch_size": 180}},
    "C": lambda: NUM_CLASSES,
    "train_set": lambda: _pairs(200, 3 * 8 * 8, 3),
    "seed": lambda: 1,
}


# ---------------------------------------------------------------- shell commands
def commands(code: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments dropped, ``&&`` / ``;``
    split, leading ``VAR=value`` assignments removed."""
    joined = re.sub(r"\\\n", " ", code)
    out: list[list[str]] = []
    for line in joined.splitlines():
        tokens = shlex.split(line, comments=True)
        current: list[str] = []
        for token in [*tokens, "&&"]:
            if token in ("&&", ";", "||"):
                while current and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", current[0]):
                    current.pop(0)
                if current:
                    out.append(current)
                current = []
            else:
                current.append(token)
    return out


def fill_synopsis(args: list[str]) -> list[str]:
    """A usage line made parseable: ``[--which best|last]`` -> ``--which best``, ``[A | B]`` ->
    ``A``, ``...`` dropped."""
    text = " ".join(shlex.quote(a) if " " in a else a for a in args)
    text = re.sub(r"\[([^\[\]]*)\]", lambda m: m.group(1).split(" | ")[0], text)
    words = [w for w in shlex.split(text) if w != "..."]  # quoted values keep their spaces
    return [w.split("|")[0] if "|" in w and not w.startswith("|") else w for w in words]
