"""The fidelity guard end to end: quantize and prune on a tiny CNN with real digits print the
metric they chose, judge by it, and record it with the measured value in the model's metadata.

No timing is asserted (`--no-latency-aware`, short timing budgets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmodels import matmul_model
from benchmodels import write_feeds as write_bench_feeds

from onnxsmith.digits import load_digits_split, write_feeds
from onnxsmith.io import load_model, save_model
from onnxsmith.provenance import steps_applied
from onnxsmith.quantize import METADATA_KEY
from onnxsmith.samples import tiny_cnn

CHOSEN = "fidelity metric for 'logits': top1 — [4, 10]: class scores → top-1 agreement with fp32"


@pytest.fixture
def digits_case(tmp_path: Path) -> tuple[Path, Path, Path]:
    split = load_digits_split(side=8, calib=40, evaluate=24)
    model = save_model(tiny_cnn(seed=0, opset=13), tmp_path / "cnn.onnx")
    calib = write_feeds(tmp_path / "calib", split.calib_x, batch=4)
    evaluation = write_feeds(tmp_path / "eval", split.eval_x, batch=4)
    return model, calib, evaluation


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal's width: compare with whitespace collapsed."""
    return " ".join(text.split())


def test_quantize_prints_judges_and_records_the_chosen_metric(cli, tmp_path, digits_case):
    model, calib, evaluation = digits_case
    out, report = tmp_path / "int8.onnx", tmp_path / "report"
    code, stdout, err = cli(
        "quantize", model, "-o", out, "--calib", calib, "--eval", evaluation, "--report", report,
        "--no-latency-aware", "--timing-seconds", "0.2",
    )  # fmt: skip
    assert code == 0, err
    assert CHOSEN in flat(stdout) and "fidelity of 'logits' vs fp32: top1 " in flat(stdout)
    assert CHOSEN in (report / "report.md").read_text()
    data = json.loads((report / "report.json").read_text())
    measured = data["metric"]["int8"]["logits"]
    assert data["metric"]["choice"]["outputs"]["logits"]["metric"] == "top1"
    record = json.loads(load_model(out).metadata_props[METADATA_KEY])
    assert record["fidelity"]["logits"] == measured
    assert measured["tolerance"] == 0.01 and measured["met"] is (measured["loss"] <= 0.01)
    assert measured["details"]["decisions"] == 24.0  # 6 feeds of 4 digits, one decision each


def test_prune_reports_and_records_the_chosen_metric(cli, tmp_path, digits_case):
    model, calib, _ = digits_case
    out = tmp_path / "pruned.onnx"
    code, stdout, err = cli(
        "prune", model, "-o", out, "--sparsity", "0.3", "--calib", calib, "--timing-seconds", "0.1"
    )
    assert code == 0, err
    assert "fidelity metric for 'logits': top1" in flat(stdout)
    assert "fidelity of 'logits' vs the original: top1" in flat(stdout)
    options = steps_applied(load_model(out))[-1]["options"]
    assert options["fidelity"]["logits"]["metric"] == "top1"
    assert options["fidelity"]["logits"]["tolerance"] == 0.01
    assert 0.0 <= options["fidelity"]["logits"]["value"] <= 1.0


def test_a_plugin_metric_judges_quantize(cli, tmp_path, digits_case):
    model, calib, evaluation = digits_case
    script = tmp_path / "agree.py"
    script.write_text(
        "def same_digit(reference, outputs):\n"
        "    pairs = [(r['logits'].argmax(1), o['logits'].argmax(1)) for r, o in "
        "zip(reference, outputs)]\n"
        "    return float(sum((a == b).sum() for a, b in pairs) / sum(a.size for a, _ in pairs))\n"
    )
    out = tmp_path / "int8.onnx"
    code, stdout, err = cli(
        "quantize", model, "-o", out, "--calib", calib, "--eval", evaluation,
        "--metric", f"{script}:same_digit", "--no-latency-aware", "--timing-seconds", "0.2",
    )  # fmt: skip
    assert code == 0, err
    assert "fidelity metric for all outputs: agree.py:same_digit" in flat(stdout)
    record = json.loads(load_model(out).metadata_props[METADATA_KEY])
    assert record["metric"] == "agree.py:same_digit"


@pytest.mark.parametrize("verb", ["quantize", "prune"])
def test_a_missing_plugin_is_a_one_line_usage_error(cli, tmp_path, digits_case, verb):
    model, calib, _ = digits_case
    extra = ["--sparsity", "0.3"] if verb == "prune" else []
    code, _, err = cli(
        verb, model, "-o", tmp_path / "o.onnx", "--calib", calib, *extra,
        "--metric", tmp_path / "nope.py:fn",
    )  # fmt: skip
    assert code == 2 and not (tmp_path / "o.onnx").exists()
    errors = [line for line in err.splitlines() if line.startswith("onnxsmith:")]
    assert len(errors) == 1 and "nope.py does not exist — check the path" in errors[0], err


def test_bench_scores_the_plugin_and_the_task_metric_against_the_reference(cli, tmp_path):
    reference = matmul_model(tmp_path / "ref.onnx", width=8)
    eval_dir = write_bench_feeds(tmp_path / "eval", count=4, width=8)
    script = tmp_path / "names.py"
    script.write_text(
        "def by_name(reference, outputs):\n"
        "    return float(all(set(r) == set(o) == {'y'} for r, o in zip(reference, outputs)))\n"
    )
    out = tmp_path / "r.json"
    code, _, err = cli(
        "bench", reference, "--eval", eval_dir, "--reference", reference,
        "--metric", f"{script}:by_name,auto", "--runs", 3, "--no-memory", "--json", out,
    )  # fmt: skip
    assert code == 0, err
    (model,) = json.loads(out.read_text())["models"]
    assert model["metric"]["reference"] == {"names.py:by_name": 1.0, "top1": 1.0}
