"""Small models and data dirs for the quantize tests, built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper


def mlp(seed: int = 0, *, outlier: float = 1.0, opset: int = 17) -> ir.Model:
    """x[batch, seq, 16] → LayerNorm → fc1 → Relu → ×gain → fc2 → fc3 → y[batch, seq, 8].

    `gain` multiplies channel 0 of fc2's input by `outlier` (1: no outlier), the activation
    outlier SmoothQuant exists for; fc1/fc2/fc3 are MatMuls with constant weights.
    """
    rng = np.random.default_rng(seed)
    gain = np.ones(32, np.float32)
    gain[0] = outlier
    fc2 = rng.normal(0, 0.3, (32, 16)).astype(np.float32)
    fc2[0] /= outlier  # keeps the output's scale: the outlier lives in the activation only
    inits = [
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), "ln.g"),
        numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "ln.b"),
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 32)).astype(np.float32), "fc1.w"),
        numpy_helper.from_array(gain, "gain"),
        numpy_helper.from_array(fc2, "fc2.w"),
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 8)).astype(np.float32), "fc3.w"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln.g", "ln.b"], ["n"], name="ln", axis=-1),
        helper.make_node("MatMul", ["n", "fc1.w"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["r1"], name="act"),
        helper.make_node("Mul", ["r1", "gain"], ["g1"], name="scale"),
        helper.make_node("MatMul", ["g1", "fc2.w"], ["h2"], name="fc2"),
        helper.make_node("MatMul", ["h2", "fc3.w"], ["y"], name="fc3"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def elementwise_only() -> ir.Model:
    """x → Add(c) → Relu → y: nothing to quantize."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "c"], ["a"], name="add"),
            helper.make_node("Relu", ["a"], ["y"], name="relu"),
        ],
        "elementwise",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.ones(4, np.float32), "c")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return ir.from_proto(proto)


# Three MatMul branches summed: one wide (64 inputs, 8x the compute) and two narrow (4 inputs).
# Each branch's input has an outlier channel (its weight row scaled down to match), so each
# costs accuracy in static int8; with these outliers the wide branch costs the most.
BRANCH_WIDTHS = (64, 4, 4)
BRANCH_OUTLIERS = (32.0, 26.0, 26.0)


def branches() -> ir.Model:
    """x0[batch, 64], x1[batch, 4], x2[batch, 4] → MatMul fc0/fc1/fc2 → Sum → y[batch, 8]."""
    rng = np.random.default_rng(0)
    inits, nodes, inputs = [], [], []
    for i, (width, outlier) in enumerate(zip(BRANCH_WIDTHS, BRANCH_OUTLIERS, strict=True)):
        weight = rng.normal(0, 1 / np.sqrt(width), (width, 8)).astype(np.float32)
        weight[0] /= outlier
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        inputs.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["batch", width]))
        nodes.append(helper.make_node("MatMul", [f"x{i}", f"w{i}"], [f"y{i}"], name=f"fc{i}"))
    nodes.append(helper.make_node("Sum", ["y0", "y1", "y2"], ["y"], name="sum"))
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    graph = helper.make_graph(nodes, "branches", inputs, [output], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def branch_feeds(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Feeds for `branches`: normal inputs with each branch's outlier channel."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        feed = {}
        for i, (width, outlier) in enumerate(zip(BRANCH_WIDTHS, BRANCH_OUTLIERS, strict=True)):
            x = rng.normal(0, 1, (16, width)).astype(np.float32)
            x[:, 0] *= outlier
            feed[f"x{i}"] = x
        feeds.append(feed)
    return feeds


def sequence_feeds(count: int, seed: int = 0, *, width: int = 16) -> list[dict[str, np.ndarray]]:
    """Feeds for `mlp` with varying batch and sequence length (as tokenized text has)."""
    rng = np.random.default_rng(seed)
    return [
        {
            "x": rng.normal(
                0, 1, (int(rng.integers(1, 4)), int(rng.integers(3, 20)), width)
            ).astype(np.float32)
        }
        for _ in range(count)
    ]


def image_feeds(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Feeds for `onnxsmith.samples.tiny_cnn`: float images [batch, 1, 8, 8] in [0, 1]."""
    rng = np.random.default_rng(seed)
    return [
        {"image": rng.uniform(0, 1, (int(rng.integers(1, 5)), 1, 8, 8)).astype(np.float32)}
        for _ in range(count)
    ]


def write_feeds(folder: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, feed in enumerate(feeds):
        np.savez(folder / f"{i:03d}.npz", **feed)
    return folder


def embedding(seed: int = 0) -> ir.Model:
    """ids[batch, seq] → Gather(table 128×64) → fc → y[batch, seq, 8]: an embedding lookup."""
    rng = np.random.default_rng(seed)
    table = rng.normal(0, 1, (128, 64)).astype(np.float32) * rng.uniform(0.1, 3, (128, 1))
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["e"], name="embed", axis=0),
            helper.make_node("MatMul", ["e", "fc.w"], ["y"], name="fc"),
        ],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])],
        [
            numpy_helper.from_array(table.astype(np.float32), "table"),
            numpy_helper.from_array(rng.normal(0, 0.3, (64, 8)).astype(np.float32), "fc.w"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def digit_feeds(count: int, *, batch: int = 8, start: int = 0) -> list[dict[str, np.ndarray]]:
    """Real handwritten digits (scikit-learn, 8x8 in [0, 1]) as feeds for `tiny_cnn`."""
    from sklearn.datasets import load_digits

    images = (load_digits().images / 16.0).astype(np.float32)[:, None]
    return [{"image": images[start + i * batch : start + (i + 1) * batch]} for i in range(count)]
