"""Small built-in models the demo and tests start from, so nothing needs the network."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper


def tiny_cnn(seed: int = 0, *, opset: int = 13, classes: int = 10) -> ir.Model:
    """A digits-sized CNN as exporters write them: Conv→BN→Relu→Dropout twice, pool, Gemm.

    Input `image` is float32 [batch, 1, 8, 8] with a symbolic batch; output `logits` [batch, 10].
    Half the weights sit in Constant nodes (as PaddlePaddle and old exporters store them).
    """
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> TensorProto:
        scale = 1.0 / np.sqrt(np.prod(shape[1:]) or 1)
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    def batchnorm_params(prefix: str, channels: int) -> list[TensorProto]:
        return [
            numpy_helper.from_array(
                rng.uniform(0.5, 1.5, channels).astype(np.float32), f"{prefix}.gamma"
            ),
            numpy_helper.from_array(
                rng.normal(0, 0.1, channels).astype(np.float32), f"{prefix}.beta"
            ),
            numpy_helper.from_array(
                rng.normal(0, 0.1, channels).astype(np.float32), f"{prefix}.mean"
            ),
            numpy_helper.from_array(
                rng.uniform(0.5, 1.5, channels).astype(np.float32), f"{prefix}.var"
            ),
        ]

    initializers = [weight("conv1.w", 16, 1, 3, 3), weight("fc.w", classes, 32)]
    initializers += batchnorm_params("bn1", 16) + batchnorm_params("bn2", 32)
    constant_weights = [weight("conv2.w", 32, 16, 3, 3), weight("fc.b", classes)]
    nodes = [helper.make_node("Constant", [], [t.name], value=t) for t in constant_weights]
    nodes += [
        helper.make_node("Conv", ["image", "conv1.w"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c1", "bn1.gamma", "bn1.beta", "bn1.mean", "bn1.var"], ["b1"]
        ),
        helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("Dropout", ["r1"], ["d1"]),
        helper.make_node("Conv", ["d1", "conv2.w"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node(
            "BatchNormalization", ["c2", "bn2.gamma", "bn2.beta", "bn2.mean", "bn2.var"], ["b2"]
        ),
        helper.make_node("Relu", ["b2"], ["r2"]),
        helper.make_node("Identity", ["r2"], ["i2"]),
        helper.make_node("GlobalAveragePool", ["i2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.producer_name = "onnxsmith.samples"
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)
