"""Teacher outputs for distillation (runtime side, no torch): ensemble math, cache, errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from distill_data import CLASSES, linear_teacher, make_task
from onnx import numpy_helper
from onnxsmith.exporter.teacher_outputs import load_teachers, softmax, teacher_outputs
from onnxsmith.runtime.labels import load_labels

from onnxsmith.errors import DataError, UsageError


def _weights(path) -> np.ndarray:
    return numpy_helper.to_array(onnx.load(path).graph.initializer[0]).astype(np.float64)


def stacked(folder) -> np.ndarray:
    return np.concatenate([np.load(f)["x"] for f in sorted(folder.glob("*.npz"))])


def test_weighted_mean_of_softened_probabilities(tmp_path):
    (t0, t1), dirs, _ = make_task(tmp_path)
    ensemble = load_teachers([t0, t1], weights=[1, 3])
    out = teacher_outputs(ensemble, dirs["train"], tmp_path / "work", kind="probabilities",
                          temperature=2.0)  # fmt: skip
    x = stacked(dirs["train"])
    logits = [x @ _weights(t) for t in (t0, t1)]
    want = 0.25 * softmax(logits[0], 2.0) + 0.75 * softmax(logits[1], 2.0)
    np.testing.assert_allclose(out.targets, want, atol=1e-6)
    np.testing.assert_array_equal(out.predictions[:, 0], logits[0].argmax(1))
    np.testing.assert_array_equal(out.predictions[:, 1], logits[1].argmax(1))
    np.testing.assert_array_equal(out.inputs["x"], x)
    assert isinstance(out.targets, np.memmap) and out.file_sizes == (100,) * 4
    assert not out.reused


def test_cache_is_reused_only_for_the_same_options(tmp_path):
    (t0, t1), dirs, _ = make_task(tmp_path)
    ensemble = load_teachers([t0, t1])
    first = teacher_outputs(ensemble, dirs["train"], tmp_path / "w", kind="probabilities")
    again = teacher_outputs(ensemble, dirs["train"], tmp_path / "w", kind="probabilities")
    assert again.reused and np.array_equal(first.targets, again.targets)
    hotter = teacher_outputs(
        ensemble, dirs["train"], tmp_path / "w", kind="probabilities", temperature=3.0
    )
    assert not hotter.reused and not np.allclose(hotter.targets, first.targets)


def test_raw_outputs_are_averaged_for_embeddings(tmp_path):
    (t0, t1), dirs, _ = make_task(tmp_path)
    out = teacher_outputs(load_teachers([t0, t1]), dirs["eval"], tmp_path / "w", kind="raw")
    x = stacked(dirs["eval"])
    want = (x @ _weights(t0) + x @ _weights(t1)) / 2
    np.testing.assert_allclose(out.targets, want, rtol=1e-5, atol=1e-5)
    assert out.predictions.shape == (100, 0)


def test_teachers_that_predict_different_classes_are_refused(tmp_path):
    (t0,), _, truth = make_task(tmp_path, teachers=1)
    other = linear_teacher(np.ones((16, CLASSES + 1)), tmp_path / "wide.onnx")
    with pytest.raises(DataError, match="same classes"):
        load_teachers([t0, other])
    renamed = linear_teacher(truth, tmp_path / "renamed.onnx", output="scores")
    with pytest.raises(UsageError, match="no output 'logits'"):
        load_teachers([t0, renamed], output="logits")
    with pytest.raises(UsageError, match="--weights"):
        load_teachers([t0, renamed], weights=[1])


def test_data_that_does_not_fit_the_teachers(tmp_path):
    (t0,), _, _ = make_task(tmp_path, teachers=1)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "000.npz", image=np.zeros((4, 16), np.float32))
    with pytest.raises(DataError, match="lacks 'x'"):
        teacher_outputs(load_teachers([t0]), bad, tmp_path / "w", kind="raw")
    np.savez(bad / "000.npz", x=np.zeros((4, 16), np.float32))
    np.savez(bad / "001.npz", x=np.zeros((4, 15), np.float32))
    with pytest.raises(DataError, match="axis 1"):
        teacher_outputs(load_teachers([t0]), bad, tmp_path / "w", kind="raw")


def test_labels_must_match_the_data(tmp_path):
    files = [tmp_path / "000.npz", tmp_path / "001.npz"]
    labels = tmp_path / "labels"
    labels.mkdir()
    np.savez(labels / "000.npz", label=np.array([0, 1, 2]))
    with pytest.raises(DataError, match=r"001\.npz is missing"):
        load_labels(labels, files, [3, 3], CLASSES)
    np.savez(labels / "001.npz", label=np.array([0, 1]))
    with pytest.raises(DataError, match=r"has 2 labels, 001\.npz has 3 samples"):
        load_labels(labels, files, [3, 3], CLASSES)
    np.savez(labels / "001.npz", label=np.array([0, 1, 9]))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 3\]"):
        load_labels(labels, files, [3, 3], CLASSES)
    np.savez(labels / "001.npz", label=np.array([0, 1, 3]))
    assert load_labels(labels, files, [3, 3], CLASSES).tolist() == [0, 1, 2, 0, 1, 3]
