"""Small ONNX models for tests, built with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper


def to_ir(graph: onnx.GraphProto, opset: int = 13) -> ir.Model:
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def array(rng: np.random.Generator, name: str, *shape: int) -> TensorProto:
    return numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)


def mlp_with_batchnorm(seed: int = 0) -> ir.Model:
    """x[batch, 8] -> MatMul+Add -> BatchNormalization -> Relu -> MatMul -> y[batch, 4]."""
    rng = np.random.default_rng(seed)
    bn = [
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), "g"),
        numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "m"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), "v"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("BatchNormalization", ["hb", "g", "b", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [array(rng, "w1", 8, 16), array(rng, "b1", 16), array(rng, "w2", 16, 4), *bn],
    )
    return to_ir(graph)


def if_model(seed: int = 0) -> ir.Model:
    """y = cond ? (x @ W + Constant c) : Dropout(x @ W) — subgraphs with constants and dropout."""
    rng = np.random.default_rng(seed)
    const = numpy_helper.from_array(rng.normal(0, 1, 4).astype(np.float32), "c")
    then_graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c_then"], value=const),
            helper.make_node("MatMul", ["x", "w"], ["t0"]),
            helper.make_node("Add", ["t0", "c_then"], ["then_out"]),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, ["batch", 4])],
    )
    else_graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["e0"]),
            helper.make_node("Dropout", ["e0"], ["e1"]),
            helper.make_node("Identity", ["e1"], ["else_out"]),
        ],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, ["batch", 4])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph)],
        "if_model",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [array(rng, "w", 4, 4)],
    )
    return to_ir(graph)


def shared_weights_model(seed: int = 0) -> ir.Model:
    """Two identical weight tensors under different names, plus one weight used twice."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (4, 4)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w_a"], ["a"]),
        helper.make_node("MatMul", ["x", "w_b"], ["b"]),
        helper.make_node("MatMul", ["a", "w_shared"], ["a2"]),
        helper.make_node("MatMul", ["b", "w_shared"], ["b2"]),
        helper.make_node("Add", ["a2", "b2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(w, "w_a"),
            numpy_helper.from_array(w.copy(), "w_b"),
            array(rng, "w_shared", 4, 4),
        ],
    )
    return to_ir(graph)
