"""Traps users hit with ORT's quantizer and its peers, one test each, via `onnxsmith quantize`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from quant_models import elementwise_only, image_feeds, mlp, sequence_feeds, write_feeds

from onnxsmith.io import save_model
from onnxsmith.quantize import quantize
from onnxsmith.samples import tiny_cnn

FAST = ("--timing-seconds", "0.2", "--no-latency-aware")


def run_ok(cli, *args):
    code, stdout, err = cli("quantize", *args, *FAST)
    assert code == 0, err
    return stdout


def run_fails(cli, out: Path, *args) -> str:
    code, _, err = cli("quantize", *args, "-o", out, *FAST)
    assert code == 1, err
    assert not out.exists()
    errors = [line for line in err.splitlines() if line.startswith("onnxsmith:")]
    assert len(errors) == 1
    return errors[0]


def test_opset_11_model_gets_valid_per_channel_qdq(cli, tmp_path):
    """ORT's quantize_static writes DequantizeLinear(axis=…) into opset < 13 models: invalid."""
    model = save_model(tiny_cnn(opset=11), tmp_path / "old.onnx")
    calib = write_feeds(tmp_path / "calib", image_feeds(5))
    out = tmp_path / "int8.onnx"
    run_ok(cli, model, "-o", out, "--calib", calib, "--per-channel")
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    per_channel = [
        n for n in proto.graph.node
        if n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)
    ]  # fmt: skip
    assert per_channel


def test_weights_in_constant_nodes_are_quantized(tmp_path):
    """tiny_cnn keeps conv2's weight in a Constant node, as PaddlePaddle exports do."""
    model = save_model(tiny_cnn(opset=12), tmp_path / "paddle_like.onnx")
    calib = write_feeds(tmp_path / "calib", image_feeds(5))
    report = quantize(
        model, tmp_path / "o.onnx", calib=calib, latency_aware=False, timing_seconds=0.2
    )
    convs = [row for row in report.layers if row.op_type == "Conv"]
    assert len(convs) == 2 and all(row.mode == "static" for row in convs)


def test_percentile_on_variable_length_sequences(cli, tmp_path):
    model = save_model(mlp(), tmp_path / "mlp.onnx")
    calib = write_feeds(tmp_path / "calib", sequence_feeds(8))
    run_ok(cli, model, "-o", tmp_path / "o.onnx", "--calib", calib, "--method", "percentile")


def test_already_quantized_model_is_refused(cli, tmp_path):
    model = save_model(tiny_cnn(), tmp_path / "m.onnx")
    calib = write_feeds(tmp_path / "calib", image_feeds(5))
    first = tmp_path / "int8.onnx"
    run_ok(cli, model, "-o", first, "--calib", calib)
    error = run_fails(cli, tmp_path / "again.onnx", first, "--calib", calib)
    assert "already quantized" in error and "fp32 original" in error


def test_model_without_quantizable_ops_is_refused(cli, tmp_path):
    model = save_model(elementwise_only(), tmp_path / "e.onnx")
    calib = write_feeds(tmp_path / "calib", [{"x": np.ones((1, 4), np.float32)}] * 2)
    error = run_fails(cli, tmp_path / "o.onnx", model, "--calib", calib)
    assert "no quantizable ops" in error and "Add×1" in error


def test_nan_in_calibration_data_names_the_file(cli, tmp_path):
    model = save_model(tiny_cnn(), tmp_path / "m.onnx")
    feeds = image_feeds(5)
    feeds[2]["image"][0, 0, 0, 0] = np.nan
    calib = write_feeds(tmp_path / "calib", feeds)
    error = run_fails(cli, tmp_path / "o.onnx", model, "--calib", calib)
    assert "002.npz" in error and "NaN" in error


def test_empty_calibration_dir(cli, tmp_path):
    model = save_model(tiny_cnn(), tmp_path / "m.onnx")
    (tmp_path / "calib").mkdir()
    error = run_fails(cli, tmp_path / "o.onnx", model, "--calib", tmp_path / "calib")
    assert "no .npz files" in error


@pytest.mark.parametrize(
    ("feed", "needle"),
    [
        ({"img": np.zeros((1, 1, 8, 8), np.float32)}, "lacks 'image'"),
        ({"image": np.zeros((1, 8, 8), np.float32)}, "rank 4"),
        ({"image": np.zeros((1, 1, 8, 8), np.float64)}, "float64"),
        ({"image": np.zeros((1, 1, 9, 8), np.float32)}, "axis 2"),
    ],
)
def test_mismatched_calibration_files_name_the_file(cli, tmp_path, feed, needle):
    model = save_model(tiny_cnn(), tmp_path / "m.onnx")
    feeds = image_feeds(4)
    feeds[3] = feed
    calib = write_feeds(tmp_path / "calib", feeds)
    error = run_fails(cli, tmp_path / "o.onnx", model, "--calib", calib)
    assert "003.npz" in error and needle in error


def test_single_calibration_feed_warns_about_the_metric(cli, tmp_path):
    model = save_model(tiny_cnn(), tmp_path / "m.onnx")
    calib = write_feeds(tmp_path / "calib", image_feeds(1))
    stdout = run_ok(cli, model, "-o", tmp_path / "o.onnx", "--calib", calib)
    assert "only one calibration feed" in stdout


@pytest.mark.models
def test_real_paddle_classifier_opset_12(tmp_path):
    """PP-OCR's angle classifier: opset 12, weights in Constant nodes, HardSwish-style blocks."""
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    model = Path(rapidocr.__file__).parent / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.uniform(-1, 1, (2, 3, 48, 192)).astype(np.float32)} for _ in range(5)]
    calib = write_feeds(tmp_path / "calib", feeds)
    report = quantize(
        model, tmp_path / "cls.onnx", calib=calib, latency_aware=False, timing_seconds=0.2,
        max_loss=0.02,
    )  # fmt: skip
    onnx.checker.check_model(onnx.load(str(tmp_path / "cls.onnx")), full_check=True)
    assert report.result.plan.nodes("static")
    assert report.kernels.integer_kernels > 0
