"""The bundle builder: deduplication of shared alphabets and content checks (on tiny zips)."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pml_proxy_anchor.data.omniglot import Omniglot, load_bundle

TOOL = Path(__file__).resolve().parents[2] / "tools" / "build_omniglot_bundle.py"


def _tool():
    spec = importlib.util.spec_from_file_location("build_omniglot_bundle", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.random((105, 105)) > 0.1).convert("1")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path: Path, root: str, entries: dict[str, int]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, seed in entries.items():
            archive.writestr(f"{root}/{name}", _png(seed))
    return path


def test_builder_dedupes_and_round_trips(tmp_path) -> None:
    first = _zip(
        tmp_path / "a.zip",
        "images_background_small1",
        {
            "Greek/character01/a_01.png": 1,
            "Greek/character01/a_02.png": 2,
            "Korean/character01/b_01.png": 3,
        },
    )
    second = _zip(
        tmp_path / "b.zip",
        "images_background_small2",
        {
            "Greek/character01/a_01.png": 1,
            "Greek/character01/a_02.png": 2,
            "Latin/character02/c_01.png": 4,
        },
    )
    out = tmp_path / "bundle"
    assert _tool().main(["--zips", str(first), str(second), "--out", str(out)]) == 0
    manifest = json.loads((out / "omniglot_small.json").read_text())
    assert manifest["num_images"] == 4 and manifest["num_alphabets"] == 3
    bundle = load_bundle(out / "omniglot_small.npz")
    keys = list(zip(bundle.alphabets, bundle.characters, bundle.file_names))
    assert keys == sorted(keys) and len(keys) == 4
    expected = np.asarray(Image.open(io.BytesIO(_png(4))))
    np.testing.assert_array_equal(
        bundle.images[keys.index(("Latin", "character02", "c_01.png"))], expected
    )
    test = Omniglot("test", bundle_path=out / "omniglot_small.npz")
    assert test.num_classes == 2 and list(test.labels) == [0, 1]


def test_builder_rejects_conflicting_duplicates(tmp_path) -> None:
    first = _zip(tmp_path / "a.zip", "s1", {"Greek/character01/a_01.png": 1})
    second = _zip(tmp_path / "b.zip", "s2", {"Greek/character01/a_01.png": 2})
    with pytest.raises(ValueError, match="different pixels"):
        _tool().collect([first, second])


def test_builder_missing_zip(tmp_path, capsys) -> None:
    assert _tool().main(["--zips", str(tmp_path / "none.zip"), "--out", str(tmp_path)]) == 2
    assert "none.zip" in capsys.readouterr().err
