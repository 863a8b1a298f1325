"""Large models and large data dirs, cheaply: the code paths a >2 GB model takes, at KB scale.

- External data forced on (`--external-data`) and the automatic switch (the 2 GB threshold
  lowered) go through `inspect` and `optimize`, parity check included (its session is then built
  from a temp folder, as for a real >2 GB model).
- A data dir is streamed: reading 40 files holds about one file in memory (tracemalloc counts
  numpy's buffers), while holding them all would take 40.
- The real thing (a 2.2 GB model through inspect, optimize and merge) is bench/large_model.py;
  `test_over_2gb_model` runs it when ONNXSMITH_LARGE=1 (`make fuzz` sets it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnxsmith.runtime import session
from onnxsmith.runtime.data import DataDir

import onnxsmith.io
from onnxsmith.io import load_model, save_model
from onnxsmith.samples import tiny_cnn
from onnxsmith.signature import TensorSpec

ROOT = Path(__file__).resolve().parents[1]


def uses_external_data(path: Path) -> bool:
    proto = onnx.load(str(path), load_external_data=False)
    return any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)


def test_forced_external_data_through_inspect_and_optimize(cli, tmp_path):
    source = save_model(tiny_cnn(), tmp_path / "m.onnx", external_data=True)
    code, out, err = cli("inspect", source, "--json")
    assert code == 0, err
    assert json.loads(out)["weights"]["by_location"]["external"] > 0
    result = tmp_path / "o.onnx"
    code, out, err = cli("optimize", source, "-o", result, "--external-data")
    assert code == 0 and "parity: ok" in out, err
    assert uses_external_data(result) and result.with_name("o.onnx.data").stat().st_size > 0
    load_model(result)


def test_automatic_external_data_above_the_threshold(cli, tmp_path, monkeypatch):
    """With the 2 GB threshold at 1 KB, a 20 KB model behaves like a 3 GB one."""
    monkeypatch.setattr(onnxsmith.io, "EXTERNAL_DATA_THRESHOLD", 1000)
    monkeypatch.setattr(session, "EXTERNAL_DATA_THRESHOLD", 1000)
    source = save_model(tiny_cnn(), tmp_path / "m.onnx")
    assert uses_external_data(source)  # the input itself went external automatically
    result = tmp_path / "o.onnx"
    code, out, err = cli("optimize", source, "-o", result)
    assert code == 0 and "parity: ok" in out, err
    assert uses_external_data(result)
    code, _, err = cli("optimize", source, "-o", tmp_path / "p.onnx", "--json", tmp_path / "r.json")
    assert code == 0, err


def test_data_dir_is_streamed_one_file_at_a_time(tmp_path):
    one_file = 1 << 20  # 1 MiB of float32 per feed
    for i in range(40):
        np.savez(tmp_path / f"{i:03d}.npz", x=np.ones((1, 256, 1024), np.float32))
    specs = [TensorSpec("x", np.dtype(np.float32), ("batch", 256, 1024))]
    tracemalloc.start()
    try:
        seen = sum(feed["x"].nbytes for feed in DataDir(tmp_path, specs))
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held = list(DataDir(tmp_path, specs))
        _, held_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == 40 * one_file and len(held) == 40
    assert streamed_peak < 4 * one_file  # about one feed (+ the check's temporaries)
    assert held_peak > 30 * one_file  # the measurement does see arrays that are kept


@pytest.mark.large
@pytest.mark.skipif(os.environ.get("ONNXSMITH_LARGE") != "1", reason="set ONNXSMITH_LARGE=1")
def test_over_2gb_model_through_inspect_optimize_and_merge(tmp_path):
    script = ROOT / "bench" / "large_model.py"
    done = subprocess.run(
        [
            sys.executable,
            "-P",
            str(script),
            "--out",
            str(tmp_path),
            "--layers",
            "33",
            "--calib-gb",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
