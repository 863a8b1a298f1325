"""`onnxsmith merge` end to end: stacking fits, the CLI report, evaluation, real models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import digest
from merge_models_zoo import cnn, outputs, softmax

from onnxsmith.io import load_model, save_model
from onnxsmith.merge import merge_models
from onnxsmith.merge.fit import fit_logistic, nnls
from onnxsmith.merge.stacking import fit_stack


@pytest.fixture
def trio(tmp_path: Path) -> list[Path]:
    return [save_model(cnn(s, o), tmp_path / f"c{s}.onnx") for s, o in ((0, 11), (1, 13), (2, 17))]


@pytest.fixture
def data(tmp_path: Path, trio) -> tuple[Path, Path]:
    """48 feeds of batch 4; labels = argmax of the sum of the members' standardized logits, a
    linear function of their outputs that no member alone gets right (random CNNs)."""
    feeds, labels = tmp_path / "feeds", tmp_path / "labels"
    feeds.mkdir()
    labels.mkdir()
    images = np.random.default_rng(0).normal(size=(48, 4, 1, 8, 8)).astype(np.float32)
    flat = {"image": images.reshape(-1, 1, 8, 8)}
    logits = [outputs(load_model(p), flat)[0] for p in trio]
    total = sum((z - z.mean(axis=0)) / z.std() for z in logits)
    truth = total.argmax(axis=1).reshape(48, 4)
    for i in range(48):
        np.savez(feeds / f"{i:03d}.npz", image=images[i])
        np.savez(labels / f"{i:03d}.npz", label=truth[i])
    return feeds, labels


def test_nnls_meets_the_optimality_conditions():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.normal(size=(rng.integers(4, 40), rng.integers(1, 6)))
        b = rng.normal(size=a.shape[0])
        x = nnls(a, b)
        gradient = a.T @ (b - a @ x)  # KKT: x >= 0, gradient <= 0, gradient = 0 where x > 0
        assert (x >= 0).all() and (gradient <= 1e-9).all()
        assert np.abs(gradient[x > 0]).max(initial=0) <= 1e-9
    exact = np.array([0.0, 2.0, 0.5])
    a = rng.normal(size=(30, 3))
    np.testing.assert_allclose(nnls(a, a @ exact), exact, atol=1e-10)


def test_logistic_regression_reaches_its_optimum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    y = np.argmax(x @ rng.normal(size=(6, 3)) + rng.gumbel(size=(300, 3)), axis=1)
    targets = np.eye(3)[y]
    coef, intercept = fit_logistic(x, targets, l2=1e-3)
    logits = x @ coef + intercept
    p = softmax(logits)
    # the penalized cross-entropy is convex: a zero gradient is the optimum
    assert np.abs(x.T @ (p - targets) / 300 + 1e-3 * coef).max() < 1e-5
    assert np.abs((p - targets).mean(axis=0)).max() < 1e-5
    assert np.mean(logits.argmax(axis=1) == y) > 0.7


def test_fit_against_a_teacher_recovers_it(trio, data):
    members = [load_model(p) for p in trio]
    fit = fit_stack(members, data[0], teacher=trio[1], softmax_scores=True)
    np.testing.assert_allclose(fit.weights, [0, 1, 0], atol=1e-6)
    assert fit.accuracy is None


def test_logistic_stack_beats_every_member_and_matches_its_graph(trio, data):
    members = [load_model(p) for p in trio]
    fit = fit_stack(members, data[0], labels=data[1], method="logistic")
    assert fit.member_accuracy is not None and fit.accuracy is not None
    assert fit.accuracy > max(fit.member_accuracy) + 0.05
    merged = merge_models(members, "stack", stack=fit)
    feed = {"image": np.random.default_rng(5).normal(size=(3, 1, 8, 8)).astype(np.float32)}
    scores = np.concatenate([outputs(m, feed)[0] for m in members], axis=1)
    expected = scores @ fit.coef + fit.intercept
    assert np.abs(outputs(merged, feed)[0] - expected).max() <= 1e-5


def test_nnls_stack_matches_separate_sessions(trio, data):
    members = [load_model(p) for p in trio]
    fit = fit_stack(members, data[0], labels=data[1], softmax_scores=True)
    assert all(w >= 0 for w in fit.weights) and sum(fit.weights) > 0
    merged = merge_models(members, "stack", stack=fit, softmax=True)
    feed = {"image": np.random.default_rng(6).normal(size=(2, 1, 8, 8)).astype(np.float32)}
    expected = sum(
        w * softmax(outputs(m, feed)[0]) for w, m in zip(fit.weights, members, strict=True)
    )
    assert np.abs(outputs(merged, feed)[0] - expected).max() <= 1e-5


def test_cli_mean_writes_checked_model_and_report(cli, trio, tmp_path):
    before = [digest(p) for p in trio]
    out = tmp_path / "mean.onnx"
    code, stdout, err = cli(
        "merge", *trio, "-o", out, "--mode", "mean", "--softmax", "--json", tmp_path / "r.json"
    )
    assert code == 0, err
    assert "parity: ok vs 3 separate sessions" in stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(d["max_abs"] <= 1e-5 for d in report["parity"])
    assert report["merge"]["mode"] == "mean" and report["merge"]["softmax"] is True
    assert [m["file"] for m in report["merge"]["members"]] == [p.name for p in trio]
    assert [digest(p) for p in trio] == before
    steps = json.loads(load_model(out).metadata_props["onnxsmith.steps"])
    assert steps[-1]["step"] == "merge"


def test_cli_weighted_fit_and_logistic_stack(cli, trio, data, tmp_path):
    feeds, labels = data
    code, _, err = cli(
        "merge", *trio, "-o", tmp_path / "w.onnx", "--mode", "weighted", "--softmax",
        "--fit", feeds, "--labels", labels, "--json", tmp_path / "w.json",
    )  # fmt: skip
    assert code == 0, err
    weights = json.loads((tmp_path / "w.json").read_text())["merge"]["weights"]
    assert len(weights) == 3 and abs(sum(weights) - 1) < 1e-9
    code, _, err = cli(
        "merge", *trio, "-o", tmp_path / "s.onnx", "--mode", "stack", "--stacker", "logistic",
        "--fit", feeds, "--labels", labels, "--eval", feeds, "--eval-labels", labels,
        "--seconds", "0.2", "--json", tmp_path / "s.json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["fit"]["method"] == "logistic"
    evaluation = report["eval"]
    assert evaluation["accuracy"] == pytest.approx(report["fit"]["accuracy"])
    assert evaluation["accuracy"] > max(evaluation["member_accuracy"])
    fidelity = evaluation["fidelity"]  # the merged model against its members run apart
    assert fidelity and all(f["met"] and f["value"] >= 1 - 1e-6 for f in fidelity.values())
    steps = json.loads(load_model(tmp_path / "s.onnx").metadata_props["onnxsmith.steps"])
    assert steps[-1]["options"]["fidelity"] == fidelity


def test_cli_cascade_sweep_brackets_the_members(cli, trio, data, tmp_path):
    feeds, labels = data
    code, stdout, err = cli(
        "merge", trio[0], trio[2], "-o", tmp_path / "c.onnx", "--mode", "cascade",
        "--threshold", "0.6", "--eval", feeds, "--eval-labels", labels,
        "--thresholds", "0,0.9,1.01", "--seconds", "0.2", "--json", tmp_path / "c.json",
    )  # fmt: skip
    assert code == 0, err
    assert "threshold sweep" in stdout
    evaluation = json.loads((tmp_path / "c.json").read_text())["eval"]
    points = {p["threshold"]: p for p in evaluation["cascade"]}
    assert sorted(points) == [0.0, 0.6, 0.9, 1.01]
    assert points[0.0]["escalated"] == 0 and points[1.01]["escalated"] == 1
    assert points[0.0]["accuracy"] == evaluation["member_accuracy"][0]
    assert points[1.01]["accuracy"] == evaluation["member_accuracy"][1]
    assert 0 <= points[0.6]["escalated"] <= points[0.9]["escalated"] <= 1
    assert len(evaluation["member_ms"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "mean", "--weights", "1,2,3"], "--weights applies to --mode weighted only"),
        (["--mode", "stack"], "--mode stack learns its weights"),
        (["--mode", "mean", "--labels", "x"], "--labels and --teacher go with --fit"),
        (["--mode", "mean", "--fit", "x"], "--fit applies to --mode weighted or stack"),
        (["--mode", "mean", "--map", "nonsense"], "is not OLD=NEW"),
        (["--mode", "mean", "--weights", "a,b"], "not a comma-separated list"),
        (["--mode", "mean", "--thresholds", "0.5"], "--thresholds sweeps a cascade"),
    ],
)
def test_cli_usage_errors_are_one_line_exit_2(cli, trio, tmp_path, args, message):
    code, _, err = cli("merge", *trio, "-o", tmp_path / "x.onnx", *args)
    assert code == 2, err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "x.onnx").exists()


def test_cli_mismatch_is_one_line_exit_1_with_map_hint(cli, tmp_path):
    a = save_model(cnn(0), tmp_path / "a.onnx")
    b = save_model(cnn(1, side=16), tmp_path / "b.onnx")
    code, _, err = cli("merge", a, b, "-o", tmp_path / "x.onnx", "--mode", "mean")
    assert code == 1 and err.count("\n") == 1
    assert "input 'image' of member 1 (b.onnx)" in err and "--map 1:image=image_1" in err


def test_cli_missing_label_file_is_a_data_error(cli, trio, data, tmp_path):
    feeds, labels = data
    (labels / "000.npz").unlink()
    code, _, err = cli(
        "merge", *trio, "-o", tmp_path / "x.onnx", "--mode", "stack", "--fit", feeds,
        "--labels", labels,
    )  # fmt: skip
    assert code == 1 and err.count("\n") == 1 and "000.npz is missing" in err


@pytest.mark.models
def test_ppocr_cls_three_times_costs_one_copy(cli, tmp_path):
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    cls = Path(rapidocr.__file__).parent / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    out = tmp_path / "cls3.onnx"
    code, _, err = cli(
        "merge", cls, cls, cls, "-o", out, "--mode", "mean", "--json",
        tmp_path / "r.json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["parity"] and all(d["worst_excess"] <= 0 for d in report["parity"])
    assert out.stat().st_size < 1.2 * cls.stat().st_size


@pytest.mark.models
def test_silero_vad_if_subgraphs_merge_with_parity():
    spec = importlib.util.find_spec("silero_vad")  # finding it does not import torch
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("silero_vad is not installed")
    path = Path(spec.submodule_search_locations[0]) / "data" / "silero_vad.onnx"
    member = load_model(path)
    merged = merge_models([member, member], "mean")
    subgraphs = [g for g in merged.graphs() if g is not merged.graph]
    assert subgraphs and all(g.name.startswith(("m0/", "m1/")) for g in subgraphs)
    rng = np.random.default_rng(0)
    feed = {
        "input": rng.normal(0, 0.1, (1, 512)).astype(np.float32),
        "state": np.zeros((2, 1, 128), np.float32),
        "sr": np.array(16000, np.int64),
    }
    # two copies of one model: their mean is the model's own output
    for got, want in zip(outputs(merged, feed), outputs(member, feed), strict=True):
        assert np.abs(got - want).max() <= 1e-5


def test_members_with_external_data_give_a_self_contained_merge(cli, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    members = [
        save_model(cnn(s), tmp_path / "a" / f"m{s}.onnx", external_data=True) for s in (0, 1)
    ]
    assert (tmp_path / "a" / "m0.onnx.data").exists()
    out = tmp_path / "b" / "merged.onnx"
    code, stdout, err = cli("merge", *members, "-o", out, "--mode", "mean")
    assert code == 0, err
    assert "parity: ok" in stdout
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["merged.onnx"]
    feed = {"image": np.ones((2, 1, 8, 8), np.float32)}
    expected = (outputs(cnn(0), feed)[0] + outputs(cnn(1), feed)[0]) / 2
    assert np.abs(outputs(load_model(out), feed)[0] - expected).max() <= 1e-5
