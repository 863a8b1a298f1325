"""The five kinds of test for each cleanup pass: applies, no-op, idempotent, parity, bad input.

Parity tolerance: atol 1e-5 / rtol 1e-5. BN folding multiplies weights by gamma/sqrt(var+eps)
ahead of the conv instead of after it, which reorders float32 roundings; with weights and data of
order 1 the differences stay near 1e-6, so 1e-5 catches any real error (a wrong channel or axis
gives errors of order 1).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from modelzoo import if_model, mlp_with_batchnorm, shared_weights_model
from onnxsmith.passes.cleanup import (
    FoldBatchNormPass,
    FuseConvAffinePass,
    RemoveDropoutPass,
    SimplifyPass,
    UpgradeOpsetPass,
    cleanup_passes,
)
from onnxsmith.passes.cleanup.shapes import DropIntermediateShapesPass
from onnxsmith.runtime.session import create_session

from onnxsmith.errors import PassError
from onnxsmith.pipeline import apply
from onnxsmith.samples import tiny_cnn

ATOL = RTOL = 1e-5


def outputs(model: ir.Model, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return create_session(model).run(None, feed)


def serialize(model: ir.Model) -> bytes:
    return ir.to_proto(model).SerializeToString()


def ops(model: ir.Model) -> list[str]:
    return [n.op_type for n in ir.traversal.RecursiveGraphIterator(model.graph)]


CNN_FEED = {"image": np.random.default_rng(1).normal(size=(3, 1, 8, 8)).astype(np.float32)}
MLP_FEED = {"x": np.random.default_rng(2).normal(size=(5, 8)).astype(np.float32)}


def lifted(model: ir.Model) -> ir.Model:
    return apply(cleanup_passes()[:1], model)[0]


class TestFoldBatchNorm:
    def test_folds_conv_and_matmul_add_with_parity(self):
        for model, feed in ((lifted(tiny_cnn()), CNN_FEED), (mlp_with_batchnorm(), MLP_FEED)):
            expected = outputs(model, feed)
            result = FoldBatchNormPass()(model)
            assert result.modified and result.stats["folded"] >= 1
            assert "BatchNormalization" not in ops(model)
            np.testing.assert_allclose(outputs(model, feed)[0], expected[0], atol=ATOL, rtol=RTOL)

    def test_no_batchnorm_is_a_no_op(self):
        model = shared_weights_model()
        before = serialize(model)
        assert not FoldBatchNormPass()(model).modified
        assert serialize(model) == before

    def test_idempotent(self):
        model = mlp_with_batchnorm()
        FoldBatchNormPass()(model)
        once = serialize(model)
        assert not FoldBatchNormPass()(model).modified
        assert serialize(model) == once

    def test_batchnorm_with_runtime_statistics_is_left_alone(self):
        model = mlp_with_batchnorm()
        bn = next(n for n in model.graph if n.op_type == "BatchNormalization")
        runtime_mean = ir.Value(
            name="mean_in", shape=ir.Shape([16]), type=ir.TensorType(ir.DataType.FLOAT)
        )
        model.graph.inputs.append(runtime_mean)
        bn.replace_input_with(3, runtime_mean)
        result = FoldBatchNormPass()(model)
        assert not result.modified and result.stats["left"] == 1


class TestRemoveDropout:
    def test_removes_inference_dropout_in_subgraphs_with_parity(self):
        model = if_model()
        feed = {"x": MLP_FEED["x"][:, :4], "cond": np.array(False)}
        expected = outputs(model, feed)
        result = RemoveDropoutPass()(model)
        assert result.stats["removed"] == 1 and "Dropout" not in ops(model)
        np.testing.assert_array_equal(outputs(model, feed)[0], expected[0])

    def test_no_dropout_is_a_no_op_and_idempotent(self):
        model = mlp_with_batchnorm()
        before = serialize(model)
        assert not RemoveDropoutPass()(model).modified
        assert serialize(model) == before

    def test_dropout_whose_mask_is_used_is_kept(self):
        model = tiny_cnn()
        dropout = next(n for n in model.graph if n.op_type == "Dropout")
        with_mask = ir.node("Dropout", inputs=[dropout.inputs[0]], num_outputs=2)
        model.graph.insert_after(dropout, with_mask)
        with_mask.outputs[1].name = "mask"
        model.graph.outputs.append(with_mask.outputs[1])
        result = RemoveDropoutPass()(model)
        assert result.stats == {"removed": 1, "kept_training_mode": 1}


class TestSimplify:
    def test_folds_a_constant_subexpression_with_parity(self):
        model = mlp_with_batchnorm()
        w1 = model.graph.initializers["w1"]
        transpose = ir.node("Transpose", inputs=[w1], attributes={"perm": [1, 0]})
        back = ir.node("Transpose", inputs=[transpose.outputs[0]], attributes={"perm": [1, 0]})
        model.graph.insert_before(model.graph[0], [transpose, back])
        model.graph[2].replace_input_with(1, back.outputs[0])
        expected = outputs(model, MLP_FEED)
        result = SimplifyPass()(model)
        assert result.modified
        assert "Transpose" not in ops(model)
        np.testing.assert_array_equal(outputs(model, MLP_FEED)[0], expected[0])
        assert not SimplifyPass()(model).modified  # idempotent

    def test_already_simplified_model_is_a_no_op(self):
        model, _ = apply(cleanup_passes(), tiny_cnn())
        before = serialize(model)
        assert not SimplifyPass()(model).modified
        assert serialize(model) == before


def conv_then(*steps: tuple[str, np.ndarray]) -> ir.Model:
    """tiny_cnn's first conv followed by constant (op, operand) steps, e.g. ("Mul", scale) then
    ("Add", bias): PaddlePaddle's conv bias, PP-LCNetV3's learnable affine."""
    model = lifted(tiny_cnn())
    last = next(n for n in model.graph if n.op_type == "Conv")
    for i, (op_type, operand) in enumerate(steps):
        const = ir.Value(name=f"operand{i}", const_value=ir.tensor(operand))
        model.graph.register_initializer(const)
        node = ir.node(op_type, inputs=[last.outputs[0], const])
        model.graph.insert_after(last, node)
        ir.convenience.replace_all_uses_with(last.outputs[0], node.outputs[0])
        node.replace_input_with(0, last.outputs[0])
        last = node
    return model


class TestFuseConvAffine:
    @pytest.mark.parametrize("shape", [(16, 1, 1), (1, 16, 1, 1), (1,), ()])
    def test_per_channel_offset_becomes_bias_with_parity(self, shape):
        offset = np.random.default_rng(3).normal(size=shape).astype(np.float32)
        model = conv_then(("Add", offset))
        expected = outputs(model, CNN_FEED)
        result = FuseConvAffinePass()(model)
        assert result.stats["fused"] == 1
        assert ops(model).count("Add") == 0
        np.testing.assert_allclose(outputs(model, CNN_FEED)[0], expected[0], atol=ATOL, rtol=RTOL)
        assert not FuseConvAffinePass()(model).modified  # idempotent

    @pytest.mark.parametrize("shape", [(16, 1, 1), (1,)])
    def test_scale_then_offset_fold_into_one_conv_with_parity(self, shape):
        rng = np.random.default_rng(4)
        scale = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        offset = rng.normal(size=shape).astype(np.float32)
        model = conv_then(("Mul", scale), ("Add", offset))
        expected = outputs(model, CNN_FEED)
        assert FuseConvAffinePass()(model).stats["fused"] == 2
        assert "Mul" not in ops(model) and ops(model).count("Add") == 0
        np.testing.assert_allclose(outputs(model, CNN_FEED)[0], expected[0], atol=ATOL, rtol=RTOL)

    def test_operands_varying_in_space_are_left_alone(self):
        model = conv_then(("Mul", np.ones((1, 16, 8, 8), np.float32)))
        before = serialize(model)
        assert not FuseConvAffinePass()(model).modified
        assert serialize(model) == before


class TestUpgradeOpset:
    def test_upgrades_with_parity(self):
        model = tiny_cnn(opset=11)
        expected = outputs(model, CNN_FEED)
        result = UpgradeOpsetPass(17)(model)
        assert result.modified and model.opset_imports[""] == 17
        np.testing.assert_array_equal(outputs(model, CNN_FEED)[0], expected[0])
        assert not UpgradeOpsetPass(17)(model).modified  # idempotent / no-op at target

    @pytest.mark.parametrize("target", [9, 99])
    def test_downgrade_or_unknown_opset_raises_and_leaves_model(self, target):
        model = tiny_cnn(opset=11)
        before = serialize(model)
        with pytest.raises(PassError, match="opset"):
            UpgradeOpsetPass(target)(model)
        assert serialize(model) == before

    def test_op_removed_at_target_is_named(self):
        model = tiny_cnn(opset=9)
        node = next(n for n in model.graph if n.op_type == "Relu")
        node.op_type = "Upsample"  # removed in opset 10
        before = serialize(model)
        with pytest.raises(PassError, match="Upsample"):
            UpgradeOpsetPass(13)(model)
        assert serialize(model) == before


class TestCleanupRecipe:
    @pytest.mark.parametrize(
        "build, feed",
        [
            (tiny_cnn, CNN_FEED),
            (mlp_with_batchnorm, MLP_FEED),
            (shared_weights_model, {"x": MLP_FEED["x"][:, :4]}),
            (if_model, {"x": MLP_FEED["x"][:, :4], "cond": np.array(True)}),
        ],
    )
    def test_parity_and_idempotence(self, build, feed):
        model = build()
        expected = outputs(model, feed)
        model, _ = apply(cleanup_passes(), model)
        for got, want in zip(outputs(model, feed), expected, strict=True):
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
        once = serialize(model)
        model, report = apply(cleanup_passes(), model)
        assert serialize(model) == once
        assert not any(p.modified and p.nodes_before != p.nodes_after for p in report.passes)

    def test_cnn_loses_batchnorm_dropout_identity_and_constants(self):
        model, report = apply(cleanup_passes(), tiny_cnn())
        assert not {"BatchNormalization", "Dropout", "Identity", "Constant"} & set(ops(model))
        assert report.passes[-1].name == "InferShapesPass"

    def test_identical_initializers_are_stored_once(self):
        model, _ = apply(cleanup_passes(), shared_weights_model())
        assert len(model.graph.initializers) == 2


def signature(model: ir.Model) -> list[tuple]:
    return [(v.name, v.dtype, v.shape) for v in (*model.graph.inputs, *model.graph.outputs)]


class TestDropIntermediateShapes:
    def test_drops_inner_shapes_keeps_the_interface_and_outputs(self):
        model = apply(cleanup_passes(), tiny_cnn())[0]  # ends with shape inference
        expected = outputs(model, CNN_FEED)
        interface = [
            (v.name, v.dtype, v.shape) for v in (*model.graph.inputs, *model.graph.outputs)
        ]
        result = DropIntermediateShapesPass()(model)
        assert result.modified and result.stats["shapes_dropped"] > 0
        assert not ir.to_proto(model).graph.value_info or all(
            v.name in model.graph.initializers for v in ir.to_proto(model).graph.value_info
        )
        assert [
            (v.name, v.dtype, v.shape) for v in (*model.graph.inputs, *model.graph.outputs)
        ] == (interface)
        np.testing.assert_array_equal(outputs(model, CNN_FEED)[0], expected[0])  # same graph

    def test_is_idempotent_and_a_no_op_without_inferred_shapes(self):
        model = apply(cleanup_passes(), tiny_cnn())[0]
        DropIntermediateShapesPass()(model)
        before = serialize(model)
        assert not DropIntermediateShapesPass()(model).modified
        assert serialize(model) == before

    def test_subgraph_outputs_keep_their_types(self):
        model = apply(cleanup_passes(), if_model())[0]
        DropIntermediateShapesPass()(model)
        for graph in model.graphs():
            assert all(v.type is not None for v in graph.outputs)
        create_session(model)  # still loads


def test_recipe_twice_on_the_same_model_object_gives_the_same_bytes():
    """Found by `make fuzz`: nodes the optimizer re-creates were numbered from a counter kept in
    the in-memory graph (node_Identity_1, then node_Identity_2) — same graph, other bytes."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 1, 3, 3])
    results = [
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", 1, 3, 3])
        for name in ("transpose1", "identity3")
    ]
    nodes = [
        onnx.helper.make_node("Transpose", ["x"], ["transpose1"], perm=[0, 1, 2, 3], name="n2"),
        onnx.helper.make_node("Identity", ["x"], ["identity3"], name="n4"),
    ]
    graph = onnx.helper.make_graph(nodes, "g", [x], results)
    model = ir.from_proto(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    )
    model, _ = apply(cleanup_passes(), model)
    once = serialize(model)
    model, _ = apply(cleanup_passes(), model)
    assert serialize(model) == once


def test_simplify_registers_every_constant_it_creates():
    """Found by `make fuzz`: two Flatten of one input became two Reshapes, the second reading a
    shape constant that was never added to the graph (the checker rejects the model)."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 1, 2])
    results = [
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", 2])
        for name in ("f1", "f2")
    ]
    nodes = [onnx.helper.make_node("Flatten", ["x"], [name], axis=1) for name in ("f1", "f2")]
    graph = onnx.helper.make_graph(nodes, "g", [x], results)
    model = ir.from_proto(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    )
    feed = {"x": np.random.default_rng(3).normal(size=(4, 1, 2)).astype(np.float32)}
    expected = outputs(model, feed)
    SimplifyPass()(model)
    onnx.checker.check_model(ir.to_proto(model), full_check=True)
    for got, want in zip(outputs(model, feed), expected, strict=True):
        np.testing.assert_array_equal(got, want)
