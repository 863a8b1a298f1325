"""Runs the packaged model on .npz feeds and writes its outputs (`predict.py` of a package).

`onnxsmith serve-export MODEL --format package -o DIR` copies this file verbatim as
DIR/predict.py; onnxsmith never imports it. It needs only numpy and onnxruntime, and finds
`model.onnx` and `metadata.json` next to itself, so it runs from any folder:

    python DIR/predict.py feeds/ -o predictions/          # one .npz per feed file
    python DIR/predict.py a.npz b.npz --json -o out/     # JSON instead

A feed is an .npz whose keys are the model's input names (a folder: its *.npz in name order).
Each feed is checked against the model's signature (names, dtypes, ranks, fixed dims) before
anything runs; a mismatch is one line on stderr and exit code 1 (2 for a bad command line).
It lives in onnxsmith's runtime/, which owns every ORT session onnxsmith creates or writes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = HERE / "model.onnx"
METADATA = HERE / "metadata.json"
SHOWN = 10  # feeds listed one per line; the rest are counted


class FeedError(Exception):
    """A feed the model cannot take; the message is the one line printed."""


def feed_files(paths: list[str]) -> list[Path]:
    """The .npz files named, folders expanded to their *.npz in name order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.npz") if p.is_file())
            if not found:
                raise FeedError(f"{path}: no .npz files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FeedError(f"{path}: no such file or folder")
    stems = [f.stem for f in files]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise FeedError(f"feeds {clashes} share a name, so their outputs would clash: rename one")
    return files


def load_feed(path: Path, inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays of one .npz, checked against the model's inputs."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            feed = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as e:
        raise FeedError(f"{path}: not a readable .npz ({e})") from e
    names = [spec["name"] for spec in inputs]
    if sorted(feed) != sorted(names):
        raise FeedError(
            f"{path}: has arrays {sorted(feed)}, the model takes {names} — "
            "save one array per input: numpy.savez(path, **{input_name: array})"
        )
    for spec in inputs:
        array, shape = feed[spec["name"]], spec["shape"]
        if array.dtype != np.dtype(spec["dtype"]):
            raise FeedError(
                f"{path}: input {spec['name']!r} is {array.dtype}, the model takes "
                f"{spec['dtype']} — save it with .astype('{spec['dtype']}')"
            )
        fits = shape is None or (
            array.ndim == len(shape)
            and all(
                not isinstance(d, int) or d == n for d, n in zip(shape, array.shape, strict=True)
            )
        )
        if not fits:
            wanted = ", ".join("?" if d is None else str(d) for d in shape)
            raise FeedError(
                f"{path}: input {spec['name']!r} has shape {list(array.shape)}, the model takes "
                f"[{wanted}]"
            )
    return feed


def write_atomic(path: Path, write: Any) -> None:
    """Calls `write(file)` on a temporary file beside `path`, then renames it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_outputs(outputs: dict[str, np.ndarray], path: Path, as_json: bool) -> None:
    if as_json:
        text = json.dumps({"outputs": {k: v.tolist() for k, v in outputs.items()}})
        write_atomic(path, lambda f: f.write(text.encode()))
    else:
        arrays: dict[str, Any] = outputs  # numpy's stubs type **kwds like allow_pickle
        write_atomic(path, lambda f: np.savez(f, **arrays))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="predict.py",
        description=f"Runs {MODEL.name} (next to this script) on .npz feeds and saves the outputs.",
    )
    parser.add_argument("feeds", nargs="+", metavar="FEED", help=".npz files or folders of them")
    parser.add_argument(
        "-o", "--output", default="predictions", help="folder (default predictions)"
    )
    parser.add_argument("--json", action="store_true", help="write JSON instead of .npz")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import onnxruntime as ort

    try:
        inputs = json.loads(METADATA.read_text())["inputs"]
        files = feed_files(args.feeds)
        for file in files:  # every feed is checked before anything runs or is written
            load_feed(file, inputs)
    except (OSError, KeyError, ValueError, FeedError) as e:
        print(f"predict.py: error: {e}", file=sys.stderr)
        return 1
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, file in enumerate(files):
        try:
            outputs = dict(zip(names, session.run(names, load_feed(file, inputs)), strict=True))
        except Exception as e:  # ORT refused a feed that passed the checks
            print(f"predict.py: error: {file}: {str(e).strip().splitlines()[0]}", file=sys.stderr)
            return 1
        target = out / f"{file.stem}.{'json' if args.json else 'npz'}"
        save_outputs(outputs, target, args.json)
        if i < SHOWN:
            shapes = ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in outputs.items())
            print(f"{file} -> {target}: {shapes}")
    seconds = time.perf_counter() - start
    if len(files) > SHOWN:
        print(f"... and {len(files) - SHOWN} more")
    print(f"{len(files)} feed(s) through {MODEL.name} in {seconds:.2f} s; outputs in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
