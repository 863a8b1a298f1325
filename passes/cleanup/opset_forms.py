"""Puts operators back into the form the model's opset defines.

onnxscript's optimizer and rewriter build replacement nodes in the newest operator forms whatever
the model's opset: `MaterializeReshapeShape` writes `Reshape(..., allowzero=1)` (opset 14+),
`UnsqueezeUnsqueeze` and the folding of `ConcatFromSequence` write `Unsqueeze(x, axes)` with the
axes as an input (opset 13+), the folding of `SplitToSequence` writes `Split(x, split)` (13+) or
`Split(num_outputs=n)` (18+), `MinMaxToClip` writes `Clip(x, min, max)` (11+). ONNX Runtime
refuses such a node in an older graph, so every rewrite they make is mapped back here, to the
attribute form of the model's opset, whenever the moved operand is a constant (it always is
for those rewrites). The one fold that cannot be mapped back, `SplitToSequence` with split sizes
computed at run time before opset 13, is refused: `hidden_from_optimizer` keeps those nodes out
of onnxscript's sight. Anything else that slips through is caught by the pipeline's schema check,
which names the pass and the node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import onnx_ir as ir

from onnxsmith.opset_check import DEFAULT_DOMAINS, ai_onnx_opset

_REDUCE_18 = (
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
)
# op → (first opset taking the operand as an input, the attribute it was before)
_AXES_OR_SPLIT: dict[str, tuple[int, str]] = {
    "Unsqueeze": (13, "axes"),
    "Squeeze": (13, "axes"),
    "ReduceSum": (13, "axes"),
    "Split": (13, "split"),
    **{op: (18, "axes") for op in _REDUCE_18},
}
_CLIP_INPUTS = 11  # Clip took min and max as float attributes before opset 11
_RESHAPE_ALLOWZERO = 14
_SPLIT_NUM_OUTPUTS = 18
# A domain no optimizer knows: onnxscript neither folds nor rewrites nodes of unknown domains.
_HIDDEN_DOMAIN = "onnxsmith.hidden"


def _constant(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def _move_input_to_attribute(node: ir.Node, attribute: str) -> bool:
    """`op(x, c)` → `op(x, attribute=c)` for a constant 1-D integer operand `c`."""
    data = _constant(node.inputs[1]) if len(node.inputs) > 1 else None
    if data is None or data.ndim > 1:
        return False
    node.attributes[attribute] = ir.AttrInt64s(attribute, [int(v) for v in data.reshape(-1)])
    node.replace_input_with(1, None)
    node.resize_inputs(1)
    return True


def _clip_to_attributes(node: ir.Node) -> bool:
    """`Clip(x, min, max)` → `Clip(x, min=…, max=…)` (opset < 11 holds only float bounds)."""
    bounds: dict[str, float] = {}
    for name, value in zip(("min", "max"), node.inputs[1:], strict=False):
        data = _constant(value)
        if value is not None and (data is None or data.size != 1):
            return False
        if data is not None:
            bounds[name] = float(data.reshape(-1)[0])
    for name, bound in bounds.items():
        node.attributes[name] = ir.AttrFloat32(name, bound)
    for index in range(1, len(node.inputs)):
        node.replace_input_with(index, None)
    node.resize_inputs(1)
    return True


def _drop_allowzero(node: ir.Node) -> bool:
    """Drops `allowzero` where it changes nothing: 0 or a constant shape without a 0."""
    if node.attributes.get_int("allowzero", 0):
        shape = _constant(node.inputs[1]) if len(node.inputs) > 1 else None
        if shape is None or (shape == 0).any():
            return False
    del node.attributes["allowzero"]
    return True


def _split_sizes(node: ir.Node) -> list[int] | None:
    """The chunk sizes `Split(num_outputs=n)` produces (ceil division, last chunk smaller)."""
    x = node.inputs[0]
    axis = node.attributes.get_int("axis", 0)
    if x is None or x.shape is None or not -len(x.shape) <= axis < len(x.shape):
        return None
    size, parts = x.shape[axis], node.attributes.get_int("num_outputs", 0)
    if not isinstance(size, int) or parts <= 0:
        return None
    chunk = -(-size // parts)
    sizes = [chunk] * (size // chunk) + ([size % chunk] if size % chunk else [])
    return sizes if len(sizes) == len(node.outputs) else None


def _num_outputs_to_split(node: ir.Node, graph: ir.Graph, opset: int) -> bool:
    """`Split(num_outputs=n)` → explicit sizes: an attribute below 13, an input from 13."""
    sizes = _split_sizes(node)
    if sizes is None:
        return False
    del node.attributes["num_outputs"]
    if opset < _AXES_OR_SPLIT["Split"][0]:
        node.attributes["split"] = ir.AttrInt64s("split", sizes)
        return True
    value = ir.Value(
        name=f"{node.outputs[0].name}_sizes", const_value=ir.tensor(sizes, ir.DataType.INT64)
    )
    graph.register_initializer(value)
    node.resize_inputs(2)
    node.replace_input_with(1, value)
    return True


def _restore(node: ir.Node, graph: ir.Graph, opset: int) -> bool:
    op = node.op_type
    if op in _AXES_OR_SPLIT and opset < _AXES_OR_SPLIT[op][0] and len(node.inputs) > 1:
        return _move_input_to_attribute(node, _AXES_OR_SPLIT[op][1])
    if op == "Split" and opset < _SPLIT_NUM_OUTPUTS and "num_outputs" in node.attributes:
        return _num_outputs_to_split(node, graph, opset)
    if op == "Clip" and opset < _CLIP_INPUTS and len(node.inputs) > 1:
        return _clip_to_attributes(node)
    if op == "Reshape" and opset < _RESHAPE_ALLOWZERO and "allowzero" in node.attributes:
        return _drop_allowzero(node)
    return False


def restore_opset_forms(model: ir.Model) -> int:
    """Rewrites nodes written in a form newer than the model's opset back; returns how many.

    Only the moves that are exact are made (constant operands, known split sizes, `allowzero`
    without a zero in the shape); anything else stays as it is.
    """
    opset = ai_onnx_opset(model)
    if opset is None:
        return 0
    restored = 0
    for graph in model.graphs():
        for node in graph:
            if node.domain in DEFAULT_DOMAINS and _restore(node, graph, opset):
                restored += 1
    return restored


def _unmappable_folds(model: ir.Model, opset: int) -> list[ir.Node]:
    """Nodes whose onnxscript fold yields a form `restore_opset_forms` cannot map back."""
    if opset >= _AXES_OR_SPLIT["Split"][0]:
        return []
    return [
        node
        for node in ir.traversal.RecursiveGraphIterator(model.graph)
        if node.op_type == "SplitToSequence"
        and node.domain in DEFAULT_DOMAINS
        and len(node.inputs) > 1
        and _constant(node.inputs[1]) is None
    ]


@contextlib.contextmanager
def hidden_from_optimizer(model: ir.Model) -> Iterator[None]:
    """Moves the nodes onnxscript would rewrite into an unmappable form to a private domain.

    Restored on exit, so the model leaves as it came apart from what the optimizer did.
    """
    opset = ai_onnx_opset(model)
    nodes = [] if opset is None else _unmappable_folds(model, opset)
    domains = [node.domain for node in nodes]
    for node in nodes:
        node.domain = _HIDDEN_DOMAIN
    try:
        yield
    finally:
        for node, domain in zip(nodes, domains, strict=True):
            node.domain = domain
