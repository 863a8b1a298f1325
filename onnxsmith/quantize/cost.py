"""What each int8 node is worth in speed: its multiply-accumulates on a real feed.

The fallback sends the most sensitive nodes back to float. Ranked by error alone, it can return
a heavy convolution whose error a few light ones would have bought back: the accuracy is met,
the speed is given away. Dividing a node's error by its compute ranks the cheap sensitive nodes
first; the search tries both orders and keeps the plan that leaves the least compute in float.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.linear import constant
from onnxsmith.passes.quantize import activation_name
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.probe import ProbeSession


def multiply_accumulates(model: ir.Model, nodes: Sequence[str], feed: Feed) -> dict[str, float]:
    """Multiply-accumulates of each node in `nodes` (Conv, ConvTranspose, Gemm, MatMul; a
    lookup counts its output) when `model` runs `feed`."""
    by_name = {node.name: node for node in model.graph}
    pairs = {
        name: (_contracted(by_name[name]), by_name[name].outputs[0].name or "") for name in nodes
    }
    values = ProbeSession(model, [t for pair in pairs.values() for t in pair if t]).run(
        feed, "quantize: the fp32 model"
    )
    return {name: _count(by_name[name], values.get(x), values[y]) for name, (x, y) in pairs.items()}


def _contracted(node: ir.Node) -> str:
    """The input whose shape the count needs beyond the output's ("" for none)."""
    return activation_name(node) if node.op_type in ("ConvTranspose", "Gemm", "MatMul") else ""


def _count(node: ir.Node, x: np.ndarray | None, y: np.ndarray) -> float:
    weight = constant(node.inputs[1]) if len(node.inputs) > 1 else None
    if node.op_type == "Conv" and weight is not None:
        return float(y.size) * weight.size / weight.shape[0]
    if node.op_type == "ConvTranspose" and weight is not None and x is not None:
        return float(x.size) * weight.size / weight.shape[0]
    if node.op_type in ("Gemm", "MatMul") and x is not None:
        transposed = node.op_type == "Gemm" and bool(node.attributes.get_int("transA", 0))
        return float(y.size) * x.shape[0 if transposed else -1]
    return float(y.size)
