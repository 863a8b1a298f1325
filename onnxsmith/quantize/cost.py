"""What each int8 node is worth in speed: its multiply-accumulates on a real feed.

The fallback sends the most sensitive nodes back to float. Ranked by error alone, it can return
a heavy convolution whose error a few light ones would have bought back: the accuracy is met,
the speed is given away. Dividing a node's error by its compute ranks the cheap sensitive nodes
first; the search tries both orders and keeps the plan measured faster (`Search.fall_back`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.linear import constant
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.probe import ProbeSession, float_tensors


def multiply_accumulates(model: ir.Model, nodes: Sequence[str], feed: Feed) -> dict[str, float]:
    """Multiply-accumulates of each node in `nodes` (Conv, ConvTranspose, Gemm, MatMul; a
    lookup counts its output) when `model` runs `feed`."""
    by_name = {node.name: node for node in model.graph}
    observable = set(float_tensors(model))
    wanted = [
        value.name
        for name in nodes
        for value in (by_name[name].inputs[0], by_name[name].outputs[0])
        if value is not None and value.name in observable
    ]
    values = ProbeSession(model, wanted).run(feed, "quantize: the fp32 model")

    def shape(value: ir.Value | None) -> tuple[int, ...] | None:
        known = constant(value)
        if known is None and value is not None and value.name in values:
            known = values[value.name]
        return None if known is None else tuple(known.shape)

    return {
        name: _count(by_name[name], shape(by_name[name].inputs[0]), shape(by_name[name].outputs[0]))
        for name in nodes
    }


def _count(node: ir.Node, x: tuple[int, ...] | None, y: tuple[int, ...] | None) -> float:
    """Multiply-accumulates from the shapes of the first input `x` and the output `y`."""
    outputs = float(np.prod(y)) if y is not None else 0.0
    weight = constant(node.inputs[1]) if len(node.inputs) > 1 else None
    if node.op_type == "Conv" and weight is not None:
        return outputs * weight.size / weight.shape[0]
    if node.op_type == "ConvTranspose" and weight is not None and x is not None:
        return float(np.prod(x)) * weight.size / weight.shape[0]
    if node.op_type in ("Gemm", "MatMul") and x is not None:
        transposed = node.op_type == "Gemm" and bool(node.attributes.get_int("transA", 0))
        return outputs * x[0 if transposed else -1]
    return outputs
