"""Keeps a graph output's stale declared shape away from the optimizer.

Exporters sometimes stamp a graph output with a shape the graph does not compute: ddddocr's
CNN + LSTM recognizer declares `(1, seqlen)` for an output its final `Reshape` makes
`(T, 1, C)`. onnxscript trusts declared shapes, so `MaterializeReshapeShape` replaced the
computed target shape with the declared one (`[1, -1]`) and the model's output changed. A
declaration is stale when ONNX shape inference, run without the graph outputs' declarations,
contradicts it (another rank, or another size on a known axis); only those are hidden, because
a declaration that agrees is information the optimizer may use (a `Reshape` fed by a
`Shape → Gather → Concat` chain folds to a constant through it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import onnx
import onnx_ir as ir


def _inferred_dims(graph: onnx.GraphProto, name: str) -> list | None:
    """The dims shape inference found for `name` (ints or None per axis), None if unknown.

    ONNX's `Reshape` inference gives up when the target shape is computed at run time, yet the
    output's rank is still the target's length; that is the case this module exists for.
    """
    shapes = {v.name: v.type for v in [*graph.value_info, *graph.output, *graph.input]}
    for init in graph.initializer:
        shapes.setdefault(init.name, onnx.helper.make_tensor_type_proto(1, init.dims))
    known = shapes.get(name)
    if known is not None and known.tensor_type.HasField("shape"):
        dims = known.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else None for d in dims]
    producer = next((n for n in graph.node if name in n.output), None)
    if producer is None or producer.op_type != "Reshape" or len(producer.input) < 2:
        return None
    target = _inferred_dims(graph, producer.input[1])
    if target is None or len(target) != 1 or target[0] is None:
        return None
    return [None] * target[0]


def _contradicts(declared: ir.Shape, inferred: list | None) -> bool:
    if inferred is None:
        return False
    if len(inferred) != len(declared):
        return True
    return any(
        isinstance(want, int) and got is not None and got != want
        for want, got in zip(declared, inferred, strict=True)
    )


def stale_output_shapes(model: ir.Model) -> list[int]:
    """Indices of the main graph's outputs whose declared shape the graph contradicts."""
    declared = {i: v.shape for i, v in enumerate(model.graph.outputs) if v.shape is not None}
    if not declared:
        return []
    proto = ir.serde.serialize_model(model)
    for output in proto.graph.output:
        output.type.tensor_type.ClearField("shape")
    try:
        graph = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True).graph
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        return []  # nothing to compare against: the declarations stay as they are
    return [
        i
        for i, output in enumerate(graph.output)
        if i in declared and _contradicts(declared[i], _inferred_dims(graph, output.name))
    ]


@contextlib.contextmanager
def hidden_stale_output_shapes(model: ir.Model, stale: list[int]) -> Iterator[None]:
    """Clears the declared shapes of outputs `stale` while the body runs, then puts them back.

    The model keeps the interface it came with; only the optimizer does not see it.
    """
    saved = {i: model.graph.outputs[i].shape for i in stale}
    for i in stale:
        model.graph.outputs[i].shape = None
    try:
        yield
    finally:
        for i, shape in saved.items():
            model.graph.outputs[i].shape = shape
