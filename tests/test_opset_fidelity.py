"""The cleanup never writes an operator form newer than the model's opset.

onnxscript's optimizer builds its replacements in the newest forms (`Reshape allowzero`, opset 14;
`Unsqueeze`/`Split` operands as inputs, opset 13; `Clip` bounds as inputs, opset 11); ONNX Runtime
refuses them in older graphs. Each model here is what exporters of that opset write. Parity is
exact (atol 0): every rewrite involved moves data without arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxsmith.passes.cleanup import SimplifyPass, cleanup_passes
from onnxsmith.passes.cleanup.opset_forms import restore_opset_forms
from onnxsmith.runtime.session import create_session

from onnxsmith.errors import PassError
from onnxsmith.opset_check import opset_mismatches
from onnxsmith.optimize import optimize_file
from onnxsmith.pipeline import StatsResult, apply

F = TensorProto.FLOAT


def build(nodes, inputs, outputs, inits=(), opset: int = 12) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def int64(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def unsqueeze(x: str, out: str, axes: list[int], opset: int) -> list[onnx.NodeProto]:
    """Unsqueeze as an exporter of `opset` writes it: axes an attribute before 13."""
    if opset < 13:
        return [helper.make_node("Unsqueeze", [x], [out], axes=axes)]
    axes_node = helper.make_node("Constant", [], [f"{out}_axes"], value=int64("", axes))
    return [axes_node, helper.make_node("Unsqueeze", [x, f"{out}_axes"], [out])]


def reshape_chain(opset: int) -> onnx.ModelProto:
    """PyTorch's `x.view(x.size(0), -1)`: Shape → Gather → Unsqueeze → Concat → Reshape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        *unsqueeze("batch", "batch1", [0], opset),
        helper.make_node("Concat", ["batch1", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
        helper.make_node("ReduceSum", ["y"], ["total"], axes=[1])
        if opset < 13
        else helper.make_node("ReduceSum", ["y", "sum_axes"], ["total"]),
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[2, 3], keepdims=0),
        helper.make_node("Squeeze", ["total"], ["flat"], axes=[1])
        if opset < 13
        else helper.make_node("Squeeze", ["total", "sum_axes"], ["flat"]),
    ]
    inits = [int64("zero", 0), int64("rest", [60]), int64("sum_axes", [1])]
    if opset < 13:
        inits.pop()
    return build(
        nodes,
        [helper.make_tensor_value_info("x", F, ["N", 3, 4, 5])],
        [
            helper.make_tensor_value_info("y", F, ["N", 60]),  # exporters declare this shape
            helper.make_tensor_value_info("flat", F, ["N"]),
            helper.make_tensor_value_info("mean", F, ["N", 3]),
        ],
        inits,
        opset,
    )


def sequence_model(opset: int, *, dynamic_split: bool) -> onnx.ModelProto:
    """SplitToSequence → SequenceAt, and ConcatFromSequence with new_axis=1."""
    nodes = [
        helper.make_node("SplitToSequence", ["x", "split"], ["seq"], axis=1),
        helper.make_node("SequenceAt", ["seq", "one"], ["second"]),
        helper.make_node("ConcatFromSequence", ["seq"], ["stacked"], axis=1, new_axis=1),
    ]
    inputs = [helper.make_tensor_value_info("x", F, [2, 6])]
    inits = [int64("one", 1)]
    if dynamic_split:
        inputs.append(helper.make_tensor_value_info("split", TensorProto.INT64, [3]))
    else:
        inits.append(int64("split", [1, 2, 3]))
    outputs = [helper.make_tensor_value_info("second", F, [2, "part"])]
    if not dynamic_split:  # ConcatFromSequence needs equal parts here
        nodes[0] = helper.make_node("SplitToSequence", ["x", "split"], ["seq"], axis=1)
        inits[-1] = int64("split", [2, 2, 2])
        outputs.append(helper.make_tensor_value_info("stacked", F, [2, 3, 2]))
    else:
        nodes.pop()
    return build(nodes, inputs, outputs, inits, opset)


def feed_for(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feed = {}
    for value in model.graph.input:
        dims = [d.dim_value or 2 for d in value.type.tensor_type.shape.dim]
        if value.type.tensor_type.elem_type == TensorProto.INT64:
            feed[value.name] = np.array([1, 2, 3], np.int64)
        else:
            feed[value.name] = rng.standard_normal(dims).astype(np.float32)
    return feed


def optimized(model: onnx.ModelProto, tmp_path: Path) -> tuple[onnx.ModelProto, Path, Path]:
    source = tmp_path / "in.onnx"
    onnx.save(model, source)
    output = tmp_path / "out.onnx"
    optimize_file(source, output)
    return onnx.load(output), source, output


def assert_same_outputs(source: Path, output: Path, feed: dict[str, np.ndarray]) -> None:
    want = create_session(source).run(None, feed)
    got = create_session(output).run(None, feed)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opset", [11, 12, 13])
def test_reshape_chain_keeps_opset_forms_and_parity(opset, tmp_path):
    model = reshape_chain(opset)
    result, source, output = optimized(model, tmp_path)
    assert result.opset_import[0].version == opset
    assert not opset_mismatches(ir.from_proto(result))
    reshapes = [n for n in result.graph.node if n.op_type == "Reshape"]
    assert reshapes and all(a.name != "allowzero" for n in reshapes for a in n.attribute)
    assert "Shape" not in {n.op_type for n in result.graph.node}  # the chain was still folded
    assert_same_outputs(source, output, feed_for(model))


@pytest.mark.parametrize("opset", [11, 12, 13])
def test_folded_sequences_keep_opset_forms(opset, tmp_path):
    model = sequence_model(opset, dynamic_split=False)
    result, source, output = optimized(model, tmp_path)
    ops = {n.op_type for n in result.graph.node}
    assert not {"SplitToSequence", "ConcatFromSequence"} & ops  # folded to Split (+Unsqueeze)
    assert not opset_mismatches(ir.from_proto(result))
    assert_same_outputs(source, output, feed_for(model))


@pytest.mark.parametrize("opset", [11, 12])
def test_split_sizes_known_only_at_run_time_are_not_folded_before_opset_13(opset, tmp_path):
    model = sequence_model(opset, dynamic_split=True)
    result, source, output = optimized(model, tmp_path)
    assert "SplitToSequence" in {n.op_type for n in result.graph.node}
    assert_same_outputs(source, output, feed_for(model))


def test_min_max_becomes_clip_with_attributes_before_opset_11(tmp_path):
    nodes = [
        helper.make_node("Min", ["x", "six"], ["low"]),
        helper.make_node("Max", ["low", "zero"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("six", 6), ("zero", 0))
    ]
    model = build(
        nodes,
        [helper.make_tensor_value_info("x", F, [2, 3])],
        [helper.make_tensor_value_info("y", F, [2, 3])],
        inits,
        10,
    )
    result, source, output = optimized(model, tmp_path)
    assert not opset_mismatches(ir.from_proto(result))
    feed = {"x": np.array([[-1, 3, 9], [0.5, 7, -8]], np.float32)}
    assert_same_outputs(source, output, feed)


@pytest.mark.parametrize("size, parts", [(7, 3), (8, 3), (6, 3)])
@pytest.mark.parametrize("opset", [12, 13])
def test_split_num_outputs_becomes_explicit_sizes(size, parts, opset):
    """Sizes as ONNX defines num_outputs: ceil(size / parts) each, the last chunk smaller."""
    outputs = [f"y{i}" for i in range(parts)]
    node = helper.make_node("Split", ["x"], outputs, axis=1, num_outputs=parts)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", F, [2, size])],
        [helper.make_tensor_value_info(o, F, [2, "part"]) for o in outputs],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feed = {"x": np.arange(2 * size, dtype=np.float32).reshape(2, size)}
    want = create_session(ir.from_proto(proto)).run(None, feed)
    proto.opset_import[0].version = opset  # the form the folder writes into an older graph
    model = ir.from_proto(proto)
    assert restore_opset_forms(model) == 1
    assert not opset_mismatches(model)
    got = create_session(model).run(None, feed)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_restoring_is_a_no_op_on_models_in_their_own_forms():
    for opset in (11, 12, 13):
        model = ir.from_proto(reshape_chain(opset))
        before = ir.to_proto(model).SerializeToString()
        assert restore_opset_forms(model) == 0
        assert ir.to_proto(model).SerializeToString() == before


@pytest.mark.parametrize("opset", [11, 12, 13])
def test_simplify_is_idempotent_on_old_opsets(opset):
    model = ir.from_proto(reshape_chain(opset))
    SimplifyPass()(model)
    once = ir.to_proto(model).SerializeToString()
    assert not SimplifyPass()(model).modified
    assert ir.to_proto(model).SerializeToString() == once


class AllowzeroPass(ir.passes.InPlacePass):
    """A pass with the bug the cleanup had: writes Reshape's opset-14 attribute at any opset."""

    def call(self, model: ir.Model) -> StatsResult:
        for node in model.graph:
            if node.op_type == "Reshape":
                node.attributes["allowzero"] = ir.AttrInt64("allowzero", 0)
        return StatsResult(model, modified=True)


def test_a_pass_writing_a_newer_form_is_named_and_stopped():
    model = ir.from_proto(reshape_chain(12))
    with pytest.raises(PassError, match=r"the model after AllowzeroPass is invalid: .*allowzero"):
        apply([*cleanup_passes()[:2], AllowzeroPass()], model)


def test_stale_declared_output_shape_does_not_reshape_the_output(tmp_path):
    """ddddocr's recognizer: the final Reshape's target is computed, making (T, N, C), but the
    output is declared (1, seqlen); onnxscript materialized the declaration as the target."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["t"], axis=0),
        helper.make_node("Gather", ["shape", "one"], ["n"], axis=0),
        *unsqueeze("t", "t1", [0], 12),
        *unsqueeze("n", "n1", [0], 12),
        helper.make_node("Concat", ["t1", "n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [int64("zero", 0), int64("one", 1), int64("minus_one", [-1])]
    model = build(
        nodes,
        [helper.make_tensor_value_info("x", F, ["T", "N", 2, 3])],
        [helper.make_tensor_value_info("y", F, [1, "seqlen"])],
        inits,
    )
    result, source, output = optimized(model, tmp_path)
    declared = result.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in declared] == [1, "seqlen"]  # interface kept
    feed = {"x": np.random.default_rng(0).standard_normal((5, 1, 2, 3)).astype(np.float32)}
    assert_same_outputs(source, output, feed)
