"""The Ray Serve hand-off end to end: `serve-export --format ray-serve`, then `onnxsmith serve`
on a free loopback port in a child process, real HTTP requests.

Checked: answers on scikit-learn digits agree with ORT in-process, a short load test (300
requests from 16 clients) has no errors and no wrong answers, malformed requests get a 4xx and
the server keeps serving, and the error paths of both verbs are one line. One server (Ray start
is ~20 s on the 2-core CI machine) serves every test of the module; it is torn down, Ray
included, even when a test fails.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from modelzoo import to_ir
from onnx import TensorProto, helper
from onnxsmith.runtime.handoff_scripts import RAY_SERVE_APP
from onnxsmith.runtime.session import create_session

from onnxsmith.cli.main import main
from onnxsmith.digits import load_digits_split
from onnxsmith.io import save_model
from onnxsmith.samples import tiny_cnn
from onnxsmith.serve.ray_server import free_port, serving_in_background

REQUEST_TIMEOUT_S = 30.0
# Same ORT build and graph on both sides, and JSON round-trips float32 exactly, so the only
# difference is the server running several requests as one batch: another summation order in
# Conv/Gemm, a few float32 ulps on logits of magnitude ~1.
RTOL, ATOL = 1e-5, 1e-5
NEEDS_RAY = "needs the cluster extra: pip install 'onnxsmith[cluster]'"


def call(url: str, body: bytes | None = None, method: str = "POST") -> tuple[int, dict]:
    """(status, JSON body) of one request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def predict(url: str, **inputs: np.ndarray) -> tuple[int, dict]:
    body = json.dumps({"inputs": {k: v.tolist() for k, v in inputs.items()}}).encode()
    return call(f"{url}/predict", body)


def fixed_int_model(path: Path) -> Path:
    """ids: int64[2, 3] -> doubled: int64[2, 3]; a model Serve cannot batch across requests."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["ids", "ids"], ["doubled"])],
        "fixed",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("doubled", TensorProto.INT64, [2, 3])],
    )
    return save_model(to_ir(graph, opset=14), path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("ray.serve", reason=NEEDS_RAY)
    root = tmp_path_factory.mktemp("ray_serve")
    cnn = save_model(tiny_cnn(seed=0), root / "cnn.onnx")
    ids = fixed_int_model(root / "ids.onnx")
    app = root / "app"
    assert main(["serve-export", str(cnn), str(ids), "--format", "ray-serve", "-o", str(app)]) == 0
    with serving_in_background(app, port=free_port(), log=root / "serve.log") as base:
        yield {"base": base, "cnn": cnn, "ids": ids}


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(side=8, seed=0, calib=10, evaluate=400).eval_x


def test_info_route_gives_the_signature(server):
    status, info = call(f"{server['base']}/cnn/info", method="GET")
    assert status == 200
    assert info["inputs"] == [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    assert info["outputs"][0]["name"] == "logits" and info["producer"] == "onnxsmith.samples"
    assert info["serving"]["batched_across_requests"] is True
    status, info = call(f"{server['base']}/ids/info", method="GET")
    assert status == 200 and info["serving"]["batched_across_requests"] is False


def test_answers_match_ort_in_process(server, digits):
    session = create_session(server["cnn"])
    for start, size in ((0, 1), (1, 1), (2, 8), (10, 3)):
        images = digits[start : start + size]
        status, body = predict(f"{server['base']}/cnn", image=images)
        assert status == 200, body
        got = np.asarray(body["outputs"]["logits"], np.float32)
        want = session.run(None, {"image": images})[0]
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
        assert (got.argmax(1) == want.argmax(1)).all()
    ids = np.arange(6, dtype=np.int64).reshape(2, 3) - 3
    status, body = predict(f"{server['base']}/ids", ids=ids)
    assert status == 200 and body["outputs"]["doubled"] == (2 * ids).tolist()


def test_load_300_requests_16_clients(server, digits):
    """Batches of 1-4 digits, so Serve merges requests of different sizes and splits them."""
    session = create_session(server["cnn"])
    rng = np.random.default_rng(0)
    requests = [
        digits[start : start + size]
        for start, size in zip(rng.integers(0, 390, 300), rng.integers(1, 5, 300), strict=True)
    ]
    url = f"{server['base']}/cnn"

    def check(images: np.ndarray) -> str:
        status, body = predict(url, image=images)
        if status != 200:
            return f"error {status}"
        got = np.asarray(body["outputs"]["logits"], np.float32)
        want = session.run(None, {"image": images})[0]
        close = got.shape == want.shape and np.allclose(got, want, rtol=RTOL, atol=ATOL)
        return "ok" if close and (got.argmax(1) == want.argmax(1)).all() else "wrong"

    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(check, requests))
    seconds = time.perf_counter() - start
    stats = call(f"{url}/info", method="GET")[1]["replica_stats"]
    print(f"300 requests, 16 clients: {300 / seconds:.0f} requests/s; replica: {stats}")
    assert outcomes.count("ok") == 300, sorted(set(outcomes))


MALFORMED = [
    (b"not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "not JSON"),
    (b"[" * 100_000, 400, "not JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"inputs": {}}', 400, "missing ['image']"),
    (b'{"inputs": {"image": [[[[0.5]]]], "extra": [1]}}', 400, "unknown ['extra']"),
    (b'{"inputs": {"image": [0.5, 0.5]}}', 400, "rank 4"),
    (json.dumps({"inputs": {"image": np.zeros((1, 1, 9, 8)).tolist()}}).encode(), 400, "axis 2"),
    (b'{"inputs": {"image": [[["a"]]]}}', 400, "numbers"),
    (b'{"inputs": {"image": [[1, 2], [3]]}}', 400, "rectangular"),
    (b'{"inputs": {"image": []}}', 400, "non-empty"),
]


@pytest.mark.parametrize(("body", "status", "reason"), MALFORMED)
def test_malformed_request_gets_400_and_server_keeps_serving(server, digits, body, status, reason):
    got, answer = call(f"{server['base']}/cnn/predict", body)
    assert got == status and reason in answer["error"], answer
    assert "\n" not in answer["error"]
    assert predict(f"{server['base']}/cnn", image=digits[:1])[0] == 200


def test_wrong_routes_methods_and_integer_inputs(server):
    base = server["base"]
    assert call(f"{base}/cnn/predict", method="GET")[0] == 405
    assert call(f"{base}/cnn/nothing", b"{}")[0] == 404
    fractional = json.dumps({"inputs": {"ids": [[0.5, 1, 2], [3, 4, 5]]}}).encode()
    status, answer = call(f"{base}/ids/predict", fractional)
    assert status == 400 and "integers" in answer["error"]
    huge = json.dumps({"inputs": {"ids": [[2**63, 1, 2], [3, 4, 5]]}}).encode()
    assert call(f"{base}/ids/predict", huge)[0] == 400
    status, answer = predict(f"{base}/ids", ids=np.zeros((3, 3), np.int64))
    assert status == 400 and "axis 0 must be 2" in answer["error"]


def test_export_layout_is_rays_own_config(cli, tmp_path, cnn_path):
    yaml = pytest.importorskip("yaml", reason=NEEDS_RAY)
    pytest.importorskip("ray.serve", reason=NEEDS_RAY)
    out = tmp_path / "app"
    code, _, err = cli(
        "serve-export", cnn_path, "--format", "ray-serve", "-o", out, "--name", "digits",
        "--instances", "2", "--max-batch-size", "8", "--batch-wait-ms", "5",
    )  # fmt: skip
    assert code == 0, err
    assert (out / "app.py").read_bytes() == RAY_SERVE_APP.read_bytes()
    assert (out / "models" / "digits" / "model.onnx").read_bytes() == cnn_path.read_bytes()
    config = yaml.safe_load((out / "serve_config.yaml").read_text())
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8000}
    (app,) = config["applications"]
    assert app["route_prefix"] == "/digits" and app["import_path"] == "app:build_app"
    assert app["args"] == {
        "model": "models/digits",
        "replicas": 2,
        "threads": 1,
        "max_batch_size": 8,
        "batch_wait_timeout_s": 0.005,
    }


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--threads", "0"], "must be at least 1"),
        (["--name", "a/b"], "letters, digits"),
        (["--name", "a", "--name", "b"], "one per model"),
    ],
)
def test_export_refuses_bad_options(cli, tmp_path, cnn_path, extra, reason):
    pytest.importorskip("ray.serve", reason=NEEDS_RAY)
    out = tmp_path / "app"
    code, _, err = cli("serve-export", cnn_path, "--format", "ray-serve", "-o", out, *extra)
    assert code == 2 and reason in err and err.count("\n") == 1
    assert not out.exists()


def test_serve_refuses_a_folder_that_is_not_an_app(cli, tmp_path):
    pytest.importorskip("ray.serve", reason=NEEDS_RAY)
    code, _, err = cli("serve", tmp_path, "--port", str(free_port()))
    assert code == 2 and "serve-export MODEL --format ray-serve" in err and err.count("\n") == 1


def test_serve_refuses_a_taken_port(cli, tmp_path, cnn_path):
    pytest.importorskip("ray.serve", reason=NEEDS_RAY)
    assert cli("serve-export", cnn_path, "--format", "ray-serve", "-o", tmp_path / "app")[0] == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = cli("serve", tmp_path / "app", "--port", str(taken.getsockname()[1]))
    assert code == 2 and "pick another --port" in err and err.count("\n") == 1


def test_serve_refuses_a_broken_model_before_starting_ray(cli, tmp_path, cnn_path):
    pytest.importorskip("ray.serve", reason=NEEDS_RAY)
    assert cli("serve-export", cnn_path, "--format", "ray-serve", "-o", tmp_path / "app")[0] == 0
    (tmp_path / "app" / "models" / "cnn" / "model.onnx").write_bytes(b"not a model")
    code, _, err = cli("serve", tmp_path / "app", "--port", str(free_port()))
    assert code == 1 and "model.onnx: not an ONNX model" in err and err.count("\n") == 1
    code, _, err = cli("serve", tmp_path / "app", "--port", "70000")
    assert code == 2 and "not a TCP port" in err


def test_without_ray_both_verbs_name_the_extra(cli, tmp_path, cnn_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # find_spec("ray") is then None
    code, _, err = cli("serve-export", cnn_path, "--format", "ray-serve", "-o", tmp_path / "app")
    assert code == 2 and "pip install 'onnxsmith[cluster]'" in err and err.count("\n") == 1
    assert not (tmp_path / "app").exists()
    code, _, err = cli("serve", tmp_path)
    assert code == 2 and "pip install 'onnxsmith[cluster]'" in err
