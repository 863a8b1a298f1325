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


@pytest.fixture
def package(cli, chain, tmp_path):
    """A package of the mlp (x: float32[batch, 8] -> y: float32[batch, 4]) and a folder that is
    neither the package nor where the feeds are: predict.py must not depend on the cwd."""
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"p50_ratio": 0.5}))
    out = tmp_path / "pkg"
    code, _, err = cli(
        "serve-export", chain[0], "--format", "package", "-o", out, "--report", report
    )
    assert code == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return out, elsewhere


def run_predict(package_dir, cwd, *args):
    return subprocess.run(
        [sys.executable, str(package_dir / "predict.py"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_package_metadata(package):
    metadata = json.loads((package[0] / "metadata.json").read_text())
    assert metadata["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 8]}]
    assert metadata["metrics"] == {"p50_ratio": 0.5}


def test_package_predict_runs_from_another_folder(package, chain, tmp_path):
    out, elsewhere = package
    rng = np.random.default_rng(0)
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    xs = {f"{i:02d}": rng.normal(size=(i + 1, 8)).astype(np.float32) for i in range(3)}
    for stem, x in xs.items():
        np.savez(feeds / f"{stem}.npz", x=x)
    xs["single"] = rng.normal(size=(2, 8)).astype(np.float32)
    np.savez(tmp_path / "single.npz", x=xs["single"])
    done = run_predict(out, elsewhere, "../feeds", "../single.npz", "-o", "preds")
    assert done.returncode == 0, done.stderr
    assert "4 feed(s) through model.onnx" in done.stdout and "y float32[3, 4]" in done.stdout
    session = create_session(chain[0])
    for stem, x in xs.items():
        with np.load(elsewhere / "preds" / f"{stem}.npz") as got:
            # same ORT, same graph: only the thread split may differ, and it does not split K
            np.testing.assert_allclose(got["y"], session.run(None, {"x": x})[0], rtol=1e-6)
    done = run_predict(out, elsewhere, "../single.npz", "--json", "-o", "json")
    assert done.returncode == 0, done.stderr
    got = json.loads((elsewhere / "json" / "single.json").read_text())["outputs"]["y"]
    want = session.run(None, {"x": xs["single"]})[0]
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-6)


def test_package_predict_help(package):
    done = run_predict(package[0], package[1], "--help")
    assert done.returncode == 0 and "usage: predict.py" in done.stdout and "--json" in done.stdout
    assert not (package[1] / "--help").exists() and not (package[1] / "predictions").exists()


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [
        ({"x": np.ones((2, 8))}, "input 'x' is float64, the model takes float32"),
        ({"x": np.ones((2, 7), np.float32)}, "has shape [2, 7], the model takes [batch, 8]"),
        ({"x": np.ones(8, np.float32)}, "has shape [8], the model takes [batch, 8]"),
        ({"image": np.ones((2, 8), np.float32)}, "has arrays ['image'], the model takes ['x']"),
    ],
)
def test_package_predict_refuses_a_feed_in_one_line(package, tmp_path, arrays, reason):
    out, elsewhere = package
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, x=np.ones((1, 8), np.float32))
    np.savez(bad, **arrays)
    done = run_predict(out, elsewhere, good, bad)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and str(bad) in done.stderr and reason in done.stderr
    assert not (elsewhere / "predictions").exists()  # nothing written, not even the good feed
    missing = run_predict(out, elsewhere, tmp_path / "nope.npz")
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr


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


@pytest.mark.parametrize(
    ("fmt", "option", "value"),
    [
        ("ort", "--name", "m"),
        ("ort", "--max-batch-size", "8"),
        ("package", "--instances", "2"),
        ("triton", "--threads", "2"),
        ("triton", "--batch-wait-ms", "5"),
        ("ray-serve", "--ensemble", "all"),
        ("triton", "--report", "r.json"),
    ],
)
def test_an_option_of_another_format_is_an_error_not_ignored(
    cli, chain, tmp_path, fmt, option, value
):
    out = tmp_path / "o"
    code, _, err = cli("serve-export", chain[0], "--format", fmt, "-o", out, option, value)
    assert code == 2 and f"{option} does not apply to --format {fmt}" in err
    assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("fmt", ["triton", "package"])
def test_external_data_of_any_name_travels_with_the_model(cli, chain, tmp_path, fmt):
    import onnx

    folder = tmp_path / "ext"
    folder.mkdir()
    source = folder / "mlp.onnx"
    onnx.save(onnx.load(chain[0]), source, save_as_external_data=True,
              location="mlp.weights", size_threshold=0)  # fmt: skip
    out = tmp_path / "o"
    code, _, err = cli("serve-export", source, "--format", fmt, "-o", out)
    assert code == 0, err
    (copied,) = out.rglob("model.onnx")
    assert (copied.parent / "mlp.weights").is_file()
    feed = {"x": np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)}
    want = create_session(chain[0]).run(None, feed)
    np.testing.assert_array_equal(create_session(copied).run(None, feed)[0], want[0])
