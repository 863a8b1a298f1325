"""Cluster benchmark: one model on two labelled nodes in one report, and a 20-model recipe
fanned out on Ray against the same recipe run serially.

A local cluster is started on this machine (tests/raycluster.py: a head labelled hw=host and
a worker labelled hw=edge, one CPU and one `timing` resource each) and killed at the end.

1. `onnxsmith bench ch_PP-OCRv4_det_infer.onnx --target hw=host --target hw=edge`, timed on a
   real photo (scikit-learn's `china.jpg`, 3×320×480, PP-OCR normalisation): one report,
   both nodes side by side. Both nodes are this machine, so the two columns should agree;
   what the run shows is that each column was measured on its node (its node id).
2. A recipe over 20 small CNNs (3×64×64 input, widths 16–48, seeded): optimize → prune
   --structured 0.3 (group timing) → bench (30 rounds), run serially (`onnxsmith run`, no
   [cluster]) and fanned out (the same recipe with [cluster]), alternating
   serial/cluster `--rounds` times, each run into a fresh output folder.

Usage: python -P bench/cluster_bench.py [--rounds 2] [--models 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the cluster launcher
from raycluster import ENV, LocalCluster

ONNXSMITH = str(Path(sys.executable).with_name("onnxsmith"))
RECIPE = """
name = "zoo"
models = "models"
output = "{output}"

[[steps]]
step = "optimize"

[[steps]]
step = "prune"
structured = true
sparsity = 0.3
timing_seconds = 0.5
threads = 1

[bench]
runs = 30
threads = 1
no_memory = true
"""


def cnn(seed: int) -> onnx.ModelProto:
    """x[1, 3, 64, 64] → 3 × (Conv 3×3 + Relu, the last two stride 2) → GlobalAveragePool → Gemm."""
    rng = np.random.default_rng(seed)
    widths = [3, *(int(w) for w in rng.integers(16, 49, size=3))]
    nodes, inits, x = [], [], "x"
    for i in range(3):
        w = rng.normal(0, 0.2, (widths[i + 1], widths[i], 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        strides = [1, 1] if i == 0 else [2, 2]
        nodes.append(
            helper.make_node(
                "Conv", [x, f"w{i}"], [f"c{i}"], pads=[1] * 4, strides=strides, name=f"conv{i}"
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        x = f"r{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["p"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["p"], ["f"], name="flat"))
    fc = rng.normal(0, 0.2, (widths[-1], 10)).astype(np.float32)
    inits.append(numpy_helper.from_array(fc, "fc"))
    nodes.append(helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc"))
    graph = helper.make_graph(
        nodes,
        f"cnn{seed}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def photo(folder: Path) -> Path:
    """scikit-learn's `china.jpg` photo as one PP-OCR det feed (3×320×480, mean/std
    normalised as PP-OCR does)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    image = Image.fromarray(load_sample_image("china.jpg")).resize((480, 320))
    rgb = np.asarray(image, np.float32).transpose(2, 0, 1) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "000.npz", x=((rgb - mean) / std)[None])
    return folder


def onnxsmith(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([ONNXSMITH, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", type=int, default=20)
    args = parser.parse_args()
    os.environ.update(ENV)
    cpuinfo = Path("/proc/cpuinfo").read_text()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor(),
    )
    flags = cpuinfo
    print(f"CPU: {cpu}; avx512_vnni={'avx512_vnni' in flags}; amx={'amx_int8' in flags}")
    print(f"load average at start: {os.getloadavg()}")
    cluster = LocalCluster()
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        work = Path(tmp)
        try:
            start = time.perf_counter()
            cluster.head()
            cluster.add(("edge", "hw=edge"))
            print(f"cluster of 2 nodes started in {time.perf_counter() - start:.1f} s")

            import rapidocr_onnxruntime

            det = Path(rapidocr_onnxruntime.__file__).parent / "models/ch_PP-OCRv4_det_infer.onnx"
            feeds = photo(work / "photo")
            report = work / "two-nodes"
            onnxsmith(
                "bench", str(det), "--data", str(feeds), "--target", "hw=host", "--target",
                "hw=edge", "--cluster", cluster.address, "--seconds", "5", "--threads", "1",
                "--report", str(report), cwd=work,
            )  # fmt: skip
            print((report / "report.md").read_text().split("### ", 3)[1])
            print("### " + (report / "report.md").read_text().split("### ", 3)[2])

            (work / "models").mkdir()
            for seed in range(args.models):
                onnx.save(cnn(seed), work / "models" / f"cnn{seed:02d}.onnx")
            walls: dict[str, list[float]] = {"serial": [], "cluster": []}
            for r in range(args.rounds):
                for mode in ("serial", "cluster"):
                    text = RECIPE.format(output=f"out-{mode}-{r}")
                    if mode == "cluster":
                        text += f'\n[cluster]\naddress = "{cluster.address}"\n'
                    recipe = work / f"{mode}-{r}.toml"
                    recipe.write_text(text)
                    walls[mode].append(onnxsmith("run", str(recipe), cwd=work))
                    print(f"round {r + 1} {mode}: {walls[mode][-1]:.1f} s", flush=True)
            summary = json.loads(
                (work / f"out-cluster-{args.rounds - 1}" / "summary.json").read_text()
            )
            nodes = {
                s["node"][:12] for c in summary["chains"].values() for s in c["steps"].values()
            }
            serial, fanned = np.median(walls["serial"]), np.median(walls["cluster"])
            print(
                f"{args.models} models: serial median {serial:.1f} s, fanned out median "
                f"{fanned:.1f} s → {serial / fanned:.2f}x; steps ran on nodes {sorted(nodes)}"
            )
            print(f"load average at end: {os.getloadavg()}")
        finally:
            cluster.close()


if __name__ == "__main__":
    main()
