"""serve-export: Triton configs parse with Triton's schema, ORT format loads, packages run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import text_format
from modelzoo import mlp_with_batchnorm, to_ir
from onnx import TensorProto, helper
from onnxsmith.runtime.session import create_session

from onnxsmith.io import save_model

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def parse(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture
def chain(tmp_path):
    """mlp: x[batch,8] -> y[batch,4]; head: y[batch,4] -> probs[batch,4] (Softmax)."""
    head = helper.make_graph(
        [helper.make_node("Softmax", ["y"], ["probs"], axis=-1)],
        "head",
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 4])],
    )
    return (
        save_model(mlp_with_batchnorm(), tmp_path / "mlp.onnx"),
        save_model(to_ir(head), tmp_path / "head.onnx"),
    )


def test_triton_repository_layout_and_schema(cli, chain, tmp_path):
    out = tmp_path / "repo"
    code, _, err = cli(
        "serve-export",
        *chain,
        "--format",
        "triton",
        "-o",
        out,
        "--instances",
        "2",
        "--ensemble",
        "pipeline",
    )
    assert code == 0, err
    mlp = parse(out / "mlp" / "config.pbtxt")
    assert mlp.platform == "onnxruntime_onnx" and mlp.max_batch_size == 32
    assert list(mlp.input[0].dims) == [8]  # batch dim left to max_batch_size
    assert mlp.input[0].data_type == model_config_pb2.TYPE_FP32
    assert mlp.dynamic_batching is not None and mlp.HasField("dynamic_batching")
    assert mlp.instance_group[0].count == 2
    assert (out / "mlp" / "1" / "model.onnx").stat().st_size > 0
    ensemble = parse(out / "pipeline" / "config.pbtxt")
    assert ensemble.platform == "ensemble"
    assert [i.name for i in ensemble.input] == ["x"]
    assert [o.name for o in ensemble.output] == ["head_probs"]
    first, second = ensemble.ensemble_scheduling.step
    assert first.output_map["y"] == second.input_map["y"] == "mlp_y"


def test_fixed_batch_model_gets_max_batch_size_zero(cli, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [2, 3])],
    )
    path = save_model(to_ir(graph, opset=14), tmp_path / "fixed.onnx")
    assert cli("serve-export", path, "--format", "triton", "-o", tmp_path / "r")[0] == 0
    config = parse(tmp_path / "r" / "fixed" / "config.pbtxt")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [2, 3]
    assert config.input[0].data_type == model_config_pb2.TYPE_INT64


def test_ort_format_loads_and_matches(cli, chain, tmp_path):
    code, _, err = cli("serve-export", chain[0], "--format", "ort", "-o", tmp_path / "ort")
    assert code == 0, err
    ort_file = tmp_path / "ort" / "mlp.ort"
    config = (tmp_path / "ort" / "mlp.required_operators.config").read_text()
    assert "MatMul" in config
    feed = {"x": np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)}
    want = create_session(chain[0]).run(None, feed)[0]
    got = create_session(ort_file).run(None, feed)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_package_runs_its_predict_script(cli, chain, tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"p50_ratio": 0.5}))
    out = tmp_path / "pkg"
    code, _, err = cli(
        "serve-export", chain[0], "--format", "package", "-o", out, "--report", report
    )
    assert code == 0, err
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["inputs"][0]["name"] == "x" and metadata["metrics"] == {"p50_ratio": 0.5}
    np.savez(tmp_path / "feed.npz", x=np.ones((2, 8), np.float32))
    done = subprocess.run(
        [sys.executable, "predict.py", str(tmp_path / "feed.npz")],
        cwd=out,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "y (2, 4) float32"


def test_bad_requests_leave_nothing(cli, chain, tmp_path):
    out = tmp_path / "o"
    code, _, err = cli("serve-export", *chain, "--format", "ort", "-o", out)
    assert code == 2 and "takes one model" in err
    code, _, err = cli(
        "serve-export", chain[0], "--format", "package", "-o", out, "--report", tmp_path
    )
    assert code == 2 and err.count("\n") == 1
    code, _, err = cli("serve-export", chain[0], "--format", "onnx", "-o", out)
    assert code == 2
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "head.onnx",
        "mlp.onnx",
    ]
