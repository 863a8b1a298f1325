"""Same inputs and seed, same bytes, for every verb that writes a model: two fresh interpreters
with different PYTHONHASHSEEDs run prune, quantize, merge, serve-export (and, with torch,
export and distill) on the same files, and every file they write must match byte for byte.

The one field allowed to differ is quantize's measured `latency_ratio_vs_fp32` in the model's
metadata: a timing, recorded on purpose. It is blanked before comparing, and `--no-latency-aware`
keeps the measurement from deciding anything (with it on, the plan follows this machine's
timings, which is the point of it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from distill_data import make_task

from onnxsmith.io import save_model
from onnxsmith.samples import tiny_cnn

ZOO = Path(__file__).with_name("torch_models.py")
HAS_RAY = importlib.util.find_spec("ray") is not None  # the cluster extra: ray-serve export

RUN_VERBS = """
import json, sys
from onnxsmith.cli.main import main
for argv in json.loads(sys.argv[1]):
    assert main(argv) == 0, argv
"""


def core_verbs(model: Path, calib: Path) -> list[list[str]]:
    m, c = str(model), str(calib)
    return [
        ["prune", m, "-o", "{out}/unstructured.onnx", "--sparsity", "0.5", "--calib", c],
        ["prune", m, "-o", "{out}/structured.onnx", "--sparsity", "0.5", "--structured",
         "--calib", c, "--no-measure", "--channel-multiple", "8"],
        ["quantize", m, "-o", "{out}/int8.onnx", "--calib", c, "--no-latency-aware",
         "--timing-seconds", "0.2"],
        ["merge", m, "{out}/unstructured.onnx", "-o", "{out}/mean.onnx", "--mode", "mean"],
        ["merge", m, "{out}/unstructured.onnx", "-o", "{out}/cascade.onnx",
         "--mode", "cascade", "--threshold", "0.9"],
        ["serve-export", "{out}/mean.onnx", "--format", "triton", "-o", "{out}/triton"],
        ["serve-export", "{out}/mean.onnx", "--format", "package", "-o", "{out}/package"],
        *([["serve-export", "{out}/mean.onnx", "--format", "ray-serve", "-o", "{out}/ray"]]
          if HAS_RAY else []),
    ]  # fmt: skip


def _calibration(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        image = rng.normal(0, 1, (4, 1, 8, 8)).astype(np.float32)
        np.savez(folder / f"{i:03d}.npz", image=image)
    return folder


def _without_timing(path: Path) -> bytes:
    """The model's bytes with quantize's measured latency (ratio, interval, verdict) blanked."""
    proto = onnx.load(str(path))
    for prop in proto.metadata_props:
        if prop.key == "onnxsmith.quantize":
            record = json.loads(prop.value)
            for key in [k for k in record if k.startswith("latency")]:  # ratio, CI, verdict
                record[key] = None
            prop.value = json.dumps(record, sort_keys=True)
    return proto.SerializeToString()


def _outputs(folder: Path) -> dict[str, bytes]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        str(p.relative_to(folder)): _without_timing(p) if p.name == "int8.onnx" else p.read_bytes()
        for p in files
    }


def _run_twice(tmp_path: Path, verbs: list[list[str]]) -> list[dict[str, bytes]]:
    """Runs `verbs` ({out} in an argument is the run's folder) in two fresh interpreters, at
    the same time (each writes its own folder)."""
    started = []
    for seed in (1, 2):
        out = tmp_path / f"run{seed}"
        out.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        argvs = [[a.replace("{out}", str(out)) for a in argv] for argv in verbs]
        argv = [sys.executable, "-P", "-c", RUN_VERBS, json.dumps(argvs)]
        log = tmp_path / f"run{seed}.stderr"  # a file: a full pipe would stall the other run
        with log.open("w") as stderr:
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        started.append((process, out, log))
    runs = []
    for process, out, log in started:
        assert process.wait(timeout=300) == 0, log.read_text()[-2000:]
        runs.append(_outputs(out))
    return runs


def _assert_identical(runs: list[dict[str, bytes]], expected: set[str]) -> None:
    assert expected <= set(runs[0]), sorted(runs[0])
    assert runs[0].keys() == runs[1].keys()
    different = [name for name in runs[0] if runs[0][name] != runs[1][name]]
    assert not different, f"differ between runs: {different}"


def test_prune_quantize_merge_serve_are_byte_identical_across_processes(tmp_path):
    model = save_model(tiny_cnn(), tmp_path / "cnn.onnx")
    runs = _run_twice(tmp_path, core_verbs(model, _calibration(tmp_path / "calib")))
    _assert_identical(
        runs,
        {
            "unstructured.onnx", "structured.onnx", "int8.onnx", "mean.onnx", "cascade.onnx",
            "triton/mean/config.pbtxt", "triton/mean/1/model.onnx",
            *(["ray/serve_config.yaml", "ray/models/mean/metadata.json"] if HAS_RAY else []),
        },
    )  # fmt: skip


@pytest.mark.torch
def test_export_and_distill_are_byte_identical_across_processes(tmp_path):
    pytest.importorskip("torch")
    teachers, dirs, _ = make_task(tmp_path, train=200)
    verbs = [
        ["export", f"{ZOO}:build_mlp", "-o", "{out}/export.onnx", "--input-shape", "x=3x16",
         "--dynamic-batch"],
        ["distill", *map(str, teachers), "--student", f"{ZOO}:build_mlp", "--data",
         str(dirs["train"]), "-o", "{out}/student.onnx", "--epochs", "2", "--seed", "3",
         "--latency-runs", "0"],
    ]  # fmt: skip
    runs = _run_twice(tmp_path, verbs)
    runs = [{k: v for k, v in run.items() if ".distill/" not in k} for run in runs]  # the cache
    _assert_identical(runs, {"export.onnx", "student.onnx"})
