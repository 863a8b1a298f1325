"""Inferring and dropping the shapes of intermediate values (the model's `value_info`).

Shapes of intermediate tensors are optional in ONNX, and ONNX Runtime decides some fusions from
them: with every shape known it fuses Add + LayerNormalization into SkipLayerNormalization,
which on an AVX-512 Xeon runs MiniLM 10 % slower than the two ops it replaces (measured,
ORT 1.32). `quantize` times its result with and without them and keeps the faster one.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common

from onnxsmith.pipeline import StatsResult


class DropIntermediateShapesPass(ir.passes.InPlacePass):
    """Forgets the type and shape of every value that is not a graph input, output or weight."""

    def call(self, model: ir.Model) -> StatsResult:
        dropped = 0
        for graph in model.graphs():
            kept = {*graph.inputs, *graph.outputs, *graph.initializers.values()}
            for node in graph:
                for value in node.outputs:
                    if value in kept or (value.shape is None and value.type is None):
                        continue
                    value.shape, value.type = None, None
                    dropped += 1
        return StatsResult(model, modified=bool(dropped), stats={"shapes_dropped": dropped})


# Ops whose outputs are sequences or optionals, not tensors.
_NON_TENSOR_OUTPUTS = frozenset(
    {
        "Optional",
        "SequenceConstruct",
        "SequenceEmpty",
        "SequenceErase",
        "SequenceInsert",
        "SequenceMap",
        "SplitToSequence",
    }
)


class InferShapesPass(ir.passes.InPlacePass):
    """onnx_ir's `ShapeInferencePass` (non-strict), keeping sequence and optional types intact.

    onnx_ir 1.1 merges inferred types through `value.dtype`, which turns a value inferred as a
    sequence of float tensors into a float tensor; ONNX Runtime then refuses the whole model
    ("Type (tensor(float)) of output arg (seq) does not match expected type"). Types that were
    sequences stay so, and a sequence-producing op's untyped output stays untyped.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        values = [
            (value, value.type)
            for graph in model.graphs()
            for node in graph
            for value in node.outputs
            if node.op_type in _NON_TENSOR_OUTPUTS
            or (value.type is not None and not isinstance(value.type, ir.TensorType))
        ]
        result = common.ShapeInferencePass(strict_mode=False)(model)
        for value, original in values:
            if value.type != original:
                value.type = original
        return result
