"""ONNX graphs as trainable torch modules, and `prune --structured --recover` end to end.

Models are built with `onnx.helper` from seeded weights; inputs are scikit-learn digits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits

torch = pytest.importorskip("torch")

from onnxsmith.exporter import onnx_ops  # noqa: E402
from onnxsmith.exporter.feature_hints import feature_hints, hint_loss  # noqa: E402
from onnxsmith.exporter.onnx_module import (  # noqa: E402
    OnnxModule,
    check_conversion,
    write_back,
)
from onnxsmith.exporter.recover import RecoverSettings, recover_pruned  # noqa: E402
from onnxsmith.exporter.training import (  # noqa: E402
    TRAINED_RATES,
    parameter_groups,
    set_rate,
)
from onnxsmith.passes.cleanup import cleanup_passes  # noqa: E402
from onnxsmith.runtime.input_stats import with_outputs  # noqa: E402
from onnxsmith.runtime.session import create_session, run  # noqa: E402

from onnxsmith.errors import ExportError, UsageError  # noqa: E402
from onnxsmith.io import load_model  # noqa: E402
from onnxsmith.pipeline import apply  # noqa: E402
from onnxsmith.provenance import steps_applied  # noqa: E402
from onnxsmith.prune import PruneOptions, prune_file  # noqa: E402
from onnxsmith.synthetic import document_images  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: the 2-core machine runs other tests at once, and two spinning
    OpenMP threads then make each training step ~30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def digits(count: int, offset: int = 0) -> np.ndarray:
    """Real 8x8 digits scaled to [-1, 1], shaped (N, 1, 8, 8)."""
    images = load_digits().images[offset : offset + count] / 8.0 - 1.0
    return images[:, None].astype(np.float32)


def tiny_cnn(path, *, opset: int = 14, extra: list | None = None):
    """Conv-HardSwish-Conv(asymmetric pads)-Relu, a nearest 2x upsample, a concat with a
    pooled branch, HardSigmoid gating, global pool, Gemm, Softmax: the ops of the pruned
    vision models, with seeded weights."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.normal(0, 0.4, (16, 1, 3, 3)),
        "b1": rng.normal(0, 0.1, 16),
        "w2": rng.normal(0, 0.15, (16, 16, 3, 3)),
        "b2": rng.normal(0, 0.1, 16),
        "gate": rng.normal(0, 0.5, (1, 32, 1, 1)),
        "wf": rng.normal(0, 0.3, (10, 32)),
        "bf": rng.normal(0, 0.1, 10),
        "scales": np.array([1, 1, 2, 2]),  # of the Resize: a float constant, not a weight
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c1"], ["h1"]),
        helper.make_node("Conv", ["h1", "w2", "b2"], ["c2"], pads=[0, 0, 2, 2], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Resize", ["r2", "", "scales"], ["up"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("MaxPool", ["h1"], ["pool"], kernel_shape=[2, 2], strides=[1, 1],
                         pads=[0, 0, 1, 1]),
        helper.make_node("Concat", ["up", "pool"], ["cat"], axis=1),
        helper.make_node("Mul", ["cat", "gate"], ["gated"]),
        helper.make_node("HardSigmoid", ["gated"], ["hs"], alpha=0.2, beta=0.5),
        helper.make_node("Mul", ["cat", "hs"], ["att"]),
        helper.make_node("GlobalAveragePool", ["att"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        *(extra or []),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def test_converted_module_matches_onnx_runtime_and_trains_its_layer_weights(tmp_path):
    model = load_model(tiny_cnn(tmp_path / "m.onnx"))
    module = OnnxModule(model, "m.onnx")
    feeds = [{"x": digits(4)}, {"x": digits(1, 100)}]
    # 1e-3 of the output's scale (see onnx_module.ATOL/RTOL); float32 summation order only.
    assert check_conversion(model, module, feeds) < 0.05
    assert sorted(module.names) == ["b1", "b2", "bf", "gate", "w1", "w2", "wf"]
    assert "scales" in module.constants  # a Resize scale is not a weight


def test_anchor_arithmetic_of_yolo_heads_converts_exactly(tmp_path):
    """YOLOv8 heads build their anchor grid at run time from the feature map's size:
    Shape → Range → Expand, and ConstantOfShape for the stride tensor (NudeNet's 320n)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "two"], ["h"], axis=0),
        helper.make_node("Range", ["zero", "h", "one"], ["rows"]),
        helper.make_node("Cast", ["rows"], ["rows_f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["rows_f", "column"], ["grid"]),
        helper.make_node("Expand", ["grid", "shape"], ["anchors"]),
        helper.make_node("ConstantOfShape", ["shape"], ["stride"],
                         value=numpy_helper.from_array(np.array([8.0], np.float32))),
        helper.make_node("Mul", ["anchors", "stride"], ["scaled"]),
        helper.make_node("Add", ["x", "scaled"], ["y"]),
    ]  # fmt: skip
    inits = {"two": np.array(2), "zero": np.array(0), "one": np.array(1),
             "column": np.array([1, 1, -1, 1])}  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "anchors",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "h", "w"])],
        [numpy_helper.from_array(v.astype(np.int64), k) for k, v in inits.items()],
    )
    path = tmp_path / "anchors.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    model = load_model(path)
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 3)).astype(np.float32)
    assert check_conversion(model, OnnxModule(model, "anchors"), [{"x": x}]) == 0.0


def test_written_back_weights_reproduce_the_trained_module(tmp_path):
    model = load_model(tiny_cnn(tmp_path / "m.onnx"))
    module = OnnxModule(model, "m.onnx")
    with torch.no_grad():
        for weight in module.weights:
            weight.mul_(1.5)
    trained = write_back(model, module)
    x = digits(3)
    expected = module(torch.from_numpy(x))[0].detach().numpy()
    got = run(create_session(trained), {"x": x}, "trained")[0]
    before = run(create_session(model), {"x": x}, "original")[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)  # float32 softmax outputs
    assert np.abs(got - before).max() > 1e-2  # the change did reach the graph
    assert model.graph.initializers["w1"].const_value.numpy()[0, 0, 0, 0] != pytest.approx(
        trained.graph.initializers["w1"].const_value.numpy()[0, 0, 0, 0]
    )  # and the input model was left alone


def test_a_converter_that_disagrees_is_named(tmp_path, monkeypatch):
    model = load_model(tiny_cnn(tmp_path / "m.onnx"))
    wrong = dict(onnx_ops._STATIC, HardSigmoid=lambda i, a: [torch.sigmoid(i[0])])
    monkeypatch.setattr(onnx_ops, "_STATIC", wrong)
    module = OnnxModule(model, "m.onnx")
    with pytest.raises(ExportError, match="first disagreeing ops: 'HardSigmoid → hs';") as error:
        check_conversion(model, module, [{"x": digits(2)}])
    assert "\n" not in str(error.value)


def test_unsupported_ops_are_refused_by_name(tmp_path):
    extra = [helper.make_node("Einsum", ["logits", "logits"], ["e"], equation="bi,bi->b")]
    model = load_model(tiny_cnn(tmp_path / "m.onnx", extra=extra))
    with pytest.raises(ExportError, match="ops 'Einsum' cannot be trained in torch yet"):
        OnnxModule(model, "m.onnx")


# Without the least-squares refit, so that pruning visibly hurts the tiny model.
# every group by half, no refit: a pruned model far from the original, for recovery to mend
UNREFIT = PruneOptions(0.5, structured=True, channel_multiple=4, compensate=False,
                       measure=False, seconds=0.2, allocation="uniform")  # fmt: skip


def write_data(folder, images, per_file=16):
    folder.mkdir()
    for i, start in enumerate(range(0, len(images), per_file)):
        np.savez(folder / f"{i:03d}.npz", x=images[start : start + per_file])
    return folder


@pytest.mark.slow  # ~3 s alone on 2 cores; much more when the machine is shared
def test_recover_brings_the_pruned_model_back_towards_the_original(tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    calib = write_data(tmp_path / "calib", digits(256))
    settings = RecoverSettings(calib, time_budget=120, epochs=10)  # capped: a fast test
    plain, out = tmp_path / "plain.onnx", tmp_path / "p.onnx"
    prune_file(model, plain, UNREFIT, calib=calib)
    report = prune_file(
        model, out, UNREFIT, calib=calib, recover=lambda a, b: recover_pruned(a, b, settings)
    )
    assert report.recovery is not None
    assert report.recovery.training["stop_reason"] == "reached --epochs 10"
    assert report.recovery.training["lr"] in TRAINED_RATES  # a trained student: probed rates
    assert report.agreement.cosine > report.recovery.before.cosine
    # Fidelity on digits it did not train on, in the task's terms: top-1 agreement with the
    # original, of the pruned model before and after recovery.
    held_out = digits(400, 1000)
    reference = run(create_session(model), {"x": held_out}, "original")[0].argmax(1)
    before = run(create_session(plain), {"x": held_out}, "pruned")[0].argmax(1)
    after = run(create_session(out), {"x": held_out}, "recovered")[0].argmax(1)
    assert (after == reference).mean() > (before == reference).mean() + 0.05
    # Same channels as without recovery: the trained weights went into the pruned graph.
    shapes = {k: v.shape for k, v in load_model(plain).graph.initializers.items()}
    assert {k: v.shape for k, v in load_model(out).graph.initializers.items()} == shapes
    steps = steps_applied(load_model(out))
    assert [s["step"] for s in steps] == ["prune"]
    assert steps[0]["options"]["recovery"]["epochs"] == 10
    assert report.recovery.training["hints"] is None  # feature hints are for YOLO heads only


@pytest.mark.slow  # the report's sweep prunes 7 more times
def test_prune_recover_cli_reports_before_and_after(cli, tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    calib = write_data(tmp_path / "calib", digits(64))
    code, stdout, err = cli(
        "prune", model, "-o", tmp_path / "p.onnx", "--structured", "--sparsity", "0.5",
        "--channel-multiple", "4", "--no-measure", "--timing-seconds", "0.2", "--calib", calib,
        "--recover", "--time-budget", "2", "--json", tmp_path / "r.json",
        "--report", tmp_path / "rep",
    )  # fmt: skip
    assert code == 0, err
    training = json.loads((tmp_path / "r.json").read_text())["recovery"]["training"]
    assert training["time_budget"] == 2 and training["data"] == str(calib)
    text = " ".join(stdout.split())  # rich wraps long lines
    assert f"recover: {training['epochs']} epochs" in text and "before it: latency" in text
    assert "recover epoch 1 " in text  # progress per epoch
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert "- --recover: " in markdown and "- before --recover: top1 " in markdown


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--recover-data", "{calib}"], "--recover-data needs --recover"),
        (["--recover", "--time-budget", "5"], "--recover needs --structured"),
        (["--recover", "--structured"], "pass --recover-data DIR or --calib DIR"),
        (["--structured", "--recover", "--calib", "{calib}", "--time-budget", "0"], "positive"),
    ],
)
def test_recover_usage_errors(cli, tmp_path, extra, expected):
    model = tiny_cnn(tmp_path / "m.onnx")
    calib = write_data(tmp_path / "calib", digits(16))
    extra = [e.format(calib=calib) for e in extra]
    code, _, err = cli("prune", model, "-o", tmp_path / "p.onnx", "--sparsity", "0.5", *extra)
    assert code == 2 and expected in err and err.count("\n") == 1
    assert not (tmp_path / "p.onnx").exists()


def test_recover_without_torch_says_what_to_install(cli, tmp_path, monkeypatch):
    model = tiny_cnn(tmp_path / "m.onnx")
    calib = write_data(tmp_path / "calib", digits(16))
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # `import torch` fails
    code, _, err = cli("prune", model, "-o", tmp_path / "p.onnx", "--sparsity", "0.5",
                       "--structured", "--recover", "--calib", calib)  # fmt: skip
    assert code == 1 and "pip install 'onnxsmith[torch]'" in err and "prune --recover" in err
    assert not (tmp_path / "p.onnx").exists()


def test_recovery_loss_follows_the_outputs(tmp_path):
    """Probabilities (a Softmax head, a Sigmoid map) are recovered with BCE, whose gradient does
    not vanish on a confidently wrong output; logits with MSE."""
    from onnxsmith.exporter.recover import recovery_loss

    data = write_data(tmp_path / "data", digits(32))
    probs = tiny_cnn(tmp_path / "probs.onnx")
    assert recovery_loss(load_model(probs), data) == "bce"
    gated = onnx.load(probs)
    gated.graph.node[-1].CopyFrom(helper.make_node("Sigmoid", ["logits"], ["probs"]))
    onnx.save(gated, tmp_path / "sigmoid.onnx")
    assert recovery_loss(load_model(tmp_path / "sigmoid.onnx"), data) == "bce"
    logits = onnx.load(probs)
    logits.graph.output[0].name = "logits"
    onnx.save(logits, tmp_path / "logits.onnx")
    assert recovery_loss(load_model(tmp_path / "logits.onnx"), data) == "mse"


@pytest.mark.slow  # a short training at batch 1
def test_a_graph_that_fixes_its_batch_size_is_recovered_at_that_size(tmp_path):
    """ddddocr's detector declares batch 1 and bakes it into a Reshape: its torch conversion
    can only run batches of one, so recovery trains and evaluates at that size."""
    model = onnx.load(tiny_cnn(tmp_path / "any.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    flatten = next(i for i, n in enumerate(model.graph.node) if n.op_type == "Flatten")
    model.graph.node[flatten].CopyFrom(helper.make_node("Reshape", ["gap", "one_row"], ["flat"]))
    model.graph.initializer.append(numpy_helper.from_array(np.array([1, 32]), "one_row"))
    onnx.save(model, tmp_path / "fixed.onnx")
    assert OnnxModule(load_model(tmp_path / "fixed.onnx"), "fixed").fixed_batch == 1
    data = write_data(tmp_path / "data", digits(40), per_file=1)
    settings = RecoverSettings(data, time_budget=60, epochs=2)
    report = prune_file(
        tmp_path / "fixed.onnx",
        tmp_path / "p.onnx",
        UNREFIT,
        calib=data,
        recover=lambda a, b: recover_pruned(a, b, settings),
    )
    assert report.recovery is not None
    assert report.recovery.training["stop_reason"] == "reached --epochs 2"
    assert report.agreement.cosine > report.recovery.before.cosine


def test_a_probability_map_is_recovered_with_bce_and_dice(tmp_path):
    """A Sigmoid map judged by mask IoU (a text or segmentation mask) adds the soft Dice term,
    which weighs the few marked pixels as much as the background, as the mask IoU does."""
    from onnxsmith.exporter.recover import recovery_loss
    from onnxsmith.exporter.task_losses import soft_dice_loss
    from onnxsmith.exporter.training import DistillConfig, distillation_loss

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Sigmoid", ["up"], ["mask"])]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "map",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 1, 16, 16])],
        [numpy_helper.from_array(np.full((1, 1, 3, 3), 0.5, np.float32), "w"),
         numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]),
              tmp_path / "map.onnx")  # fmt: skip
    data = write_data(tmp_path / "data", digits(32))
    assert recovery_loss(load_model(tmp_path / "map.onnx"), data) == "bce-dice"
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, :2, :2] = 1.0  # 4 marked pixels of 64
    assert float(soft_dice_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    shifted = torch.roll(target, 1, dims=-1)  # 2 of 4 marked pixels still overlap
    assert float(soft_dice_loss(shifted, target)) == pytest.approx(1 - 5 / 9, abs=1e-6)
    both = distillation_loss(shifted, target, None, DistillConfig(loss="bce-dice"))
    bce = distillation_loss(shifted, target, None, DistillConfig(loss="bce"))
    assert float(both - bce) == pytest.approx(1 - 5 / 9, abs=1e-6)


def test_a_yolo_head_is_recovered_with_scores_and_the_boxes_that_count(tmp_path):
    """A YOLO head: BCE on the scores plus 1 − GIoU of each anchor's box, weighted by the
    original's score, so background anchors' boxes do not drown the detections."""
    from onnxsmith.exporter.recover import recovery_loss
    from onnxsmith.exporter.task_losses import generalized_iou
    from onnxsmith.exporter.training import DistillConfig, distillation_loss

    nodes = [helper.make_node("Reshape", ["x", "flat"], ["row"]),
             helper.make_node("Mul", ["row", "pixels"], ["box"]),
             helper.make_node("Sigmoid", ["row"], ["score"]),
             helper.make_node("Concat", ["box", "box", "box", "box", "score", "score"],
                              ["head"], axis=1)]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "yolo",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("head", TensorProto.FLOAT, ["batch", 6, 64])],
        [numpy_helper.from_array(np.array([0, 1, 64], np.int64), "flat"),
         numpy_helper.from_array(np.array(10.0, np.float32), "pixels")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]),
              tmp_path / "yolo.onnx")  # fmt: skip
    data = write_data(tmp_path / "data", digits(32))
    assert recovery_loss(load_model(tmp_path / "yolo.onnx"), data) == "detection"

    box = torch.tensor([10.0, 10.0, 4.0, 4.0])
    assert float(generalized_iou(box, box)) == pytest.approx(1.0, abs=1e-6)
    half = torch.tensor([12.0, 10.0, 4.0, 4.0])  # overlap 8 of union 24
    assert float(generalized_iou(half, box)) == pytest.approx(1 / 3, abs=1e-6)
    apart = torch.tensor([20.0, 10.0, 4.0, 4.0])  # hull 14×4, union 32
    assert float(generalized_iou(apart, box)) == pytest.approx(-24 / 56, abs=1e-6)

    target = torch.zeros(1, 6, 16)  # [N, 4 + 2 classes, 16 anchors]
    target[0, :4] = box[:, None]
    target[0, 4, 0] = 0.9  # anchor 0 detects class 0; the other anchors are background
    config = DistillConfig(loss="detection")
    exact = float(distillation_loss(target.clone(), target, None, config))
    background = target.clone()
    background[0, 0, 5] = 200.0  # a background anchor's box moves far away
    assert float(distillation_loss(background, target, None, config)) == pytest.approx(exact)
    kept = target.clone()
    kept[0, 0, 0] = 12.0  # the detected box moves by half its width
    moved = float(distillation_loss(kept, target, None, config))
    assert moved == pytest.approx(exact + 2 / 3, abs=1e-5)
    alarm = target.clone()
    alarm[0, 5, 5] = 0.9  # a background anchor fires: counted as much as the detection
    raised = float(distillation_loss(alarm, target, None, config))
    miss, detection = -math.log(0.1), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    # the mean over all 32 scores, and anchor 5 now among those where either model detects
    weighted = (detection / 2 + miss / 2) / 2 - detection / 2
    assert raised == pytest.approx(exact + miss / 32 + weighted, abs=1e-4)


def test_channels_last_and_bfloat16_steps_compute_the_same_module(tmp_path):
    """The step modes a time-bounded run may pick (exporter/step_mode.py) change how the
    converted module computes, not what: channels-last inputs give float32's outputs to float
    rounding, bfloat16 autocast to bfloat16's 3 significant digits, and outputs stay float."""
    from onnxsmith.exporter.step_mode import StepMode

    module = OnnxModule(load_model(tiny_cnn(tmp_path / "m.onnx")), "m.onnx").eval()
    x = torch.from_numpy(digits(8))
    with torch.no_grad():
        want = module(x)[0]
        for mode, tolerance in ((StepMode(False, True), 1e-6), (StepMode(True, True), 2e-2)):
            with mode.autocast():
                got = module(*mode.layout([x]))[0].float()
            assert float((got - want).abs().max()) < tolerance, mode


def pruned_tiny_cnn(tmp_path, data):
    """tiny_cnn and its half-pruned copy (no refit, no timing), as two files."""
    model, pruned = tiny_cnn(tmp_path / "m.onnx"), tmp_path / "p.onnx"
    prune_file(model, pruned, UNREFIT, calib=data)
    return model, pruned


def test_feature_hints_pair_each_kept_channel_with_its_original(tmp_path):
    model, pruned = pruned_tiny_cnn(tmp_path, write_data(tmp_path / "calib", digits(64)))
    images = digits(48, 500)
    hints = feature_hints(load_model(model), load_model(pruned), {"x": images})
    assert hints is not None and set(hints.names) == {"c1", "c2"}
    # The first Conv reads the unchanged input, so its kept channels are exact copies:
    # the pairing must name the very channels pruning kept.
    original_w1 = numpy_helper.to_array(onnx.load(model).graph.initializer[0])
    pruned_w1 = load_model(pruned).graph.initializers["w1"].const_value.numpy()
    assert len(hints.channels["c1"]) == len(pruned_w1) < len(original_w1)
    np.testing.assert_array_equal(original_w1[hints.channels["c1"]], pruned_w1)
    # The targets are the original's values there (float16: relative error ~1e-3).
    session = create_session(with_outputs(load_model(model), ["c1"]))
    names = [o.name for o in session.get_outputs()]
    c1 = run(session, {"x": images})[names.index("c1")]
    want = c1[:, hints.channels["c1"]]
    np.testing.assert_allclose(hints.targets["c1"], want, atol=2e-3 * np.abs(want).max())
    # ... so the student's own c1 costs (almost) nothing, and a wrong pairing costs a lot.
    target = [torch.from_numpy(hints.targets["c1"].astype(np.float32))]
    same = hint_loss([torch.from_numpy(want)], target)
    shuffled = hint_loss([torch.from_numpy(want[:, ::-1].copy())], target)
    assert float(same) < 1e-5 < 0.1 < float(shuffled)
    assert "2 Conv outputs matched" in hints.describe()


@pytest.mark.slow  # two short trainings
def test_distill_with_feature_hints_trains_on_them(tmp_path):
    from onnxsmith.exporter.distill import distill
    from onnxsmith.exporter.training import DistillConfig

    data = write_data(tmp_path / "data", digits(128))
    model, pruned = pruned_tiny_cnn(tmp_path, data)
    first_losses = {}
    for weight in (0.0, 1.0):
        config = DistillConfig(loss="bce", epochs=1, hint_weight=weight)
        report = distill([model], pruned, data, tmp_path / f"s{weight}.onnx", config=config,
                         work_dir=tmp_path / f"w{weight}", latency_runs=0)  # fmt: skip
        first_losses[weight] = report.history[0].loss
        assert (report.hints is None) == (weight == 0.0)
    # The same seed and batches: the hinted run's training loss carries the hint term too.
    assert first_losses[1.0] > first_losses[0.0] + 1e-3
    with pytest.raises(UsageError, match="one teacher and an ONNX student"):
        distill([model, model], pruned, data, tmp_path / "x.onnx",
                config=DistillConfig(hint_weight=1.0))  # fmt: skip


@pytest.mark.models
def test_relative_rates_keep_a_folded_detector_where_plain_adam_breaks_it(tmp_path):
    """Folding BatchNormalization leaves the PP-OCRv4 detector's head conv with weights ~1e4
    times smaller than the median: one Adam step at 1e-4 (Adam moves every parameter by about
    the rate) breaks the converted original; rates scaled to each tensor's size do not."""
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    det = Path(rapidocr.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
    model = apply(cleanup_passes(), load_model(det))[0]
    page = torch.from_numpy(document_images(1, side=96, seed=3))
    with torch.no_grad():
        target = OnnxModule(model, "det")(page)[0]
    errors = {}
    for relative in (False, True):
        module = OnnxModule(model, "det")
        groups = parameter_groups(module, relative=relative)
        optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
        set_rate(optimizer, 1e-4)
        shifted = module(torch.from_numpy(document_images(1, side=96, seed=4)))[0]
        torch.nn.functional.binary_cross_entropy(shifted, shifted.detach().round()).backward()
        optimizer.step()
        with torch.no_grad():
            output = module(page)[0]
        errors[relative] = float(((output - target) ** 2).mean() / (target**2).mean())
        assert min(g["scale"] for g in groups) < 1e-3 if relative else len(groups) == 1
    assert errors[False] > 0.3 and errors[True] < 0.03, errors
