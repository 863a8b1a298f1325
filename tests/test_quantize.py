"""`onnxsmith quantize` end to end: the result, the report, the metric guard, the CLI contract.

Latency is never asserted; `--timing-seconds 0.2` keeps the timing steps short, and tests
that must not depend on this machine's speed pass `--no-latency-aware`.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnx_ir as ir
import pytest
from conftest import digest
from onnxsmith.runtime.cpu import int8_saturates, native_bf16, simd_block
from onnxsmith.runtime.session import create_session
from quant_models import image_feeds, mlp, sequence_feeds, write_feeds

from onnxsmith.errors import NotFasterError
from onnxsmith.io import load_model, save_model
from onnxsmith.provenance import steps_applied
from onnxsmith.quantize import METADATA_KEY, quantize
from onnxsmith.quantize.latency import Latency
from onnxsmith.quantize.search import GroupTiming, Search, _ladder, _next_rung
from onnxsmith.samples import tiny_cnn

FAST = ("--timing-seconds", "0.2")


@pytest.fixture
def cnn_case(tmp_path: Path):
    model = save_model(tiny_cnn(seed=0, opset=11), tmp_path / "cnn.onnx")
    calib = write_feeds(tmp_path / "calib", image_feeds(10))
    return model, calib


@pytest.fixture
def mlp_case(tmp_path: Path):
    model = save_model(mlp(outlier=100.0), tmp_path / "mlp.onnx")
    calib = write_feeds(tmp_path / "calib", sequence_feeds(10))
    return model, calib


def test_cnn_quantizes_statically_with_a_full_report(cli, tmp_path, cnn_case):
    model, calib = cnn_case
    out, report = tmp_path / "int8.onnx", tmp_path / "report"
    code, stdout, err = cli(
        "quantize", model, "-o", out, "--calib", calib, "--report", report,
        "--no-latency-aware", *FAST,
    )  # fmt: skip
    assert code == 0, err
    assert "wrote" in stdout and "what runs in int8" in stdout
    quantized = onnx.load(str(out))
    onnx.checker.check_model(quantized, full_check=True)
    assert {op.version for op in quantized.opset_import if op.domain in ("", "ai.onnx")} == {13}
    ops = {n.op_type for n in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    data = json.loads((report / "report.json").read_text())
    assert data["metric"]["name"] == "top1" and data["metric"]["met"] is True
    assert data["groups"]["Conv"].get("static", 0) >= 1
    assert data["kernels"]["integer_ops"], "ORT fused nothing"
    assert data["latency"]["rounds"] >= 3
    assert all(row["sqnr_db"] is not None for row in data["layers"] if row["mode"] != "fp32")
    assert "## Per layer" in (report / "report.md").read_text()
    session = create_session(out)
    session.run(None, image_feeds(1)[0])


def test_frontier_times_every_int8_configuration_the_search_scored(cli, tmp_path, cnn_case):
    """One point per scored int8 configuration, each with its loss from the search and a
    latency ratio (each distinct graph timed in its own run; the written one's is the final
    check, and it is marked); the SVG parses."""
    import xml.etree.ElementTree as ET

    model, calib = cnn_case
    out, report = tmp_path / "int8.onnx", tmp_path / "report"
    code, _, err = cli(
        "quantize", model, "-o", out, "--calib", calib, "--report", report, "--frontier",
        "--no-latency-aware", *FAST,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads((report / "report.json").read_text())
    scored = [t for t in data["trials"] if t["static"] + t["dynamic"] > 0]
    points = data["frontier"]
    assert [(p["label"], p["loss"]) for p in points] == [(t["label"], t["loss"]) for t in scored]
    assert all(p["ratio"][1] <= p["ratio"][0] <= p["ratio"][2] for p in points)
    assert sum(p["chosen"] for p in points) == 1
    written = next(p for p in points if p["chosen"])
    assert written["ratio"] == pytest.approx(data["latency"]["vs_input"])
    svg = ET.parse(report / "frontier.svg").getroot()
    assert len(svg.findall("{http://www.w3.org/2000/svg}circle")) == len(points)
    assert "## Frontier" in (report / "report.md").read_text()


def test_labels_judge_the_accuracy_lost_against_them(cli, tmp_path, cnn_case):
    """With --labels the classifier's output is judged by its accuracy against them: the
    report's fidelity is the written model's accuracy (checked by running it) and fp32's."""
    import numpy as np

    model, calib = cnn_case
    feeds = image_feeds(10)
    labels = tmp_path / "labels"
    labels.mkdir()
    rng = np.random.default_rng(1)
    truth = [rng.integers(0, 10, len(feed["image"])) for feed in feeds]
    for i, label in enumerate(truth):
        np.savez(labels / f"{i:03d}.npz", label=label)
    out, report = tmp_path / "int8.onnx", tmp_path / "report"
    code, stdout, err = cli(
        "quantize", model, "-o", out, "--calib", calib, "--eval", calib, "--labels", labels,
        "--report", report, "--no-latency-aware", *FAST,
    )  # fmt: skip
    assert code == 0, err
    assert "judged against --labels on 'logits'" in err + stdout
    data = json.loads((report / "report.json").read_text())
    assert data["options"]["labels"] == str(labels)
    found = data["metric"]["int8"]["logits"]

    def accuracy(path: Path) -> float:
        session = create_session(path)
        right = [session.run(None, f)[0].argmax(-1) == t for f, t in zip(feeds, truth, strict=True)]
        return float(np.mean(np.concatenate(right)))

    assert found["metric"] == "top1 vs labels"
    assert found["value"] == pytest.approx(accuracy(out))
    assert found["details"]["fp32_accuracy"] == pytest.approx(accuracy(model))
    assert found["loss"] == pytest.approx(max(0.0, accuracy(model) - accuracy(out)))


def test_a_refusal_still_writes_the_frontier(tmp_path, cnn_case, monkeypatch):
    """Nothing faster than fp32 (forced here: timings are not asserted): no model, but the
    frontier of every configuration tried goes into the report folder, and the error says so."""
    import xml.etree.ElementTree as ET

    import onnxsmith.quantize as api

    every_mode = lambda search: ({n: c.modes for n, c in search.candidates.items()}, ())  # noqa: E731
    monkeypatch.setattr(Search, "ladders", every_mode)  # the probe would refuse at once here
    monkeypatch.setattr(api, "_not_faster", lambda latency, where: "no measurable gain here")
    model, calib = cnn_case
    out, report = tmp_path / "int8.onnx", tmp_path / "report"
    with pytest.raises(NotFasterError, match=r"frontier\.md.*judge the accuracy lost with --eval"):
        quantize(model, out, calib=calib, report_dir=report, frontier=True, timing_seconds=0.2)
    assert not out.exists()
    table = (report / "frontier.md").read_text()
    assert "Nothing written: no measurable gain here." in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    svg = ET.parse(report / "frontier.svg").getroot()
    assert rows and len(svg.findall("{http://www.w3.org/2000/svg}circle")) == len(rows)


def test_provenance_records_method_fp32_nodes_and_metric(cnn_case, tmp_path):
    model, calib = cnn_case
    out = tmp_path / "int8.onnx"
    report = quantize(
        model, out, calib=calib, latency_aware=False, timing_seconds=0.2, exclude=["node_10"]
    )
    saved = load_model(out)
    record = json.loads(saved.metadata_props[METADATA_KEY])
    assert record["fp32_nodes"]["node_10"].startswith("excluded")
    assert record["metric"] == "top1" and record["met"] is True
    assert record["fidelity"]["logits"]["tolerance"] == 0.01  # at most 1 % of decisions change
    assert record["fidelity"]["logits"]["value"] == report.result.score.outputs["logits"].value
    assert "latency_ratio_vs_fp32" in record and record["method"] in (
        "minmax", "percentile", "entropy", "mse",
    )  # fmt: skip
    assert steps_applied(saved)[-1]["step"] == "quantize"


def test_metric_guard_keeps_the_sensitive_node_in_fp32(mlp_case, tmp_path):
    """fc2 reads an activation with one channel 100x the others: per-tensor int8 activations
    wipe out the other channels, so fc2 is the node that must fall back."""
    model, calib = mlp_case
    report = quantize(
        model, tmp_path / "int8.onnx", calib=calib, max_loss=0.002, latency_aware=False,
        smoothquant="off", ops=["MatMul"], timing_seconds=0.2,
    )  # fmt: skip
    assert report.result.met and report.result.score.outputs["y"].loss <= 0.002
    modes = report.result.plan.modes
    assert "fc2" not in modes and modes, modes  # fc2 is fp32, something else is int8
    assert "sensitive" in report.result.reasons["fc2"]
    assert any(t.label.startswith("fallback") for t in report.result.trials)


def test_smoothquant_rescues_the_outlier_node(mlp_case, tmp_path):
    model, calib = mlp_case
    report = quantize(
        model, tmp_path / "int8.onnx", calib=calib, max_loss=0.002, latency_aware=False,
        smoothquant="search", ops=["MatMul"], timing_seconds=0.2,
    )  # fmt: skip
    assert report.result.smoothing is not None
    labels = [t.label for t in report.result.trials]
    assert sum(label.startswith("SmoothQuant alpha") for label in labels) >= 2


def test_default_smoothquant_is_kept_when_it_cuts_the_loss_even_with_the_target_met(
    mlp_case, tmp_path
):
    model, calib = mlp_case
    report = quantize(
        model, tmp_path / "int8.onnx", calib=calib, max_loss=0.5, latency_aware=False,
        method="minmax", ops=["MatMul"], timing_seconds=0.2,
    )  # fmt: skip
    plain = report.result.trials[0]  # the one unsmoothed trial, with one method
    assert plain.loss <= 0.5  # met without smoothing ...
    assert report.result.smoothing is not None  # ... and smoothed all the same
    assert report.result.score.loss <= 0.8 * plain.loss


def test_impossible_max_loss_writes_the_best_model_and_warns(cli, cnn_case, tmp_path):
    model, calib = cnn_case
    out = tmp_path / "int8.onnx"
    code, stdout, err = cli(
        "quantize", model, "-o", out, "--calib", calib, "--metric", "cosine", "--max-loss", "0",
        "--no-latency-aware", *FAST,
    )  # fmt: skip
    assert code == 0, err
    assert out.exists()
    assert "not reachable" in stdout and "missing by" in stdout
    assert "NOT within tolerance" in stdout


def test_without_eval_a_held_out_part_of_calib_is_used(cnn_case, tmp_path):
    model, calib = cnn_case
    report = quantize(model, tmp_path / "o.onnx", calib=calib, latency_aware=False,
                      timing_seconds=0.2)  # fmt: skip
    assert report.data == {
        "calibration_feeds": 8, "eval_feeds": 2, "eval": "2 feeds held out of --calib",
    }  # fmt: skip


def test_separate_eval_dir_and_top1_metric(cnn_case, tmp_path):
    model, calib = cnn_case
    evaluation = write_feeds(tmp_path / "eval", image_feeds(3, seed=4))
    report = quantize(model, tmp_path / "o.onnx", calib=calib, eval_data=evaluation,
                      metric="top1", latency_aware=False, timing_seconds=0.2)  # fmt: skip
    assert report.data["eval_feeds"] == 3 and report.data["calibration_feeds"] == 10
    assert 0.0 <= report.result.score.values["logits"] <= 1.0


def test_latency_aware_run_never_ships_slower_than_fp32_silently(cnn_case, tmp_path):
    """Whatever this machine measures, a latency-aware run either writes a model whose ratio
    CI lies below 1 or refuses with a one-line error; no silent slow or unproven int8."""
    model, calib = cnn_case
    out = tmp_path / "o.onnx"
    try:
        report = quantize(model, out, calib=calib, timing_seconds=0.3)
    except Exception as e:
        assert "nothing written" in str(e) and not out.exists()
        return
    assert report.latency.vs_prepared[2] < 1.0 and report.latency.verdict == "faster"
    assert not report.latency.slower_buckets()
    assert all(t.kept for t in report.result.timings if report.groups()[t.group].get("static"))


def test_the_faster_of_with_and_without_intermediate_shapes_is_written(
    cnn_case, tmp_path, monkeypatch
):
    """ORT picks some fusions from value_info; quantize times both forms and keeps the faster
    (here the timing is stubbed so that the form without shapes wins)."""
    import onnxsmith.quantize as module

    def stub(timer, original, prepared, quantized, buckets, *, seconds, threads):
        assert len(quantized) == 2  # the model, then the same model without inner shapes
        return tuple(
            Latency(10.0, ms, (ms / 10, 0.4, 0.7), (ms / 10, 0.4, 0.7), 5) for ms in (6, 5)
        )

    def every_mode_faster(self):
        groups: dict[str, list] = {}
        for candidate in self.candidates.values():
            groups.setdefault(candidate.group, []).append(candidate)
        return tuple(
            GroupTiming(g, len(m), {}, tuple(x for x in ("static", "dynamic") if x in m[0].modes))
            for g, m in groups.items()
        )

    monkeypatch.setattr(module, "measure_latency", stub)
    monkeypatch.setattr(Search, "probe_latency", every_mode_faster)
    model, calib = cnn_case
    out = tmp_path / "o.onnx"
    report = quantize(model, out, calib=calib, timing_seconds=0.2)
    assert report.options["intermediate_shapes"].startswith("dropped (0.60x with, 0.50x without")
    initializers = set(load_model(out).graph.initializers)
    assert all(v.name in initializers for v in onnx.load(str(out)).graph.value_info)


def test_mode_ladders():
    assert _ladder(("dynamic", "static")) == ("dynamic",)  # static is less accurate: no step
    assert _ladder(("static", "dynamic")) == ("static", "dynamic")
    assert _ladder(()) == ()
    assert _next_rung(("static", "dynamic"), "static") == "dynamic"
    assert _next_rung(("static", "dynamic"), "dynamic") == "fp32"
    assert _next_rung(("dynamic",), "dynamic") == "fp32"


def test_int8_saturation_is_detected_from_cpu_flags():
    assert int8_saturates(frozenset({"avx2", "fma"}), "x86_64")
    assert not int8_saturates(frozenset({"avx2", "avx512_vnni"}), "x86_64")
    assert not int8_saturates(frozenset({"avx2", "avx_vnni"}), "AMD64")
    assert not int8_saturates(frozenset(), "aarch64")


def test_native_bf16_is_read_from_cpu_flags():
    assert native_bf16(frozenset({"avx512f", "avx512_bf16"}))  # Zen 4, Cooper Lake
    assert native_bf16(frozenset({"avx512f", "amx_bf16", "amx_tile"}))  # Sapphire Rapids
    assert native_bf16(frozenset({"asimd", "bf16"}))  # Armv8.6
    assert not native_bf16(frozenset({"avx2", "avx512f", "avx512_vnni"}))  # emulated there


def test_simd_block_follows_the_widest_vector_unit():
    assert simd_block(frozenset({"avx2", "avx512f"}))[0] == 16
    assert simd_block(frozenset({"avx", "avx2", "fma"}))[0] == 8
    assert simd_block(frozenset({"asimd", "asimddp"}))[0] == 4
    width, why = simd_block(frozenset())
    assert width == 8 and "assumed" in why


# -- CLI contract: one-line errors, exit codes, nothing written ------------------------------


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["--metric", "psnr"], 2, "--metric"),
        (["--max-loss", "-1"], 2, "--max-loss"),
        (["--smoothquant", "1.5"], 2, "--smoothquant"),
        (["--method", "kl"], 2, "--method"),
        (["--ops", "Softmax"], 2, "'Softmax'"),
        (["--exclude", "nope"], 2, "'nope'"),
        (["--timing-seconds", "0"], 2, "--timing-seconds"),
        (["--format", "qlinear"], 2, "--format"),
        (["--bogus"], 2, "--bogus"),
        (["--frontier"], 2, "--frontier needs --report"),
        (["--labels", "labels"], 2, "--labels needs --eval DIR"),
        (["--eval", "{calib}", "--labels", "{calib}"], 1, "has no 'label'"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_usage_errors(cli, cnn_case, tmp_path, extra, code, needle):
    model, calib = cnn_case
    out = tmp_path / "o.onnx"
    extra = [str(calib) if x == "{calib}" else x for x in extra]
    got, _, err = cli("quantize", model, "-o", out, "--calib", calib, *FAST, *extra)
    assert got == code
    errors = [line for line in err.splitlines() if line.startswith("onnxsmith:")]
    assert len(errors) == 1 and needle in errors[0], err  # progress lines may precede it
    assert not out.exists()


def test_input_model_is_never_modified(cli, cnn_case, tmp_path):
    model, calib = cnn_case
    before = digest(model)
    cli("quantize", model, "-o", tmp_path / "o.onnx", "--calib", calib, "--no-latency-aware",
        *FAST)  # fmt: skip
    assert digest(model) == before
    code, _, err = cli("quantize", model, "-o", model, "--calib", calib, "--no-latency-aware",
                       *FAST)  # fmt: skip
    assert code == 1 and "refusing to overwrite" in err and digest(model) == before


def test_report_folder_that_is_a_file_is_refused(cli, cnn_case, tmp_path):
    model, calib = cnn_case
    blocker = tmp_path / "report"
    blocker.write_text("x")
    code, _, err = cli("quantize", model, "-o", tmp_path / "o.onnx", "--calib", calib,
                       "--report", blocker, *FAST)  # fmt: skip
    assert code == 2 and "is a file" in err


def test_api_returns_a_report_with_ir_models(cnn_case, tmp_path):
    model, calib = cnn_case
    report = quantize(model, tmp_path / "o.onnx", calib=calib, latency_aware=False,
                      timing_seconds=0.2)  # fmt: skip
    assert isinstance(report.result.model, ir.Model)
    assert report.size_ratio < 1.0
    assert report.as_dict()["size"]["ratio"] == pytest.approx(report.size_ratio)
