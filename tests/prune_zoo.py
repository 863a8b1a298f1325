"""Models with the channel structure pruning must follow, built with onnx.helper.

resnet_like: Conv→BN→Relu stem, an identity residual block and a strided block with a 1×1
projection shortcut (residual Adds tie channels across layers), GAP → Flatten → Gemm.
mobilenet_like: depthwise-separable blocks (depthwise convs follow their input channels) and a
squeeze-excitation gate (a Mul that ties the gate's channels to the features).
mlp: Gemm and MatMul+Add hidden layers.
transformer_block: multi-head attention (Reshape to heads, Transpose, Q·Kᵀ, softmax, ·V,
merge heads) and a GELU MLP, with residual Adds to the input and LayerNorms.
concat_flatten: a Concat of two conv branches and a Flatten of C×H×W into a Gemm.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def tensor(self, prefix: str, array: np.ndarray) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def ints(self, prefix: str, values: list[int]) -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: object) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{out}", **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, group: int = 1) -> str:
        scale = 1.0 / np.sqrt(cin // group * k * k)
        w = self.tensor("w", self.rng.normal(0, scale, (cout, cin // group, k, k)))
        b = self.tensor("b", self.rng.normal(0, 0.05, cout))
        pad = k // 2
        return self.node("Conv", [x, w, b], pads=[pad] * 4, strides=[stride, stride], group=group)

    def bn(self, x: str, c: int) -> str:
        params = [
            self.tensor("g", self.rng.uniform(0.5, 1.5, c)),
            self.tensor("beta", self.rng.normal(0, 0.1, c)),
            self.tensor("mean", self.rng.normal(0, 0.1, c)),
            self.tensor("var", self.rng.uniform(0.5, 1.5, c)),
        ]
        return self.node("BatchNormalization", [x, *params])

    def cbr(self, x: str, cin: int, cout: int, **kw: int) -> str:
        return self.node("Relu", [self.bn(self.conv(x, cin, cout, **kw), cout)])

    def gemm(self, x: str, n_in: int, n_out: int) -> str:
        w = self.tensor("fc", self.rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)))
        b = self.tensor("fcb", self.rng.normal(0, 0.05, n_out))
        return self.node("Gemm", [x, w, b], transB=1)

    def model(self, inputs: list, output: str, shape: list, opset: int = 13) -> ir.Model:
        self.nodes[-1].output[0] = output
        graph = helper.make_graph(
            self.nodes,
            "zoo",
            inputs,
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)],
            self.inits,
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        onnx.checker.check_model(proto)
        return ir.from_proto(proto)


def _image(channels: int = 3, side: int = 16) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, side, side])


def resnet_like(seed: int = 0) -> ir.Model:
    b = _Builder(seed)
    stem = b.cbr("x", 3, 16)
    y = b.bn(b.conv(b.cbr(stem, 16, 16), 16, 16), 16)
    block1 = b.node("Relu", [b.node("Add", [y, stem])])
    y = b.bn(b.conv(b.cbr(block1, 16, 32, stride=2), 32, 32), 32)
    shortcut = b.bn(b.conv(block1, 16, 32, k=1, stride=2), 32)
    block2 = b.node("Relu", [b.node("Add", [y, shortcut])])
    pooled = b.node("Flatten", [b.node("GlobalAveragePool", [block2])])
    b.gemm(pooled, 32, 10)
    return b.model([_image()], "logits", ["batch", 10])


def mobilenet_like(seed: int = 0) -> ir.Model:
    b = _Builder(seed)
    x = b.cbr("x", 3, 16)
    x = b.cbr(x, 16, 16, group=16)  # depthwise
    x = b.cbr(x, 16, 32, k=1)  # pointwise
    x = b.cbr(x, 32, 32, stride=2, group=32)
    features = b.node("Relu", [b.bn(b.conv(x, 32, 48, k=1), 48)])
    squeeze = b.node("Relu", [b.conv(b.node("GlobalAveragePool", [features]), 48, 8, k=1)])
    gate = b.node("HardSigmoid", [b.conv(squeeze, 8, 48, k=1)])
    x = b.node("Mul", [features, gate])
    x = b.cbr(x, 48, 48, group=48)
    x = b.cbr(x, 48, 64, k=1)
    pooled = b.node("Flatten", [b.node("GlobalAveragePool", [x])])
    b.gemm(pooled, 64, 10)
    return b.model([_image()], "logits", ["batch", 10])


def mlp(seed: int = 0) -> ir.Model:
    b = _Builder(seed)
    h = b.node("Relu", [b.gemm("x", 20, 64)])
    w = b.tensor("mm", b.rng.normal(0, 1 / 8, (64, 48)))
    bias = b.tensor("mmb", b.rng.normal(0, 0.05, 48))
    h = b.node("Relu", [b.node("Add", [b.node("MatMul", [h, w]), bias])])
    b.gemm(h, 48, 10)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 20])
    return b.model([x], "logits", ["batch", 10])


def transformer_block(seed: int = 0, embed: int = 32, heads: int = 4) -> ir.Model:
    b = _Builder(seed)
    size = embed // heads

    def linear(x: str, n_in: int, n_out: int) -> str:
        w = b.tensor("lw", b.rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)))
        bias = b.tensor("lb", b.rng.normal(0, 0.05, n_out))
        return b.node("Add", [b.node("MatMul", [x, w]), bias])

    def layernorm(x: str) -> str:
        scale = b.tensor("ln", b.rng.uniform(0.8, 1.2, embed))
        shift = b.tensor("lnb", b.rng.normal(0, 0.05, embed))
        return b.node("LayerNormalization", [x, scale, shift], axis=-1)

    split = b.ints("heads", [0, 0, heads, size])
    merge = b.ints("merge", [0, 0, embed])
    normed = layernorm("x")
    q = b.node(
        "Transpose", [b.node("Reshape", [linear(normed, embed, embed), split])], perm=[0, 2, 1, 3]
    )
    k = b.node(
        "Transpose", [b.node("Reshape", [linear(normed, embed, embed), split])], perm=[0, 2, 3, 1]
    )
    v = b.node(
        "Transpose", [b.node("Reshape", [linear(normed, embed, embed), split])], perm=[0, 2, 1, 3]
    )
    scores = b.node("Div", [b.node("MatMul", [q, k]), b.tensor("sqrt", np.array(np.sqrt(size)))])
    attended = b.node("MatMul", [b.node("Softmax", [scores], axis=-1), v])
    merged = b.node("Reshape", [b.node("Transpose", [attended], perm=[0, 2, 1, 3]), merge])
    x = b.node("Add", ["x", linear(merged, embed, embed)])
    hidden = linear(layernorm(x), embed, 4 * embed)
    gelu = b.node(
        "Mul",
        [
            b.node("Mul", [hidden, b.tensor("half", np.array(0.5))]),
            b.node(
                "Add",
                [
                    b.node("Erf", [b.node("Div", [hidden, b.tensor("rt2", np.array(np.sqrt(2)))])]),
                    b.tensor("one", np.array(1.0)),
                ],
            ),
        ],
    )
    b.node("Add", [x, linear(gelu, 4 * embed, embed)])
    tokens = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", embed])
    return b.model([tokens], "y", ["batch", "seq", embed], opset=17)


def concat_flatten(seed: int = 0) -> ir.Model:
    b = _Builder(seed)
    left = b.node("Relu", [b.conv("x", 3, 16)])
    right = b.node("Relu", [b.conv("x", 3, 24)])
    joined = b.node("Concat", [left, right], axis=1)
    x = b.node("Relu", [b.conv(joined, 40, 16, stride=2)])
    b.gemm(b.node("Flatten", [x]), 16 * 4 * 4, 10)
    return b.model([_image(side=8)], "logits", ["batch", 10])


def deep_cnn(seed: int = 0, depth: int = 12) -> ir.Model:
    """A plain stack of `depth` Conv→BN→Relu layers: as many refit levels as layers."""
    b = _Builder(seed)
    x = b.cbr("x", 3, 16)
    for _ in range(depth - 1):
        x = b.cbr(x, 16, 16)
    pooled = b.node("Flatten", [b.node("GlobalAveragePool", [x])])
    b.gemm(pooled, 16, 10)
    return b.model([_image()], "logits", ["batch", 10])
