"""Traps users hit with the peer tools, each one a test (cleanup side; later verbs add theirs).

Parity tolerance 1e-5 absolute and relative: these transforms are exact up to float32
reassociation in folded BN weights (see test_cleanup_passes.py).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from modelzoo import to_ir
from onnx import TensorProto, helper, numpy_helper
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.runtime.session import create_session

from onnxsmith.pipeline import apply
from onnxsmith.samples import tiny_cnn
from onnxsmith.summary import summarize

rng = np.random.default_rng(0)
IMAGE = rng.normal(size=(2, 1, 8, 8)).astype(np.float32)


def run(model: ir.Model, feed: dict) -> list[np.ndarray]:
    return create_session(model).run(None, feed)


def test_weights_in_constant_nodes_become_initializers_and_fold():
    model = tiny_cnn()  # conv2.w and fc.b live in Constant nodes
    expected = run(model, {"image": IMAGE})
    model, _ = apply(cleanup_passes(), model)
    assert summarize(model).weights.by_location["constant_nodes"] == 0
    assert not [n for n in model.graph if n.op_type in ("Constant", "BatchNormalization")]
    np.testing.assert_allclose(run(model, {"image": IMAGE})[0], expected[0], rtol=1e-5, atol=1e-5)


def test_weight_shared_by_two_conv_batchnorm_pairs_is_not_corrupted():
    w = numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w")
    params = []
    nodes = []
    for branch in ("a", "b"):
        stats = [
            rng.uniform(0.5, 1.5, 4),
            rng.normal(0, 0.1, 4),
            rng.normal(0, 0.1, 4),
            rng.uniform(0.5, 1.5, 4),
        ]
        names = [f"{branch}.{k}" for k in ("g", "b", "m", "v")]
        params += [
            numpy_helper.from_array(s.astype(np.float32), n)
            for s, n in zip(stats, names, strict=True)
        ]
        nodes += [
            helper.make_node("Conv", ["x", "w"], [f"{branch}.c"], pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", [f"{branch}.c", *names], [f"{branch}.y"]),
        ]
    nodes.append(helper.make_node("Add", ["a.y", "b.y"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "shared_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8, 8])],
        [w, *params],
    )
    model = to_ir(graph)
    expected = run(model, {"x": IMAGE})
    model, _ = apply(cleanup_passes(), model)
    np.testing.assert_allclose(run(model, {"x": IMAGE})[0], expected[0], rtol=1e-5, atol=1e-5)


def test_initializers_listed_as_inputs_leave_the_interface():
    proto = ir.to_proto(tiny_cnn())
    for tensor in proto.graph.initializer:
        proto.graph.input.append(
            helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims)
        )
    onnx.checker.check_model(proto)
    model = ir.from_proto(proto)
    expected = run(model, {"image": IMAGE})
    model, _ = apply(cleanup_passes(), model)
    assert [v.name for v in model.graph.inputs] == ["image"]
    np.testing.assert_allclose(run(model, {"image": IMAGE})[0], expected[0], rtol=1e-5, atol=1e-5)


def test_old_opset_upgrades_for_quantization():
    model = tiny_cnn(opset=11)
    expected = run(model, {"image": IMAGE})
    model, _ = apply(cleanup_passes(opset=13), model)
    assert model.opset_imports[""] == 13
    np.testing.assert_allclose(run(model, {"image": IMAGE})[0], expected[0], rtol=1e-5, atol=1e-5)
