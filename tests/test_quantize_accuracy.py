"""Accuracy techniques of the int8 search: bias correction, the float simulation of static int8
that measures one layer in isolation, and the isolated ranking — each on real digits feeds.

Bias correction and fake quantization are passes: each gets the five kinds of test (applies,
no-op, idempotent, ORT parity, bad input untouched).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxsmith.passes.quantize import (
    CorrectBiasPass,
    FakeQuantizePass,
    InsertQdqPass,
    QuantPlan,
    RoundWeightsPass,
    companion_nodes,
    find_candidates,
    prepare_passes,
    qdq_tensors,
)
from onnxsmith.passes.quantize.weights import static_grid, weight_axis
from onnxsmith.runtime.calibrate import calibrate, channel_means
from onnxsmith.runtime.compute import multiply_accumulates
from onnxsmith.runtime.input_stats import collect_weight_hessians
from onnxsmith.runtime.metric import EvalSet
from onnxsmith.runtime.session import create_session
from quant_models import branch_feeds, branches, digit_feeds, embedding, mlp, sequence_feeds

from onnxsmith.errors import PassError
from onnxsmith.linear import constant
from onnxsmith.pipeline import apply
from onnxsmith.progress import Reporter
from onnxsmith.quantize.search import Search, SearchSettings, clone
from onnxsmith.samples import tiny_cnn

CALIB = digit_feeds(8, start=0)
EVAL = digit_feeds(8, start=64)


def prepared(model: ir.Model) -> ir.Model:
    model, _ = apply(prepare_passes(model), model)
    return model


def snapshot(model: ir.Model) -> bytes:
    return ir.to_proto(model).SerializeToString()


def outputs(model: ir.Model, feeds) -> list[np.ndarray]:
    session = create_session(model)
    return [session.run(None, feed)[0] for feed in feeds]


def nmse(reference: ir.Model, model: ir.Model, feeds) -> float:
    """Normalized squared error of `model`'s outputs against `reference`'s."""
    pairs = zip(outputs(reference, feeds), outputs(model, feeds), strict=True)
    noise = signal = 0.0
    for want, got in pairs:
        noise += float(np.sum((want.astype(np.float64) - got) ** 2))
        signal += float(np.sum(want.astype(np.float64) ** 2))
    return noise / signal


def conv_means(model: ir.Model):
    convs = [n for n in model.graph if n.op_type == "Conv"]
    axes = {n.inputs[0].name: 1 for n in convs}
    return [n.name for n in convs], channel_means(model, iter(CALIB), axes)


# -- weights on ORT's grid ---------------------------------------------------------------------


def test_static_grid_matches_orts_symmetric_int8_and_is_stable():
    w = np.array([[1.0, -0.5, 0.3], [-2.0, 0.25, 0.0]], np.float32)
    grid = static_grid(w, axis=0)
    np.testing.assert_allclose(grid[0], np.rint(w[0] * 127) / 127, rtol=1e-6)
    np.testing.assert_allclose(grid[1], np.rint(w[1] / 2 * 127) * 2 / 127, rtol=1e-6)
    np.testing.assert_array_equal(static_grid(grid, axis=0), grid)
    reduced = static_grid(w, axis=None, reduce_range=True)
    np.testing.assert_allclose(np.abs(reduced).max(), 2.0)
    assert len(np.unique(np.rint(reduced / (2.0 / 64)))) <= 129


# -- bias correction ---------------------------------------------------------------------------


def test_bias_correction_lowers_the_weight_rounding_error_on_digits():
    """Per-tensor 7-bit weights round coarsely; the digits' mean input (~0.3, never 0) turns
    that into a shift of every output channel, which the corrected bias removes."""
    reference = prepared(tiny_cnn())
    names, means = conv_means(reference)
    rounded_only = clone(reference)
    for node in rounded_only.graph:
        if node.name in names:
            weight = node.inputs[1]
            grid = static_grid(weight.const_value.numpy(), None, reduce_range=True)
            weight.const_value = ir.tensor(grid, name=weight.name)
    corrected = clone(reference)
    result = CorrectBiasPass(means, names, per_channel=False, reduce_range=True)(corrected)
    assert result.modified and result.stats["corrected"] == len(names)
    before, after = nmse(reference, rounded_only, EVAL), nmse(reference, corrected, EVAL)
    assert after < 0.7 * before, (before, after)


def test_bias_correction_writes_weights_orts_quantizer_keeps():
    """The corrected model quantized by ORT's static pass equals the corrected float model up to
    the activation rounding alone: the weights were already on the grid ORT uses."""
    model = prepared(tiny_cnn())
    names, means = conv_means(model)
    CorrectBiasPass(means, names)(model)
    for node in model.graph:
        if node.name in names:
            weight = node.inputs[1].const_value.numpy()
            np.testing.assert_array_equal(static_grid(weight, 0), weight)


def test_bias_correction_is_idempotent_and_a_no_op_without_nodes():
    model = prepared(tiny_cnn())
    names, means = conv_means(model)
    before = snapshot(model)
    assert not CorrectBiasPass(means, [])(model).modified
    assert snapshot(model) == before
    assert CorrectBiasPass(means, names)(model).modified
    once = snapshot(model)
    assert not CorrectBiasPass(means, names)(model).modified
    assert snapshot(model) == once


def test_bias_correction_parity_with_fp32():
    """8-bit per-channel weights: each weight moves by <= 1/254 of its channel's range, so the
    logits stay within cosine 0.9999 of fp32 on real digits."""
    reference = prepared(tiny_cnn())
    model = clone(reference)
    names, means = conv_means(model)
    CorrectBiasPass(means, names)(model)
    for want, got in zip(outputs(reference, EVAL), outputs(model, EVAL), strict=True):
        cosine = np.sum(want * got) / np.linalg.norm(want) / np.linalg.norm(got)
        assert cosine > 0.9999 and not np.array_equal(want, got)


def test_bias_correction_refuses_missing_means_and_leaves_the_model_untouched():
    model = prepared(tiny_cnn())
    names, means = conv_means(model)
    partial = type(means)({k: v for k, v in list(means.means.items())[:1]}, means.feeds)
    gemm = next(n.name for n in model.graph if n.op_type == "Gemm")
    before = snapshot(model)
    with pytest.raises(PassError, match="no channel means"):
        CorrectBiasPass(partial, names)(model)
    with pytest.raises(PassError, match="no node named 'nope'"):
        CorrectBiasPass(means, ["nope"])(model)
    with pytest.raises(PassError, match="no channel means"):
        CorrectBiasPass(means, [gemm])(model)
    assert snapshot(model) == before


# -- weight rounding on calibration data --------------------------------------------------------


def layer_hessians(model: ir.Model):
    names = [n.name for n in model.graph if n.op_type in ("Conv", "Gemm")]
    return names, collect_weight_hessians(model, names, CALIB)


def on_nearest_grid(model: ir.Model, names, **grid) -> ir.Model:
    rounded = clone(model)
    for node in rounded.graph:
        if node.name in names:
            weight = node.inputs[1]
            axis = weight_axis(node) if grid.pop("per_channel", True) else None
            value = static_grid(weight.const_value.numpy(), axis, **grid)
            weight.const_value = ir.tensor(value, name=weight.name)
    return rounded


def test_weight_rounding_lowers_the_output_error_on_digits():
    """Rounding chosen through each layer's input second moments (the defaults: per-channel
    8-bit) gives held-out digits a smaller output error than nearest rounding (measured 7.3e-7
    against 2.1e-6; each layer's own error is halved or better)."""
    reference = prepared(tiny_cnn())
    names, hessians = layer_hessians(reference)
    nearest = on_nearest_grid(reference, names)
    rounded = clone(reference)
    result = RoundWeightsPass(hessians, names)(rounded)
    assert result.modified and result.stats["rounded"] == len(names)
    before, after = nmse(reference, nearest, EVAL), nmse(reference, rounded, EVAL)
    assert after < 0.7 * before, (before, after)


def test_weight_rounding_writes_weights_orts_quantizer_keeps():
    """On ORT's grid, and every channel's largest weight where it was: ORT's scale is the
    same, so its quantizer keeps exactly the chosen integers."""
    model = prepared(tiny_cnn())
    names, hessians = layer_hessians(model)
    originals = {n.name: n.inputs[1].const_value.numpy() for n in model.graph if n.name in names}
    RoundWeightsPass(hessians, names)(model)
    for node in model.graph:
        if node.name in names:
            axis = weight_axis(node)
            weight = node.inputs[1].const_value.numpy()
            np.testing.assert_array_equal(static_grid(weight, axis), weight)
            other = tuple(i for i in range(weight.ndim) if i != axis)
            absmax = np.abs(originals[node.name]).max(axis=other)
            np.testing.assert_allclose(np.abs(weight).max(axis=other), absmax, rtol=1e-6)


def test_weight_rounding_is_idempotent_and_a_no_op_without_nodes():
    model = prepared(tiny_cnn())
    names, hessians = layer_hessians(model)
    before = snapshot(model)
    assert not RoundWeightsPass(hessians, [])(model).modified
    assert snapshot(model) == before
    assert RoundWeightsPass(hessians, names)(model).modified
    once = snapshot(model)
    assert not RoundWeightsPass(hessians, names)(model).modified
    assert snapshot(model) == once


def test_weight_rounding_parity_with_fp32():
    """8-bit per-channel weights move by at most a step or two of 1/254 of their channel's
    range, so the logits stay within cosine 0.9999 of fp32 on real digits."""
    reference = prepared(tiny_cnn())
    model = clone(reference)
    names, hessians = layer_hessians(model)
    RoundWeightsPass(hessians, names)(model)
    for want, got in zip(outputs(reference, EVAL), outputs(model, EVAL), strict=True):
        cosine = np.sum(want * got) / np.linalg.norm(want) / np.linalg.norm(got)
        assert cosine > 0.9999 and not np.array_equal(want, got)


def test_weight_rounding_refuses_missing_hessians_and_leaves_the_model_untouched():
    model = prepared(tiny_cnn())
    names, hessians = layer_hessians(model)
    partial = type(hessians)(dict(list(hessians.hessians.items())[:1]), hessians.rows)
    before = snapshot(model)
    with pytest.raises(PassError, match="measured input Hessian"):
        RoundWeightsPass(partial, names)(model)
    with pytest.raises(PassError, match="no node named 'nope'"):
        RoundWeightsPass(hessians, ["nope"])(model)
    assert snapshot(model) == before


def test_search_keeps_weight_rounding_where_it_lowers_the_loss():
    model = prepared(tiny_cnn())
    settings = SearchSettings(latency_aware=False, smoothquant="off", method="minmax",
                              reduce_range=True)  # fmt: skip
    evalset = EvalSet(model, EVAL, "cosine", tolerance=1.0)
    search = Search(
        model, find_candidates(model), lambda: iter(CALIB), evalset, settings, Reporter(False)
    )
    result = search.run()
    first = next(t.loss for t in search.trials if t.label.startswith("int8 plan"))
    rounded = next(t.loss for t in search.trials if t.label == "weight rounding")
    assert rounded < first
    assert result.weights_rounded == 3 and result.score.loss == rounded


# -- fake quantization (one layer in isolation) ------------------------------------------------


def conv_table(model: ir.Model):
    convs = [n.name for n in model.graph if n.op_type == "Conv"]
    return convs, calibrate(model, iter(CALIB), qdq_tensors(model, convs))


def test_fake_quantization_matches_orts_static_int8_of_one_conv():
    """One conv simulated in float against the same conv through ORT's static QDQ pass: the
    simulation reproduces the input and weight rounding, so it is closer to ORT's int8 model
    than fp32 is (what is left is ORT's rounding of the conv's output and its Relu)."""
    reference = prepared(tiny_cnn())
    convs, table = conv_table(reference)
    fake, real = clone(reference), clone(reference)
    result = FakeQuantizePass(table, convs[1:])(fake)
    assert result.modified and result.stats["fake_quantized"] == 1
    real, _ = apply([InsertQdqPass(table, convs[1:])], real)
    error = nmse(reference, fake, EVAL)
    assert 0 < error < 1e-3
    assert nmse(real, fake, EVAL) < 0.75 * nmse(real, reference, EVAL)


def test_fake_quantization_is_a_no_op_without_nodes_and_idempotent():
    model = prepared(tiny_cnn())
    convs, table = conv_table(model)
    before = snapshot(model)
    assert not FakeQuantizePass(table, [])(model).modified
    assert snapshot(model) == before
    FakeQuantizePass(table, convs)(model)
    once = snapshot(model)
    assert not FakeQuantizePass(table, convs)(model).modified
    assert snapshot(model) == once


def test_fake_quantization_refuses_unranged_inputs_and_leaves_the_model_untouched():
    model = prepared(tiny_cnn())
    convs, table = conv_table(model)
    empty = type(table)("minmax", {}, 0)
    before = snapshot(model)
    with pytest.raises(PassError, match="no calibrated range"):
        FakeQuantizePass(empty, convs)(model)
    with pytest.raises(PassError, match="no node named"):
        FakeQuantizePass(table, ["missing"])(model)
    assert snapshot(model) == before


# -- the search ------------------------------------------------------------------------------


def test_isolated_ranking_puts_the_outlier_layer_first():
    """fc2's input has one channel 40x the others: quantized alone, its per-tensor uint8 range
    wipes out the other channels, so it must head the fallback order."""
    model = prepared(mlp(outlier=40.0))
    feeds = sequence_feeds(6, seed=1)
    candidates = find_candidates(model)
    settings = SearchSettings(latency_aware=False, smoothquant="off")
    evalset = EvalSet(model, feeds[:3], "cosine", tolerance=0.001)
    search = Search(model, candidates, lambda: iter(feeds), evalset, settings, Reporter(False))
    nodes = [c.node for c in candidates]
    table = search.tables(model, nodes)["minmax"]
    plan = QuantPlan(dict.fromkeys(nodes, "static"))
    order = search.rank(plan, model, search.build(plan, model, table), table)
    assert order[0] == "fc2"
    assert search.isolated["fc2", "static"] > 10 * search.isolated[order[-1], "static"]


def test_multiply_accumulates_count_each_compute_node_on_the_feed():
    """tiny_cnn on a batch of 8 digits: conv1 3x3 over 1 channel into 16x8x8, conv2 3x3 over 16
    channels into 32x4x4 (stride 2), the Gemm 32 inputs into 10 logits."""
    model = prepared(tiny_cnn())
    by_weight = {
        constant(node.inputs[1]).shape: node.name
        for node in model.graph
        if node.op_type in ("Conv", "Gemm")
    }
    macs = multiply_accumulates(model, list(by_weight.values()), EVAL[0])
    assert macs == {
        by_weight[16, 1, 3, 3]: 8 * 16 * 8 * 8 * 9,
        by_weight[32, 16, 3, 3]: 8 * 32 * 4 * 4 * 16 * 9,
        by_weight[10, 32]: 8 * 10 * 32,
    }


def test_multiply_accumulates_read_a_constant_first_input():
    """A MatMul whose first input is a constant (A[4, 8] @ x[8, n]) is a static candidate; its
    contraction length comes from the constant, which cannot be observed in a run."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "x"], ["y"], name="mm")],
        "constant_first",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, "n"])],
        [numpy_helper.from_array(np.ones((4, 8), np.float32), "A")],
    )
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert [c.node for c in find_candidates(model)] == ["mm"]
    feed = {"x": np.ones((8, 5), np.float32)}
    assert multiply_accumulates(model, ["mm"], feed) == {"mm": 4 * 5 * 8}


def test_fallback_by_error_per_mac_keeps_the_wide_branch_in_int8():
    """Three summed MatMul branches, the wide one (8x the compute of a narrow one) with the
    largest error: ranked by error, the fallback returns the wide branch to float; ranked by
    error per multiply-accumulate, it returns the two narrow ones, which also fits. The search
    keeps the second plan: 1,024 multiply-accumulates per feed in float instead of 8,192."""
    model = prepared(branches())
    feeds = branch_feeds(6)
    candidates = find_candidates(model)
    settings = SearchSettings(latency_aware=False, smoothquant="off", method="minmax",
                              weight_rounding=False, range_search=False)  # fmt: skip
    evalset = EvalSet(model, feeds[3:], "cosine", tolerance=0.01)
    search = Search(model, candidates, lambda: iter(feeds[:3]), evalset, settings, Reporter(False))
    nodes = [c.node for c in candidates]
    table = search.tables(model, nodes)["minmax"]
    plan = QuantPlan(dict.fromkeys(nodes, "static"))
    score = evalset.score(search.build(plan, model, table))
    assert not score.met
    ladders = dict.fromkeys(nodes, ("static",))
    by_error = search.step_down(plan, ladders, model, table, score, per_mac=False)
    assert dict(by_error[0].modes) == {"fc1": "static", "fc2": "static"} and by_error[1].met
    assert max(search.isolated, key=search.isolated.__getitem__) == ("fc0", "static")

    kept_plan, kept_score, _ = search.fall_back(plan, ladders, model, table, score)
    assert dict(kept_plan.modes) == {"fc0": "static"} and kept_score.met
    assert search.multiply_accumulates(model) == {"fc0": 8192.0, "fc1": 512.0, "fc2": 512.0}
    assert any("per MAC" in t.label for t in search.trials)
    assert search.fallback_choice.startswith("fallback kept per MAC")


def test_fallback_per_mac_keeps_an_embedding_table_in_int8():
    """An int8 lookup table saves size, not time: ranked per multiply-accumulate its few
    output values would send it back to float first (error 2.6e-5 over 1,536 values against
    the MatMul's 1.3e-4 over 12,288); it steps down after every compute node instead, so
    returning the MatMul alone fits and the table stays int8."""
    model = prepared(embedding())
    rng = np.random.default_rng(0)
    feeds = [{"ids": rng.integers(0, 128, (2, 12)).astype(np.int64)} for _ in range(6)]
    settings = SearchSettings(latency_aware=False, smoothquant="off")
    evalset = EvalSet(model, feeds[3:], "cosine", tolerance=3e-5)
    search = Search(
        model, find_candidates(model), lambda: iter(feeds[:3]), evalset, settings, Reporter(False)
    )
    plan = QuantPlan({"embed": "weight-only", "fc": "dynamic"})
    ladders = {"embed": ("weight-only",), "fc": ("dynamic",)}
    score = evalset.score(search.build(plan, model, None))
    assert not score.met
    kept, kept_score, _ = search.step_down(plan, ladders, model, None, score, per_mac=True)
    assert dict(kept.modes) == {"embed": "weight-only"} and kept_score.met
    macs = search.multiply_accumulates(model)
    assert search.isolated["embed", "weight-only"] / macs["embed"] > (
        search.isolated["fc", "dynamic"] / macs["fc"]
    )


def test_search_keeps_bias_correction_where_it_lowers_the_loss():
    """Two convs and the Gemm static, 7-bit weights, real digits: the corrected model's loss is
    lower (measured 7.2e-6 against 1.1e-5), so the search keeps the correction on all three."""
    model = prepared(tiny_cnn())
    candidates = find_candidates(model)
    settings = SearchSettings(latency_aware=False, smoothquant="off", method="minmax",
                              reduce_range=True, bias_correction=True,
                              weight_rounding=False)  # fmt: skip
    evalset = EvalSet(model, EVAL, "cosine", tolerance=1.0)
    search = Search(model, candidates, lambda: iter(CALIB), evalset, settings, Reporter(False))
    result = search.run()
    labels = [t.label for t in search.trials]
    assert "bias correction" in labels
    first = next(t.loss for t in search.trials if t.label.startswith("int8 plan"))
    corrected = next(t.loss for t in search.trials if t.label == "bias correction")
    assert corrected < first
    assert result.bias_corrected == 3 and result.score.loss == corrected


def test_range_search_lowers_the_isolated_error_of_the_searched_inputs():
    """Digits through tiny_cnn with minmax ranges: for each searched input, the chosen range's
    isolated error at the output is the lowest of the candidates, never above minmax's."""
    model = prepared(tiny_cnn())
    candidates = find_candidates(model)
    settings = SearchSettings(latency_aware=False, smoothquant="off")
    evalset = EvalSet(model, EVAL, "cosine", tolerance=0.0)
    search = Search(model, candidates, lambda: iter(CALIB), evalset, settings, Reporter(False))
    nodes = [c.node for c in candidates]
    minmax = search.tables(model, nodes)["minmax"]
    plan = QuantPlan(dict.fromkeys(nodes, "static"))
    score, built = search.evaluate(plan, model, minmax, "minmax")
    before = {n: search.isolated_error(n, "static", model, minmax) for n in nodes}
    table, searched_score, _ = search.search_ranges(plan, model, minmax, score, built)
    after = {n: search.isolated_error(n, "static", model, table) for n in nodes}
    assert all(after[n] <= before[n] for n in nodes)
    assert searched_score.loss <= score.loss
    if table is not minmax:
        assert any(after[n] < before[n] for n in nodes) and searched_score.loss < score.loss


def test_structural_companions_leave_add_and_mul_in_float():
    model = prepared(mlp())
    feeds = sequence_feeds(4)
    nodes = ["fc1", "fc2", "fc3"]
    table = calibrate(model, iter(feeds), qdq_tensors(model, nodes))
    everything = apply([InsertQdqPass(table, nodes)], clone(model))[0]
    structural = apply([InsertQdqPass(table, nodes, companions="structural")], clone(model))[0]

    def scale_reads_int8(m: ir.Model) -> bool:
        """Whether the Mul's constant gain was quantized (it is only for a companion)."""
        gain = next(n for n in m.graph if n.name == "scale").inputs[1]
        return gain.producer() is not None and gain.producer().op_type == "DequantizeLinear"

    assert scale_reads_int8(everything) and not scale_reads_int8(structural)
    assert companion_nodes(model, nodes) == ["act", "scale"]
    assert companion_nodes(model, nodes, "structural") == ["act"]
    with pytest.raises(PassError, match="unknown companions 'some'"):
        InsertQdqPass(table, nodes, companions="some")
