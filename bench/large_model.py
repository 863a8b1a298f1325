"""A model over 2 GB (external data) through `inspect`, `optimize` and `merge`, and calibration
on a data dir of several GB: peak RSS and wall time of each verb.

The model is an MLP of 4096-wide layers as exporters write it (MatMul + Add bias, a
BatchNormalization every fourth layer, Relu, Dropout); its weights are streamed to `big.onnx.data`
one layer at a time, so building it never holds more than one layer in memory. `merge` takes
two copies of it (mode mean: the identical weights are stored once). Calibration: `quantize`
streams a data dir of `--calib-gb` GB (4 MiB feeds) and a tenth of it; equal peaks mean memory
does not grow with the data. Each verb runs as a child process of the installed `onnxsmith`;
its peak RSS is the ru_maxrss of that child alone.

    .venv/bin/python -P bench/large_model.py --out bench/out/large            # ~2.2 GB, 33 layers
    .venv/bin/python -P bench/large_model.py --out /tmp/large --layers 33 --markdown

Exits non-zero when a verb fails or its output is not a valid model with external data, so
tests/test_large_models.py can run it as the opt-in >2 GB test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxsmith.io import load_model

WIDTH = 4096


def _external(name: str, array: np.ndarray, data, location: str) -> TensorProto:
    """Appends `array` to the open data file and returns a tensor that points at it."""
    offset = data.tell()
    data.write(array.tobytes())
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(array.shape))
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", array.nbytes)):
        tensor.external_data.add(key=key, value=str(value))
    return tensor


def build(folder: Path, layers: int, seed: int = 0) -> Path:
    """Writes folder/big.onnx + big.onnx.data: `layers` × 64 MiB of float32 weights."""
    rng = np.random.default_rng(seed)
    path = folder / "big.onnx"
    nodes, initializers = [], []
    x = "x"
    with open(folder / "big.onnx.data", "wb") as data:
        for i in range(layers):
            weight = rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / np.float32(64)
            initializers.append(_external(f"w{i}", weight, data, path.name + ".data"))
            del weight
            bias = rng.normal(0, 0.1, WIDTH).astype(np.float32)
            initializers.append(numpy_helper.from_array(bias, f"b{i}"))
            nodes += [
                helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"]),
                helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"h{i}"]),
            ]
            y = f"h{i}"
            if i % 4 == 0:
                stats = [
                    rng.uniform(0.5, 1.5, WIDTH),
                    rng.normal(0, 0.1, WIDTH),
                    rng.normal(0, 0.1, WIDTH),
                    rng.uniform(0.5, 1.5, WIDTH),
                ]
                names = [f"bn{i}.{k}" for k in ("gamma", "beta", "mean", "var")]
                initializers += [
                    numpy_helper.from_array(s.astype(np.float32), n)
                    for s, n in zip(stats, names, strict=True)
                ]
                nodes.append(helper.make_node("BatchNormalization", [y, *names], [f"bn{i}"]))
                y = f"bn{i}"
            nodes += [
                helper.make_node("Relu", [y], [f"r{i}"]),
                helper.make_node("Dropout", [f"r{i}"], [f"d{i}"]),
            ]
            x = f"d{i}"
    graph = helper.make_graph(
        nodes,
        "large_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", WIDTH])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def calibration_case(folder: Path, feeds: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """A 1024→256 MatMul model, `feeds` calibration files of 4 MiB each, and 4 eval files."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((1024, 256), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "calib_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 256])],
        [weight],
    )
    model = folder / "small.onnx"
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.write_bytes(proto.SerializeToString())
    dirs = []
    for name, count in ((f"calib{feeds}", feeds), ("eval", 4)):
        data = folder / name
        data.mkdir(exist_ok=True)
        for i in range(count):
            x = rng.standard_normal((1024, 1024), dtype=np.float32)
            np.savez(data / f"{i:05d}.npz", x=x)
        dirs.append(data)
    return model, dirs[0], dirs[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="scratch folder (needs ~3× the model size on disk)")
    parser.add_argument("--layers", type=int, default=33, help="64 MiB each; 33 ≈ 2.2 GB")
    parser.add_argument("--calib-gb", type=float, default=3.0, help="calibration data dir size")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md table")
    parser.add_argument("--measure", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # child mode: run one verb, report its own peak RSS
        return _measure_child(args.measure)
    if not args.out:
        parser.error("--out is required")
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = build(folder, args.layers)
    size = model.stat().st_size + (folder / "big.onnx.data").stat().st_size
    rows = [("build (streamed)", time.perf_counter() - start, None)]
    runs = {
        "inspect --json": ["inspect", str(model), "--json"],
        "optimize (ORT parity check)": ["optimize", str(model), "-o", str(folder / "opt.onnx")],
        "optimize --no-check": [
            "optimize",
            str(model),
            "-o",
            str(folder / "opt_nocheck.onnx"),
            "--no-check",
        ],
        "merge --mode mean (2 copies)": [
            "merge",
            str(model),
            str(model),
            "-o",
            str(folder / "merged.onnx"),
            "--mode",
            "mean",
        ],
    }
    feeds = max(1, round(args.calib_gb * 2**30 / 2**22))
    for count in (max(1, feeds // 10), feeds):
        small, calib, evaluation = calibration_case(folder, count)
        runs[f"quantize, calibration on {count * 4 / 1024:.2f} GB"] = [
            "quantize", str(small), "-o", str(folder / f"q{count}.onnx"), "--calib", str(calib),
            "--eval", str(evaluation), "--method", "minmax", "--no-latency-aware",
        ]  # fmt: skip
    failed = False
    for label, argv in runs.items():
        code, wall, peak, err = _run_measured(argv)
        rows.append((label, wall, peak))
        if code != 0:
            print(f"{label}: exit {code}: {err.strip()}", file=sys.stderr)
            failed = True
    for out in ("opt.onnx", "opt_nocheck.onnx", "merged.onnx"):
        failed |= not _valid_external_output(folder / out)
    print(f"model: {args.layers} layers, {size / 1e9:.2f} GB on disk")
    if args.markdown:
        print("| step | wall s | peak RSS GB |\n|---|---|---|")
        for label, wall, peak in rows:
            print(f"| {label} | {wall:.1f} | {'-' if peak is None else f'{peak:.2f}'} |")
    else:
        print(json.dumps(rows))
    return 1 if failed else 0


def _run_measured(argv: list[str]) -> tuple[int, float, float, str]:
    """Runs this script in --measure mode so the peak RSS is that of one verb alone."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-P", __file__, "--measure", *argv],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    peak = float(lines[-1]) if done.returncode == 0 and lines else float("nan")
    return done.returncode, wall, peak, done.stderr


def _measure_child(argv: list[str]) -> int:
    script = Path(sys.executable).with_name("onnxsmith")
    with open(os.devnull, "w") as sink:
        child = subprocess.Popen([str(script), *argv], stdout=sink, stderr=subprocess.PIPE)
        _, stderr = child.communicate()
    # ru_maxrss (KiB on Linux) of the children reaped so far: the verb is the only one.
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    sys.stderr.write(stderr.decode(errors="replace"))
    print(f"{peak_gb:.3f}")
    return child.returncode


def _valid_external_output(path: Path) -> bool:
    data = path.with_name(f"{path.name}.data")
    proto = onnx.load(str(path), load_external_data=False)
    external = any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    ok = external and data.is_file() and data.stat().st_size > 2**31
    load_model(path)  # raises on anything invalid
    if not ok:
        print(f"{path}: expected over 2 GB of external data", file=sys.stderr)
    return ok


if __name__ == "__main__":
    sys.exit(main())
