"""Finds nodes that do not fit the schema of the model's ai.onnx opset (inputs, attributes).

The checks a pass can break without noticing: a node written in a newer operator form (an
attribute that became an input, an attribute added later) is refused by ONNX Runtime for the
whole model, long after the pass that wrote it has returned.
"""

from __future__ import annotations

import functools

import onnx
import onnx_ir as ir

DEFAULT_DOMAINS = ("", "ai.onnx")


@functools.lru_cache(maxsize=4096)
def _schema(op_type: str, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return None


def _mismatch(node: ir.Node, opset: int) -> str | None:
    schema = _schema(node.op_type, opset)
    if schema is None:
        return f"{node.op_type} does not exist at opset {opset}"
    inputs = len(node.inputs)
    while inputs and node.inputs[inputs - 1] is None:
        inputs -= 1
    if not schema.min_input <= inputs <= schema.max_input:
        return (
            f"{node.op_type} takes {schema.min_input}..{schema.max_input} inputs at opset "
            f"{opset}, has {inputs}"
        )
    unknown = sorted(set(node.attributes) - set(schema.attributes))
    if unknown:
        return f"{node.op_type} has no attribute {unknown[0]!r} at opset {opset}"
    return None


def ai_onnx_opset(model: ir.Model) -> int | None:
    """The model's ai.onnx opset, or None when it imports none."""
    return next((model.opset_imports[d] for d in DEFAULT_DOMAINS if d in model.opset_imports), None)


def opset_mismatches(model: ir.Model) -> dict[ir.Node, str]:
    """Node → what does not fit its schema, for ai.onnx nodes in every graph of `model`."""
    opset = ai_onnx_opset(model)
    if opset is None:
        return {}
    found: dict[ir.Node, str] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.domain in DEFAULT_DOMAINS:
            problem = _mismatch(node, opset)
            if problem is not None:
                found[node] = problem
    return found
