"""The quantization passes: applies, no-op, re-application, ORT parity, bad input untouched.

Passes that take explicit node names cannot be idempotent in the usual sense (the named nodes
are gone after the rewrite); re-applying them to their own output must be refused with a clear
error and leave the model as it was, which is what the third kind of test checks here.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx_ir.passes import common
from onnxsmith.passes.quantize import (
    InsertQdqPass,
    QuantizeDynamicPass,
    QuantizeGatherPass,
    SmoothQuantPass,
    find_candidates,
    prepare_passes,
    qdq_tensors,
)
from onnxsmith.passes.quantize.weights import quantize_weight
from onnxsmith.runtime.calibrate import calibrate, collect_statistics
from onnxsmith.runtime.session import create_session
from quant_models import embedding, image_feeds, mlp, sequence_feeds

from onnxsmith.errors import PassError
from onnxsmith.pipeline import apply
from onnxsmith.samples import tiny_cnn


def prepared(model: ir.Model) -> ir.Model:
    model, _ = apply(prepare_passes(model), model)
    return model


def ops(model: ir.Model) -> collections.Counter:
    return collections.Counter(node.op_type for node in model.graph)


def outputs(model: ir.Model, feeds) -> list[np.ndarray]:
    session = create_session(model)
    return [session.run(None, feed)[0] for feed in feeds]


def snapshot(model: ir.Model) -> bytes:
    return ir.to_proto(model).SerializeToString()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel(), b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b))


# -- weights -----------------------------------------------------------------------------------


def test_symmetric_weight_quantization_per_channel():
    w = np.array([[1.0, -0.5], [-2.0, 0.25]], np.float32)
    q, scale = quantize_weight(w, axis=1)
    np.testing.assert_allclose(scale, [2.0 / 127, 0.5 / 127])
    np.testing.assert_array_equal(q, [[64, -127], [-127, 64]])
    q_zero, scale_zero = quantize_weight(np.zeros((2, 2), np.float32), axis=None)
    assert scale_zero == 1.0 and not q_zero.any()


# -- dynamic int8 ------------------------------------------------------------------------------


def test_dynamic_rewrites_matmuls_and_orts_fuses_them():
    model = prepared(mlp())
    names = ["fc1", "fc2", "fc3"]
    QuantizeDynamicPass(names)(model)
    counts = ops(model)
    assert counts["MatMulInteger"] == 3 and counts["DynamicQuantizeLinear"] == 3
    assert counts["MatMul"] == 0
    onnx.checker.check_model(ir.to_proto(model))


def test_dynamic_matches_fp32_closely():
    """7-bit weights per channel (no kernel saturation on any x86) and 8-bit activations per run:
    each rounding is <= 0.8 % of a range, ~1e-3 of cosine per layer; three layers stay > 0.995."""
    reference = prepared(mlp())
    model = prepared(mlp())
    QuantizeDynamicPass(["fc1", "fc2", "fc3"], weight_bits=7)(model)
    feeds = sequence_feeds(4, seed=3)
    for want, got in zip(outputs(reference, feeds), outputs(model, feeds), strict=True):
        assert want.shape == got.shape
        assert cosine(want, got) > 0.995


def test_dynamic_with_no_nodes_is_a_no_op():
    model = prepared(mlp())
    before = snapshot(model)
    result = QuantizeDynamicPass([])(model)
    assert not result.modified and snapshot(model) == before


def test_dynamic_refuses_its_own_output_and_leaves_it_untouched():
    model = prepared(mlp())
    QuantizeDynamicPass(["fc1"])(model)
    before = snapshot(model)
    with pytest.raises(PassError, match="'fc1'"):
        QuantizeDynamicPass(["fc1"])(model)
    assert snapshot(model) == before


def test_dynamic_rejects_a_conv_and_leaves_the_model_untouched():
    model = prepared(tiny_cnn())
    conv = next(n.name for n in model.graph if n.op_type == "Conv")
    gemm = next(n.name for n in model.graph if n.op_type == "Gemm")
    before = snapshot(model)
    with pytest.raises(PassError, match="not MatMul/Gemm"):
        QuantizeDynamicPass([gemm, conv])(model)
    assert snapshot(model) == before


def test_dynamic_gemm_with_transposed_weight_and_bias():
    reference = prepared(tiny_cnn())
    model = prepared(tiny_cnn())
    gemm = next(n.name for n in model.graph if n.op_type == "Gemm")
    QuantizeDynamicPass([gemm])(model)
    assert ops(model)["Gemm"] == 0 and ops(model)["MatMulInteger"] == 1
    feeds = image_feeds(2)
    for want, got in zip(outputs(reference, feeds), outputs(model, feeds), strict=True):
        assert cosine(want, got) > 0.999


# -- weight-only embeddings -------------------------------------------------------------------


def test_gather_table_goes_int8_with_per_row_scales():
    model = prepared(embedding())
    candidates = {c.node: c.modes for c in find_candidates(model)}
    assert candidates["embed"] == ("weight-only",)
    QuantizeGatherPass(["embed"])(model)
    tables = [v for v in model.graph.initializers.values() if v.dtype == ir.DataType.INT8]
    assert [t.shape.dims for t in tables] == [(128, 64)]
    assert "table" not in model.graph.initializers  # the float table is gone


def test_gather_int8_matches_fp32_per_row():
    """Per-row symmetric int8: each element is off by at most half a step, 1/254 of its row's
    largest magnitude."""
    reference = prepared(embedding())
    model = prepared(embedding())
    QuantizeGatherPass(["embed"])(model)
    ids = {"ids": np.array([[0, 5, 127], [3, 3, 64]], np.int64)}
    want, got = outputs(reference, [ids])[0], outputs(model, [ids])[0]
    assert cosine(want, got) > 0.9999


def test_gather_no_nodes_no_op_and_bad_input_untouched():
    model = prepared(embedding())
    before = snapshot(model)
    assert not QuantizeGatherPass([])(model).modified
    with pytest.raises(PassError, match="'fc'"):
        QuantizeGatherPass(["fc"])(model)
    assert snapshot(model) == before
    QuantizeGatherPass(["embed"])(model)
    with pytest.raises(PassError, match="'embed'"):
        QuantizeGatherPass(["embed"])(model)  # its own output: the name is gone


# -- static QDQ --------------------------------------------------------------------------------


def cnn_with_table():
    model = prepared(tiny_cnn(opset=11))
    nodes = [c.node for c in find_candidates(model) if c.op_type == "Conv"]
    table = calibrate(model, image_feeds(6), qdq_tensors(model, nodes), "minmax")
    return model, nodes, table


def test_qdq_inserts_per_channel_pairs_valid_at_opset_13():
    model, nodes, table = cnn_with_table()
    quantized = InsertQdqPass(table, nodes).call(model).model
    counts = ops(quantized)
    assert counts["QuantizeLinear"] >= 2 and counts["DequantizeLinear"] >= 4
    axes = [
        n.attributes.get_int("axis", None)
        for n in quantized.graph
        if n.op_type == "DequantizeLinear"
    ]
    assert 0 in axes  # per-channel weights
    onnx.checker.check_model(ir.to_proto(quantized), full_check=True)


def test_qdq_output_runs_in_ort_close_to_fp32():
    """MinMax ranges on the same data: errors stay within a few uint8 steps of each tensor,
    so cosine with fp32 stays above 0.99 for this 3-layer CNN."""
    model, nodes, table = cnn_with_table()
    quantized = InsertQdqPass(table, nodes, reduce_range=True).call(model).model
    feeds = image_feeds(3, seed=9)
    for want, got in zip(outputs(model, feeds), outputs(quantized, feeds), strict=True):
        assert cosine(want, got) > 0.99


def test_qoperator_format_emits_qlinear_ops():
    model, nodes, table = cnn_with_table()
    quantized = InsertQdqPass(table, nodes, quant_format="qoperator").call(model).model
    assert ops(quantized)["QLinearConv"] == 2
    outputs(quantized, image_feeds(1))  # runs


def test_qdq_with_no_nodes_is_a_no_op():
    model, _, table = cnn_with_table()
    before = snapshot(model)
    assert not InsertQdqPass(table, []).call(model).modified
    assert snapshot(model) == before


def test_qdq_refuses_missing_ranges_and_leaves_the_model_untouched():
    model, nodes, table = cnn_with_table()
    partial = type(table)("minmax", dict(list(table.ranges.items())[:1]), 1)
    before = snapshot(model)
    with pytest.raises(PassError, match="no calibrated range"):
        InsertQdqPass(partial, nodes).call(model)
    assert snapshot(model) == before


def test_qdq_refuses_unknown_nodes_and_formats():
    model, _, table = cnn_with_table()
    with pytest.raises(PassError, match="'ghost'"):
        InsertQdqPass(table, ["ghost"]).call(model)
    with pytest.raises(PassError, match="qoperator"):
        InsertQdqPass(table, [], quant_format="qlinear")


def test_qdq_reapplied_to_its_output_is_refused():
    model, nodes, table = cnn_with_table()
    quantized = InsertQdqPass(table, nodes).call(model).model
    with pytest.raises(PassError):
        InsertQdqPass(table, nodes).call(quantized)


# -- SmoothQuant -------------------------------------------------------------------------------


def smoothing_inputs(model: ir.Model):
    nodes = ["fc1", "fc2", "fc3"]
    by_name = {n.name: n for n in model.graph}
    inputs = [by_name[n].inputs[0].name for n in nodes]
    stats = collect_statistics(
        model, sequence_feeds(4), [], histograms=False, channel_tensors=inputs
    )
    return {k: s.channel_absmax for k, s in stats.tensors.items()}, nodes


def test_smoothquant_is_exact_in_float():
    """Dividing X by s and multiplying W's rows by s is exact in real arithmetic; float32
    reassociation leaves relative errors around 1e-6."""
    reference = prepared(mlp(outlier=50.0))
    model = prepared(mlp(outlier=50.0))
    absmax, nodes = smoothing_inputs(model)
    result = SmoothQuantPass(absmax, 0.8, nodes)(model)
    assert result.stats["smoothed"] == 3
    assert result.stats["folded_into_layernorm"] == 1  # fc1 reads the LayerNorm alone
    feeds = sequence_feeds(3, seed=5)
    for want, got in zip(outputs(reference, feeds), outputs(model, feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_smoothquant_flattens_the_outlier_channel():
    model = prepared(mlp(outlier=50.0))
    absmax, nodes = smoothing_inputs(model)
    SmoothQuantPass(absmax, 0.8, nodes)(model)
    fc2 = next(n for n in model.graph if n.name == "fc2")
    smoothed = fc2.inputs[0].name
    after = collect_statistics(
        model, sequence_feeds(4), [], histograms=False, channel_tensors=[smoothed]
    )
    spread_before = absmax["g1"].max() / np.median(absmax["g1"])
    ch = after.tensors[smoothed].channel_absmax
    assert ch.max() / np.median(ch) < spread_before / 5


def test_smoothquant_helps_dynamic_int8_on_an_outlier():
    reference = prepared(mlp(outlier=200.0))
    plain = prepared(mlp(outlier=200.0))
    smooth = prepared(mlp(outlier=200.0))
    absmax, nodes = smoothing_inputs(smooth)
    SmoothQuantPass(absmax, 0.8, nodes)(smooth)
    for model in (plain, smooth):
        QuantizeDynamicPass(nodes)(model)
    feeds = sequence_feeds(3, seed=7)
    want = outputs(reference, feeds)
    plain_cos = min(cosine(a, b) for a, b in zip(want, outputs(plain, feeds), strict=True))
    smooth_cos = min(cosine(a, b) for a, b in zip(want, outputs(smooth, feeds), strict=True))
    assert smooth_cos > plain_cos


def test_smoothquant_alpha_zero_with_no_nodes_is_a_no_op():
    model = prepared(mlp())
    before = snapshot(model)
    assert not SmoothQuantPass({}, 0.5, [])(model).modified
    assert snapshot(model) == before


def test_smoothquant_bad_input_leaves_the_model_untouched():
    model = prepared(mlp())
    before = snapshot(model)
    with pytest.raises(PassError, match="statistics"):
        SmoothQuantPass({}, 0.5, ["fc1"])(model)
    with pytest.raises(PassError, match="not MatMul/Gemm"):
        SmoothQuantPass({}, 0.5, ["act"])(model)
    with pytest.raises(PassError, match="alpha"):
        SmoothQuantPass({}, 1.5, ["fc1"])
    assert snapshot(model) == before


# -- prepare -----------------------------------------------------------------------------------


def test_prepare_upgrades_old_opsets_and_lifts_constant_weights():
    model = prepared(tiny_cnn(opset=11))
    assert model.opset_imports[""] == 13
    assert ops(model)["Constant"] == 0
    convs = [n for n in model.graph if n.op_type == "Conv"]
    assert all(n.inputs[1].const_value is not None for n in convs)


def test_prepare_keeps_newer_opsets():
    model = prepared(mlp(opset=17))
    assert model.opset_imports[""] == 17
    assert all(node.name for node in model.graph)
    common.CheckerPass()(model)
