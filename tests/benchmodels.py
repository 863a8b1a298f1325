"""Models and feeds for the bench tests: the same MatMul graph with and without extra work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from modelzoo import to_ir
from onnx import TensorProto, helper, numpy_helper

from onnxsmith.io import save_model

WIDTH = 256


def matmul_model(path: Path, *, extra: int = 0, seed: int = 0, width: int = WIDTH) -> Path:
    """x[batch, width] → MatMul → Relu → `extra` more MatMul+Relu → y[batch, width]."""
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    current = "x"
    for k in range(1 + extra):
        weight = rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{k}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{k}"], [f"m{k}"]))
        out = "y" if k == extra else f"r{k}"
        nodes.append(helper.make_node("Relu", [f"m{k}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "matmul_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        weights,
    )
    return save_model(to_ir(graph), path)


def fixed_batch_model(path: Path) -> Path:
    """x[1, 4] → Relu → y: no symbolic batch dim."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(proto, path)
    return path


def write_feeds(folder: Path, count: int = 4, *, width: int = WIDTH, seed: int = 0) -> Path:
    """`count` .npz feeds of x[1, width] in `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        np.savez(folder / f"{i:03d}.npz", x=rng.standard_normal((1, width)).astype(np.float32))
    return folder
