"""Build the compact Omniglot bundle shipped in ``pml_proxy_anchor/data/assets``.

Reads the two "background small" zips of Omniglot (Lake, Salakhutdinov and Tenenbaum,
"Human-level concept learning through probabilistic program induction", Science 2015;
https://github.com/brendenlake/omniglot, MIT licence) and writes

* ``omniglot_small.npz``: the 4,840 deduplicated 105x105 binary images, bit-packed
  (lossless; ``True``/1 = white background, exactly as in the PNGs), plus the alphabet,
  character and file name of every image;
* ``omniglot_small.json``: a manifest with the SHA-256 of the ``.npz`` (checked on load)
  and the counts.

Greek and Latin appear in both zips; their copies are deduplicated by
``alphabet/character/file name`` after checking that the decoded pixels are identical.

For developers of this repository (the bundle is already in the package). Usage::

    python tools/build_omniglot_bundle.py \\
        --zips DOWNLOADS/images_background_small1.zip DOWNLOADS/images_background_small2.zip \\
        --out pml_proxy_anchor/data/assets

with the two zips of https://github.com/brendenlake/omniglot/tree/master/python.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

BUNDLE_NAME = "omniglot_small.npz"
MANIFEST_NAME = "omniglot_small.json"
IMAGE_SIZE = 105
FORMAT_VERSION = 1


def _read_zip(path: Path) -> dict[tuple[str, str, str], np.ndarray]:
    """Decode every PNG of one zip into ``{(alphabet, character, file): bool array}``."""
    images: dict[tuple[str, str, str], np.ndarray] = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) != 4 or not parts[3].lower().endswith(".png"):
                continue
            _, alphabet, character, file_name = parts
            with Image.open(io.BytesIO(archive.read(name))) as image:
                array = np.asarray(image.convert("1"), dtype=bool)
            if array.shape != (IMAGE_SIZE, IMAGE_SIZE):
                raise ValueError(
                    f"{path}:{name} has shape {array.shape}; expected "
                    f"({IMAGE_SIZE}, {IMAGE_SIZE}) as in the Omniglot release."
                )
            images[(alphabet, character, file_name)] = array
    if not images:
        raise ValueError(
            f"{path} holds no images in the layout <root>/<alphabet>/<character>/<file>.png; "
            "pass the images_background_small{1,2}.zip files of the Omniglot release."
        )
    return images


def collect(zip_paths: list[Path]) -> dict[tuple[str, str, str], np.ndarray]:
    """Merge the zips, deduplicating by (alphabet, character, file) and checking content."""
    merged: dict[tuple[str, str, str], np.ndarray] = {}
    for path in zip_paths:
        for key, array in _read_zip(path).items():
            if key in merged:
                if not np.array_equal(merged[key], array):
                    raise ValueError(
                        f"{'/'.join(key)} appears in several zips with different pixels; "
                        "the bundle expects duplicated alphabets to be identical copies."
                    )
                continue
            merged[key] = array
    return merged


def write_bundle(images: dict[tuple[str, str, str], np.ndarray], out_dir: Path) -> dict:
    """Write the ``.npz`` and its manifest; return the manifest."""
    keys = sorted(images)
    stacked = np.stack([images[key] for key in keys])
    packed = np.packbits(stacked.reshape(len(keys), -1), axis=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = out_dir / BUNDLE_NAME
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        images_packed=packed,
        image_shape=np.array([IMAGE_SIZE, IMAGE_SIZE], dtype=np.int64),
        alphabets=np.array([key[0] for key in keys]),
        characters=np.array([key[1] for key in keys]),
        file_names=np.array([key[2] for key in keys]),
        format_version=np.array(FORMAT_VERSION, dtype=np.int64),
    )
    bundle.write_bytes(buffer.getvalue())
    manifest = {
        "file": BUNDLE_NAME,
        "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
        "bytes": len(buffer.getvalue()),
        "format_version": FORMAT_VERSION,
        "num_images": len(keys),
        "num_characters": len({key[:2] for key in keys}),
        "num_alphabets": len({key[0] for key in keys}),
        "image_size": IMAGE_SIZE,
        "source": "Omniglot images_background_small1.zip + images_background_small2.zip "
        "(https://github.com/brendenlake/omniglot, MIT licence, Lake et al. 2015)",
        "built_by": "tools/build_omniglot_bundle.py",
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--zips",
        nargs="+",
        type=Path,
        required=True,
        help="images_background_small1.zip and images_background_small2.zip",
    )
    parser.add_argument("--license", type=Path, default=None, help="LICENSE file to copy")
    parser.add_argument("--out", type=Path, default=repo / "pml_proxy_anchor/data/assets")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.zips if not p.is_file()]
    if missing:
        print(
            f"error: missing {', '.join(missing)}; download images_background_small1.zip and "
            "images_background_small2.zip from https://github.com/brendenlake/omniglot/tree/"
            "master/python and pass them with --zips.",
            file=sys.stderr,
        )
        return 2
    manifest = write_bundle(collect(args.zips), args.out)
    license_path = args.license or args.zips[0].parent / "LICENSE"
    if license_path.is_file():
        shutil.copyfile(license_path, args.out / "OMNIGLOT_LICENSE")
    print(
        f"wrote {args.out / BUNDLE_NAME} ({manifest['bytes']:,} bytes): "
        f"{manifest['num_images']} images, {manifest['num_characters']} characters, "
        f"{manifest['num_alphabets']} alphabets"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
