"""`onnxsmith prune` and `prune_model`: compensation, hardware-aware counts, reports, bad input.

No timing asserts: latency is measured and reported, never checked (the machine is shared).
Compensation is checked as an ordering of output errors on held-out feeds (the least-squares
refit minimizes exactly that error on the calibration feeds; a broken refit makes it worse).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx_ir as ir
import prune_zoo
import pytest
from conftest import digest
from onnxsmith.runtime.metric import EvalSet
from onnxsmith.runtime.session import create_session

from onnxsmith.io import load_model, save_model
from onnxsmith.linear import constant
from onnxsmith.prune import PruneOptions, prune_model
from onnxsmith.synthetic import document_images

FAST = {"seconds": 0.1, "measure": False}


def image_feeds(count: int, seed: int, side: int = 16, batch: int = 4) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"x": rng.normal(0, 1, (batch, 3, side, side)).astype(np.float32)} for _ in range(count)
    ]


def held_out_error(original: ir.Model, pruned: ir.Model, feeds: list[dict]) -> float:
    before, after = create_session(original), create_session(pruned)
    errors = [
        np.linalg.norm(after.run(None, f)[0] - before.run(None, f)[0])
        / np.linalg.norm(before.run(None, f)[0])
        for f in feeds
    ]
    return float(np.mean(errors))


@pytest.fixture
def resnet_path(tmp_path: Path) -> Path:
    return save_model(prune_zoo.resnet_like(), tmp_path / "resnet.onnx")


@pytest.mark.parametrize("name", ["resnet", "mobilenet"])
def test_structured_compensation_reduces_output_error(name):
    model = {"resnet": prune_zoo.resnet_like, "mobilenet": prune_zoo.mobilenet_like}[name]()
    calib, held_out = image_feeds(8, seed=1), image_feeds(4, seed=2)
    options = PruneOptions(0.5, structured=True, **FAST)
    plain, _ = prune_model(
        model, PruneOptions(0.5, structured=True, compensate=False, **FAST), calib
    )
    refit, report = prune_model(model, options, calib)
    assert report.compensated >= 2
    assert held_out_error(model, refit, held_out) < 0.7 * held_out_error(model, plain, held_out)


def test_mlp_compensation_and_activation_criterion():
    model = prune_zoo.mlp()
    rng = np.random.default_rng(0)
    calib = [{"x": rng.normal(size=(16, 20)).astype(np.float32)} for _ in range(8)]
    held_out = [{"x": rng.normal(size=(16, 20)).astype(np.float32)} for _ in range(3)]
    plain, _ = prune_model(model, PruneOptions(0.5, structured=True, **FAST))
    refit, report = prune_model(
        model, PruneOptions(0.5, structured=True, criterion="activation", **FAST), calib
    )
    assert report.compensated == 2
    assert held_out_error(model, refit, held_out) < held_out_error(model, plain, held_out)


@pytest.mark.parametrize(
    ("structured", "criterion", "has_calib", "expected"),
    [
        (True, "auto", True, "activation"),  # what the next layers read, measured best
        (True, "auto", False, "l1"),  # nothing measured: the weights
        (False, "auto", True, "l1"),
        (True, "taylor", True, "taylor"),  # an explicit choice stays
    ],
)
def test_the_auto_criterion(structured, criterion, has_calib, expected):
    options = PruneOptions(0.3, structured=structured, criterion=criterion)
    assert options.resolved(has_calib).criterion == expected


@pytest.mark.parametrize(
    ("structured", "allocation", "has_calib", "expected"),
    [
        (True, "auto", True, "sensitivity"),  # measured: the error decides where channels go
        (True, "auto", False, "uniform"),  # nothing to measure on
        (False, "auto", True, "uniform"),
        (True, "uniform", True, "uniform"),
    ],
)
def test_the_auto_allocation(structured, allocation, has_calib, expected):
    options = PruneOptions(0.3, structured=structured, allocation=allocation)
    assert options.resolved(has_calib).allocation == expected


@pytest.mark.models
def test_sensitivity_allocation_keeps_the_text_detectors_mask(tmp_path):
    """PP-OCRv4's detector at structured 30 %: one ratio for all groups breaks its text mask
    (the early high-resolution layers need their channels); spending the channels where the
    measured error grows least keeps it, at no less than 30 % of its compute removed."""
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    model = load_model(Path(rapidocr.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx")
    calib = [{"x": document_images(1, side=96, seed=i)} for i in range(6)]
    held_out = [{"x": document_images(1, side=96, seed=100 + i)} for i in range(4)]
    judge = EvalSet(model, held_out, "mask_iou", step="prune")
    iou = {}
    for allocation in ("uniform", "sensitivity"):
        options = PruneOptions(0.3, structured=True, allocation=allocation, **FAST)
        pruned, report = prune_model(model, options, calib)
        assert report.achieved_sparsity >= 0.29
        (fidelity,) = judge.score(pruned).outputs.values()
        iou[allocation] = fidelity.value
    assert iou["sensitivity"] > iou["uniform"] + 0.2, iou
    assert any("multiply-accumulates went down by" in n for n in report.notes)


def test_unstructured_refit_reduces_output_error():
    model = prune_zoo.resnet_like()
    calib, held_out = image_feeds(8, seed=1), image_feeds(4, seed=2)
    plain, _ = prune_model(model, PruneOptions(0.6, compensate=False, **FAST), calib)
    refit, report = prune_model(model, PruneOptions(0.6, **FAST), calib)
    assert report.compensated > 0 and report.achieved_sparsity == pytest.approx(0.6, abs=0.01)
    assert held_out_error(model, refit, held_out) < 0.8 * held_out_error(model, plain, held_out)


def test_structured_meets_sparsity_with_block_multiples_and_input_untouched():
    model = prune_zoo.mobilenet_like()
    before = ir.to_proto(model).SerializeToString()
    pruned, report = prune_model(
        model, PruneOptions(0.4, structured=True, channel_multiple=8, **FAST)
    )
    assert ir.to_proto(model).SerializeToString() == before
    assert report.achieved_sparsity == pytest.approx(0.4, abs=0.1)
    for decision in report.groups:
        if decision.status == "pruned":
            assert decision.kept % 8 == 0 and decision.kept < decision.channels
    left = [d for d in report.groups if d.status == "left alone"]
    assert left and all("multiple of 8" in d.reason for d in left)  # the 8-channel squeeze
    for node in pruned.graph:
        if node.op_type == "Conv" and node.attributes.get_int("group", 1) == 1:
            assert constant(node.inputs[1]).shape[0] % 8 == 0  # type: ignore[union-attr]


def test_measured_groups_each_get_a_verdict():
    model = prune_zoo.resnet_like()
    # multiple 8 fixed: with AVX-512's 16 the 16-channel groups could not be pruned at all
    options = PruneOptions(0.5, structured=True, seconds=0.25, channel_multiple=8)
    _, report = prune_model(model, options)
    prunable = {d.name for d in report.groups if d.status != "skipped"}
    assert set(report.group_speed) == prunable
    for decision in report.groups:
        speed = report.group_speed.get(decision.name)
        if decision.status == "left alone":
            assert speed is not None and speed.ratio >= 0.97
        elif decision.status == "pruned":
            assert speed is not None and speed.ratio < 0.97


def test_cli_structured_with_calib_and_report(cli, tmp_path):
    source = save_model(prune_zoo.mlp(), tmp_path / "mlp.onnx")
    calib = tmp_path / "calib.npz"  # one file, samples stacked on axis 0
    np.savez(calib, x=np.random.default_rng(0).normal(size=(6, 16, 20)).astype(np.float32))
    out, folder = tmp_path / "out.onnx", tmp_path / "report"
    code, stdout, err = cli(
        "prune", source, "-o", out, "--sparsity", "0.5", "--structured", "--calib",
        calib, "--report", folder, "--no-measure", "--timing-seconds", "0.2",
    )  # fmt: skip
    assert code == 0, err
    assert "channel groups" in stdout and "layers refit" in stdout
    data = json.loads((folder / "report.json").read_text())
    assert data["mode"] == "structured" and data["compensated"] >= 2
    assert [p["sparsity"] for p in data["sweep"]][:2] == [0.1, 0.2]
    assert data["sizes"]["pruned"]["raw"] < data["sizes"]["original"]["raw"]
    markdown = (folder / "report.md").read_text()
    assert "| group |" in markdown and "sparsity.png" in markdown
    assert (folder / "sparsity.png").read_bytes()[:4] == b"\x89PNG"
    steps = json.loads(load_model(out).metadata_props["onnxsmith.steps"])
    assert steps[-1]["step"] == "prune"


def test_cli_unstructured_reports_sizes_and_constant_weights(cli, tmp_path, cnn_path):
    out, report = tmp_path / "out.onnx", tmp_path / "r.json"
    code, stdout, err = cli(
        "prune", cnn_path, "-o", out, "--sparsity", "0.7", "--json", report,
        "--timing-seconds", "0.2", "--scope", "layer",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(report.read_text())
    # conv1, conv2 (its weight in a Constant node) and fc, each pruned to 70 %
    assert list(data["per_layer"].values()) == pytest.approx([0.7] * 3, abs=0.01)
    third = "zstd" if "zstd" in data["sizes"]["original"] else "lzma"
    assert data["sizes"]["pruned"][third] < 0.75 * data["sizes"]["original"][third]
    assert "latency" in stdout and "near 1.0" in stdout


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["--sparsity", "0"], "outside (0, 1)", 2),
        (["--sparsity", "1.2"], "outside (0, 1)", 2),
        (["--sparsity", "-0.1"], "outside (0, 1)", 2),
        (["--sparsity", "0.3", "--ops", "Conv,Softmax"], "'Softmax'", 2),
        (["--sparsity", "0.3", "--criterion", "fisher"], "unknown --criterion 'fisher'", 2),
        (["--sparsity", "0.3", "--criterion", "taylor"], "pass --calib", 2),
        (["--sparsity", "0.3", "--allocation", "greedy"], "unknown --allocation 'greedy'", 2),
        (["--sparsity", "0.3", "--structured", "--allocation", "sensitivity"], "--calib DIR", 2),
        (["--sparsity", "0.3", "--exclude", "no_such_node"], "'no_such_node'", 2),
        (["--sparsity", "0.3", "--structured", "--ops", "ConvTranspose"], "nothing prunable", 1),
        (["--sparsity", "0.3", "--ops", "ConvTranspose"], "no ConvTranspose layer", 1),
    ],
)
def test_bad_input_one_line_error_nothing_written(cli, tmp_path, resnet_path, args, message, code):
    out = tmp_path / "out.onnx"
    before = digest(resnet_path)
    got, _, err = cli("prune", resnet_path, "-o", out, "--no-measure", *args)
    assert got == code
    assert err.count("\n") == 1 and message in err
    assert not out.exists() and digest(resnet_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet.onnx"]


@pytest.mark.models
def test_ppocr_detector_structured(tmp_path):
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    det = Path(rapidocr.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
    pages = [{"x": document_images(1, side=64)}]
    model = load_model(det)
    options = PruneOptions(0.2, structured=True, compensate=False, **FAST)
    _, report = prune_model(model, options, pages)
    pruned_groups = [d for d in report.groups if d.status == "pruned"]
    assert len(pruned_groups) >= 10
    skipped = {d.name: d.reason for d in report.groups if d.status == "skipped"}
    assert skipped and all("ConvTranspose is not in --ops" in r for r in skipped.values())
    assert report.weights[1] < 0.85 * report.weights[0]
    # uncompensated pruning moves the text map (the benchmark measures by how much)
    assert report.agreement.rel_error > 1e-3


@pytest.mark.torch
def test_torch_exported_cnn_prunes_structured(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    ).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(
        net, (torch.randn(1, 3, 16, 16),), str(path), input_names=["x"], dynamo=False,
        dynamic_axes={"x": {0: "batch"}},
    )  # fmt: skip
    options = PruneOptions(0.5, structured=True, channel_multiple=8, **FAST)  # any CPU's SIMD
    pruned, report = prune_model(load_model(path), options)
    assert [d.kept for d in report.groups if d.status == "pruned"] == [8, 16]
    feed = image_feeds(1, seed=0)[0]
    assert create_session(pruned).run(None, feed)[0].shape == (4, 10)


def test_report_path_that_is_a_file_fails_before_writing(cli, tmp_path, resnet_path):
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    out = tmp_path / "out.onnx"
    code, _, err = cli(
        "prune", resnet_path, "-o", out, "--sparsity", "0.3", "--report", taken, "--no-measure"
    )
    assert code == 2 and "is a file" in err and not out.exists()


def test_exclude_follows_a_conv_that_batchnorm_folding_replaced():
    model = prune_zoo.resnet_like()
    stem = next(n for n in model.graph if n.op_type == "Conv").name
    options = PruneOptions(0.5, structured=True, exclude=(stem,), **FAST)
    _, report = prune_model(model, options)
    excluded = [d for d in report.groups if d.status == "skipped" and "excluded" in d.reason]
    assert len(excluded) == 1 and len(excluded[0].producers) == 2  # the stem's residual group
    assert any(stem in note for note in report.notes)
