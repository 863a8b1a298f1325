"""`onnxsmith distill`: a student learns its teachers, deterministically; mismatches are errors.

The task (tests/distill_data.py): 4 classes, linear teachers; chance is 25 %.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

import torch_models as zoo  # noqa: E402
from distill_data import CLASSES, FEATURES, make_task  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxsmith.exporter.distill import _split, distill  # noqa: E402
from onnxsmith.exporter.teacher_outputs import load_teachers  # noqa: E402
from onnxsmith.exporter.training import (  # noqa: E402
    DistillConfig,
    hold_out,
    train_student,
)

from onnxsmith.io import load_model  # noqa: E402

pytestmark = pytest.mark.torch
STUDENT = f"{Path(zoo.__file__)}:build_mlp"
FAST = ["--epochs", "6", "--lr", "0.01", "--batch-size", "32", "--latency-runs", "20"]


def test_student_learns_the_ensemble_well_beyond_chance(cli, tmp_path):
    teachers, dirs, _ = make_task(tmp_path)
    out = tmp_path / "student.onnx"
    code, stdout, err = cli(
        "distill", *teachers, "--student", STUDENT, "--data", dirs["train"],
        "--labels", dirs["train_labels"], "--eval", dirs["eval"],
        "--eval-labels", dirs["eval_labels"], "-o", out, "--json", tmp_path / "r.json", *FAST,
    )  # fmt: skip
    assert code == 0, err
    assert "epoch 6/6" in stdout and "teachers vs student" in stdout
    report = json.loads((tmp_path / "r.json").read_text())
    rows = {r["name"].split(" ")[0]: r for r in report["models"]}
    assert rows["student"]["accuracy"] > 0.6 and rows["student"]["agreement"] > 0.6
    assert rows["ensemble"]["accuracy"] >= max(rows["t0.onnx"]["accuracy"], 0.7)
    assert report["metric"] == "accuracy" and report["evaluated_on"] == "eval"
    assert report["stop_reason"] == "reached --epochs 6"
    assert report["export"]["parity"]["passed"]
    assert report["latency_ratio"] is not None
    model = load_model(out)
    assert [v.name for v in model.graph.inputs] == ["x"]
    assert [v.name for v in model.graph.outputs] == ["logits"]
    assert str(model.graph.inputs[0].shape[0]) == "batch"  # mirrored from the teachers
    assert "distill" in model.metadata_props["onnxsmith.steps"]
    assert (tmp_path / "student.distill" / "best.pt").exists()


def student_weights(path: Path) -> dict[str, np.ndarray]:
    model = load_model(path)
    return {name: v.const_value.numpy() for name, v in model.graph.initializers.items()}


def test_same_seed_same_student_other_seed_another(tmp_path):
    teachers, dirs, _ = make_task(tmp_path, train=200)
    config = DistillConfig(epochs=2, lr=0.01, batch_size=32, seed=7)
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = tmp_path / f"{name}.onnx"
        distill(
            teachers, STUDENT, dirs["train"], out, latency_runs=0,
            config=DistillConfig(**{**config.__dict__, "seed": seed}),
            work_dir=tmp_path / "work",  # shared: runs 2 and 3 reuse the teacher outputs
        )  # fmt: skip
        runs.append(student_weights(out))
    assert runs[0].keys() == runs[1].keys()
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])


def _splits(tmp_path, config, eval_labels=True):
    teachers, dirs, _ = make_task(tmp_path, train=200)
    ensemble = load_teachers(teachers)
    train = _split(ensemble, dirs["train"], None, tmp_path / "w", "probabilities", config, "t")
    labels = dirs["eval_labels"] if eval_labels else None
    evaluation = _split(
        ensemble, dirs["eval"], labels, tmp_path / "e", "probabilities", config, "e"
    )
    return train, evaluation


def test_early_stopping_keeps_the_starting_weights_when_nothing_improves(tmp_path):
    config = DistillConfig(epochs=10, lr=1e-9, patience=2)  # too small a step to change argmax
    train, evaluation = _splits(tmp_path, config)
    torch.manual_seed(0)
    student = zoo.Mlp()
    start = {k: v.clone() for k, v in student.state_dict().items()}
    training = train_student(
        student, train, evaluation, ["x"], config, checkpoint=tmp_path / "best.pt"
    )
    assert training.best_epoch == 0 and len(training.history) == 2
    assert training.stopped_early and "for 2 epochs" in training.stop_reason
    assert [e.best for e in training.history] == [False, False]
    assert all(torch.equal(start[k], v) for k, v in student.state_dict().items())
    assert not student.training


def test_training_runs_until_the_held_out_loss_stops_improving(tmp_path):
    config = DistillConfig(patience=3, batch_size=32)  # no --epochs, no --lr: the defaults
    train, _ = _splits(tmp_path, config, eval_labels=False)
    train, held = hold_out(train, 0.1, seed=0)
    torch.manual_seed(0)
    training = train_student(
        zoo.Mlp(), train, held, ["x"], config, checkpoint=tmp_path / "b.pt", watch_loss=True
    )
    history = training.history
    assert training.metric == "held-out loss" and training.lr_source.startswith("picked")
    assert 1e-4 <= training.lr <= 3e-2
    # It stopped because the held-out loss stalled: the best epoch is `patience` from the end,
    # every later epoch is no better, and the kept epoch has the lowest held-out loss.
    assert training.stop_reason == "no improvement of the held-out loss for 3 epochs"
    assert training.best_epoch == len(history) - 3 and not any(e.best for e in history[-3:])
    assert history[training.best_epoch - 1].metric == min(e.metric for e in history)
    assert len(history) > 6  # well past the few epochs a fixed small default would give


def test_bfloat16_steps_train_as_well_as_float32_and_keep_float32_weights(tmp_path):
    """bfloat16 autocast (the default where the CPU multiplies bfloat16 natively) rounds the
    forward pass, so its steps differ, but the student learns as well and stays float32."""
    scores, weights = {}, {}
    for bf16 in (False, True):
        config = DistillConfig(epochs=8, lr=0.01, batch_size=32, bf16=bf16)
        (tmp_path / str(bf16)).mkdir()
        train, evaluation = _splits(tmp_path / str(bf16), config)
        torch.manual_seed(0)
        student = zoo.Mlp()
        training = train_student(
            student, train, evaluation, ["x"], config, checkpoint=tmp_path / f"{bf16}.pt"
        )
        scores[bf16] = max(e.metric for e in training.history)
        weights[bf16] = [p.detach().clone() for p in student.parameters()]
    assert scores[False] > 0.6 and scores[True] >= scores[False] - 0.05
    assert all(w.dtype == torch.float32 for w in weights[True])
    assert not all(torch.equal(a, b) for a, b in zip(weights[False], weights[True], strict=True))


def test_time_budget_ends_training_and_says_so(tmp_path):
    config = DistillConfig(lr=0.01, time_budget=1e-6)
    train, evaluation = _splits(tmp_path, config)
    torch.manual_seed(0)
    training = train_student(
        zoo.Mlp(), train, evaluation, ["x"], config, checkpoint=tmp_path / "b.pt"
    )
    assert len(training.history) == 1 and training.stop_reason == "time budget of 1e-06 s spent"


def test_hold_out_is_a_seeded_disjoint_tenth(tmp_path):
    config = DistillConfig()
    train, _ = _splits(tmp_path, config)
    kept, held = hold_out(train, 0.1, seed=3)
    _, held_again = hold_out(train, 0.1, seed=3)
    _, other = hold_out(train, 0.1, seed=4)
    assert len(held) == 20 and len(kept) == 180
    assert not set(kept.rows) & set(held.rows) and len(set(kept.rows) | set(held.rows)) == 200
    assert np.array_equal(held.rows, held_again.rows) and not np.array_equal(held.rows, other.rows)
    unchanged, none = hold_out(train, 0.0, seed=3)  # --holdout 0: the training loss is watched
    assert unchanged is train and none is None


def test_cosine_loss_for_embedding_teachers(tmp_path):
    teachers, dirs, _ = make_task(tmp_path, teachers=1, train=300)
    report = distill(
        teachers, STUDENT, dirs["train"], tmp_path / "emb.onnx", eval_data=dirs["eval"],
        config=DistillConfig(loss="cosine", epochs=8, lr=0.01, batch_size=32), latency_runs=0,
    )  # fmt: skip
    assert report.training.metric == "cosine"
    assert report.history[-1].loss < report.history[0].loss
    student = report.rows[-1]
    assert student.accuracy is None and student.agreement is not None
    assert student.agreement > 0.9  # mean cosine similarity to the teacher's outputs


@pytest.mark.parametrize(
    ("extra", "code", "expected"),
    [
        (["--labels", "{wrong_labels}"], 1, "labels"),
        (["--loss", "mse", "--labels", "{labels}"], 2, "--labels needs --loss kl"),
        (["--eval-labels", "{labels}"], 2, "--eval-labels needs --eval"),
        (["--loss", "detection"], 1, "--loss detection needs a YOLO head"),
        (["--weights", "1,x"], 2, "--weights"),
        (["--alpha", "2"], 2, "--alpha"),
        (["--student", f"{Path(zoo.__file__)}:build_mlp_five_classes"], 1, "returns shape"),
        (["--student", f"{Path(zoo.__file__)}:build_histogram"], 2, "no trainable parameters"),
    ],
)
def test_mismatches_are_one_line_errors(cli, tmp_path, extra, code, expected):
    teachers, dirs, _ = make_task(tmp_path, teachers=1, train=100, evaluation=100)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.savez(wrong / "000.npz", label=np.zeros(99, np.int64))
    values = {"wrong_labels": str(wrong), "labels": str(dirs["train_labels"])}
    extra = [e.format(**values) for e in extra]
    out = tmp_path / "s.onnx"
    got, _, err = cli(
        "distill", *teachers, "--student", STUDENT, "--data", dirs["train"], "-o", out,
        "--epochs", "1", *extra,
    )  # fmt: skip
    assert got == code, err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err
    assert not out.exists()


def test_free_axes_named_question_mark_stay_free_in_the_student(tmp_path):
    # PaddlePaddle's exports name every free axis "?"; to the exporter those are distinct axes
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["logits"])],
        "paddle-style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["?", "?", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["?", "?", CLASSES])],
        [numpy_helper.from_array(np.eye(FEATURES, CLASSES, dtype=np.float32), "W")],
    )
    teacher = tmp_path / "teacher.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), teacher)
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        np.savez(data / f"{index}.npz", x=rng.normal(0, 1, (50, 3, FEATURES)).astype(np.float32))
    out = tmp_path / "student.onnx"
    distill(
        [teacher], STUDENT, data, out,
        config=DistillConfig(loss="mse", epochs=1, lr=0.01, batch_size=32), latency_runs=0,
    )  # fmt: skip
    batch, steps, _ = (str(d) for d in load_model(out).graph.inputs[0].shape)
    assert batch != steps and "?" not in (batch, steps)
