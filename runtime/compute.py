"""What a node costs in compute: its multiply-accumulates on a real feed.

Quantize's fallback ranks nodes by error per multiply-accumulate; structured pruning spends
channels where they remove compute for little error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.probe import ProbeSession, float_tensors

from onnxsmith.linear import constant

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def multiply_accumulates(
    model: ir.Model, nodes: Sequence[str], feed: Feed, label: str = "the model"
) -> dict[str, float]:
    """Multiply-accumulates of each node in `nodes` (Conv, ConvTranspose, Gemm, MatMul; a
    lookup counts its output) when `model` runs `feed`; `label` names the model in errors."""
    by_name = {node.name: node for node in model.graph}
    observable = set(float_tensors(model))
    wanted = [
        value.name
        for name in nodes
        for value in (by_name[name].inputs[0], by_name[name].outputs[0])
        if value is not None and value.name in observable
    ]
    values = ProbeSession(model, wanted).run(feed, label)

    def shape(value: ir.Value | None) -> tuple[int, ...] | None:
        known = constant(value)
        if known is None and value is not None and value.name in values:
            known = values[value.name]
        return None if known is None else tuple(known.shape)

    return {
        name: _count(by_name[name], shape(by_name[name].inputs[0]), shape(by_name[name].outputs[0]))
        for name in nodes
    }


def total_multiply_accumulates(model: ir.Model, feed: Feed, label: str = "the model") -> float:
    """Multiply-accumulates of all of `model`'s compute nodes (`COMPUTE_OPS`) on `feed`."""
    nodes = [node.name or "" for node in model.graph if node.op_type in COMPUTE_OPS]
    return sum(multiply_accumulates(model, nodes, feed, label).values()) if nodes else 0.0


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
