"""Accuracy metrics against hand-computed values, callables, and accuracy through the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from benchmodels import matmul_model, write_feeds
from onnxsmith.runtime.accuracy import AccuracySpec, evaluate, resolve_metric
from onnxsmith.runtime.data import DataDir
from onnxsmith.runtime.labels import read_labels
from onnxsmith.runtime.session import create_session

from onnxsmith.errors import DataError, UsageError
from onnxsmith.metrics import BUILTIN, cosine, max_abs, mse, top1


def test_cosine_per_row_by_hand():
    outputs = [np.array([[1.0, 0.0], [0.0, 1.0]])]
    targets = [np.array([[2.0, 0.0], [1.0, 1.0]])]
    assert cosine(outputs, targets) == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    # zero rows: identical when both are zero, orthogonal when only one is
    assert cosine([np.zeros((1, 3))], [np.zeros((1, 3))]) == 1.0
    assert cosine([np.zeros((1, 3))], [np.ones((1, 3))]) == 0.0
    assert cosine([np.array([1.0, 2.0])], [np.array([-1.0, -2.0])]) == pytest.approx(-1.0)


def test_mse_and_max_abs_by_hand():
    outputs = [np.array([1.0, 2.0]), np.array([[0.0, 0.0, 3.0]])]
    targets = [np.array([1.0, 4.0]), np.array([[1.0, 0.0, 0.0]])]
    assert mse(outputs, targets) == pytest.approx((0 + 4 + 1 + 0 + 9) / 5)
    assert max_abs(outputs, targets) == 3.0


def test_top1_against_reference_scores_and_labels():
    logits = [np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([[0.3, 0.7]])]
    reference = [np.array([[0.2, 0.8], [0.1, 0.9]]), np.array([[0.6, 0.4]])]
    assert top1(logits, reference) == pytest.approx(1 / 3)
    labels = [np.array([1, 0]), np.array([0])]
    assert top1(logits, labels) == pytest.approx(2 / 3)
    assert top1([np.array([[0.1, 0.9]])], [np.array(1)]) == 1.0  # scalar label, one row


def test_metric_mismatches_are_data_errors():
    with pytest.raises(DataError, match=r"feed 0 has output shape \(2,\) but target shape \(3,\)"):
        BUILTIN["mse"]([np.zeros(2)], [np.zeros(3)])
    with pytest.raises(DataError, match="2 rows of scores but 3 labels"):
        BUILTIN["top1"]([np.zeros((2, 4))], [np.array([0, 1, 2])])
    with pytest.raises(DataError, match="1 outputs but 2 targets"):
        BUILTIN["cosine"]([np.zeros(2)], [np.zeros(2), np.zeros(2)])


def test_resolve_names_and_plugins(tmp_path):
    assert resolve_metric("max-abs") is BUILTIN["max_abs"] and resolve_metric("auto") == "auto"
    assert not BUILTIN["mse"].higher_is_better and BUILTIN["top1"].higher_is_better
    script = tmp_path / "score.py"
    script.write_text(
        "def same_argmax(reference, outputs):\n"
        "    same = [r['y'].argmax() == o['y'].argmax() for r, o in zip(reference, outputs)]\n"
        "    return sum(same) / len(same)\n"
    )
    metric = resolve_metric(f"{script}:same_argmax")
    assert metric.name == "score.py:same_argmax"
    with pytest.raises(UsageError, match="has no function 'nope' — it defines 'same_argmax'"):
        resolve_metric(f"{script}:nope")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("f1", "unknown metric 'f1' — choose from 'auto', 'cosine', 'mse', 'max_abs', 'top1'"),
        ("missing.py:fn", "missing.py does not exist"),
    ],
)
def test_unknown_metrics_are_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        resolve_metric(spec)


def test_cli_accuracy_against_reference_and_labels(cli, tmp_path):
    """Labels agree with the reference's argmax on half the eval files: top1 is exactly 0.5."""
    reference = matmul_model(tmp_path / "ref.onnx", width=8)
    other = matmul_model(tmp_path / "other.onnx", width=8, seed=1)
    eval_dir = write_feeds(tmp_path / "eval", count=4, width=8)
    session = create_session(reference)
    labels = tmp_path / "labels"
    labels.mkdir()
    for i, file in enumerate(sorted(eval_dir.glob("*.npz"))):
        predicted = session.run(None, dict(np.load(file)))[0].argmax(axis=1)
        np.savez(labels / file.name, label=predicted if i % 2 == 0 else (predicted + 1) % 8)
    out = tmp_path / "r.json"
    args = ["--eval", eval_dir, "--labels", labels, "--reference", reference, "--json", out]
    code, stdout, err = cli("bench", reference, other, *args, "--runs", 5, "--no-memory")
    assert code == 0, err
    first, second = (m["metric"] for m in json.loads(out.read_text())["models"])
    assert first["labels"] == {"top1": 0.5} and first["samples"] == 4 and first["output"] == "y"
    # the task metric chosen for y [1, 8] is top-1 agreement with the reference
    assert first["reference"] == {"top1": 1.0, "cosine": 1.0, "max_abs": 0.0}
    assert second["reference"]["cosine"] < 0.99 and second["reference"]["max_abs"] > 0
    assert first["higher_is_better"] == {"cosine": True, "max_abs": False, "top1": True}
    assert "top1" in stdout and "random feeds" not in stdout  # timed on --eval


def test_labels_from_one_npz_with_a_sample_axis(tmp_path):
    model = matmul_model(tmp_path / "m.onnx", width=4)
    x = np.random.default_rng(0).standard_normal((6, 1, 4)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", x=x)
    session = create_session(model)
    predicted = np.array([session.run(None, {"x": row})[0].argmax() for row in x])
    np.savez(tmp_path / "labels.npz", label=np.where(np.arange(6) < 3, predicted, -1))
    data = DataDir(tmp_path / "eval.npz", step="bench")
    labels = read_labels(data, tmp_path / "labels.npz", step="bench")
    (score,) = evaluate([model], AccuracySpec(data=data, labels=labels))
    assert score.labels == {"top1": 0.5} and score.reference == {} and score.samples == 6
    np.savez(tmp_path / "short.npz", label=predicted[:4])
    with pytest.raises(DataError, match=r"holds \(4,\) labels for 6 samples"):
        read_labels(data, tmp_path / "short.npz", step="bench")
