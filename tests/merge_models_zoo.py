"""Small members for the merge tests: CNNs at several opsets, pre/post-processing stages, a
model with a local function, and the reference combinations computed in plain numpy."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper
from onnxsmith.runtime.session import create_session

from onnxsmith.samples import tiny_cnn


def cnn(seed: int, opset: int = 13, *, input_name: str = "image", side: int = 8) -> ir.Model:
    """tiny_cnn (Constant-node weights, BN, Dropout), optionally with another input name/size."""
    model = tiny_cnn(seed=seed, opset=opset)
    model.graph.inputs[0].name = input_name
    model.graph.inputs[0].shape = ir.Shape(["batch", 1, side, side])
    return model


def probs_cnn(seed: int, opset: int = 13) -> ir.Model:
    """tiny_cnn whose output `probs` comes out of a Softmax."""
    model = tiny_cnn(seed=seed, opset=opset)
    logits = model.graph.outputs[0]
    node = ir.node("Softmax", [logits], {"axis": -1})
    model.graph.append(node)
    node.outputs[0].name = "probs"
    node.outputs[0].type = logits.type
    node.outputs[0].shape = logits.shape
    model.graph.outputs[0] = node.outputs[0]
    return model


def _model(nodes, inputs, outputs, opset, initializers=(), functions=()) -> ir.Model:
    graph = helper.make_graph(nodes, "stage", inputs, outputs, list(initializers))
    imports = [helper.make_opsetid("", opset)]
    if functions:
        imports.append(helper.make_opsetid("local", 1))
    proto = helper.make_model(graph, opset_imports=imports, functions=list(functions))
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    return ir.from_proto(proto)


def preprocess(opset: int = 17) -> ir.Model:
    """raw uint8 [batch, 1, 8, 8] -> image = raw / 16 - 0.5 (float32)."""
    return _model(
        [
            helper.make_node("Cast", ["raw"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["f", "scale"], ["s"]),
            helper.make_node("Sub", ["s", "half"], ["image"]),
        ],
        [helper.make_tensor_value_info("raw", TensorProto.UINT8, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        opset,
        [
            numpy_helper.from_array(np.array(1 / 16, np.float32), "scale"),
            numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        ],
    )


def postprocess(opset: int = 11, input_name: str = "logits") -> ir.Model:
    """logits [batch, 10] -> probs (Softmax) and label (ArgMax)."""
    return _model(
        [
            helper.make_node("Softmax", [input_name], ["probs"], axis=-1),
            helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0),
        ],
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["n", 10])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
        ],
        opset,
    )


def with_function(scale: float, opset: int = 13) -> ir.Model:
    """y = local.Scale(x): a model-local function whose body holds a constant."""
    body = [
        helper.make_node(
            "Constant", [], ["k"], value=numpy_helper.from_array(np.array(scale, np.float32))
        ),
        helper.make_node("Mul", ["a", "k"], ["b"]),
    ]
    function = helper.make_function(
        "local", "Scale", ["a"], ["b"], body, [helper.make_opsetid("", opset)]
    )
    return _model(
        [helper.make_node("Scale", ["x"], ["y"], domain="local")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        opset,
        functions=[function],
    )


def outputs(model: ir.Model, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return create_session(model).run(None, feed)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def vote_by_hand(scores: list[np.ndarray]) -> np.ndarray:
    """Row by row: most argmax votes; ties by higher mean score, then lower class index."""
    mean = np.mean(scores, axis=0)
    winners = []
    for row in range(mean.shape[0]):
        counts = Counter(int(np.argmax(s[row])) for s in scores)
        most = max(counts.values())
        tied = sorted(c for c, n in counts.items() if n == most)
        winners.append(max(tied, key=lambda c: (mean[row, c], -c)))
    return np.array(winners, np.int64)
