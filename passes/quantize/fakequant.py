"""Static int8 simulated in float, for measuring one layer's error in isolation.

The search ranks fallback candidates by the error each one causes at the model's output when it
is the only int8 layer. Building that model with the real Q/DQ pass (ORT's quantizer over the
whole protobuf) costs about a second per layer; this pass edits the IR in place instead: a
QuantizeLinear → DequantizeLinear pair on the node's activation input, with the calibrated
range as the static pass would quantize it (uint8, asymmetric), and the weight rounded to ORT's
int8 grid. ORT fuses no integer kernel from a lone Q/DQ pair before a float weight, so the model
runs in float and differs from fp32 by exactly those two roundings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxsmith.passes.quantize.bias import constant
from onnxsmith.passes.quantize.names import NameScope
from onnxsmith.passes.quantize.plan import COMPUTE_OPS, activation_name, nodes_named, weight_of
from onnxsmith.passes.quantize.weights import static_grid, weight_axis

from onnxsmith.calibration import CalibrationTable
from onnxsmith.errors import PassError, name_list
from onnxsmith.pipeline import StatsResult

_U8_LEVELS = 255.0


def uint8_params(low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of ORT's asymmetric uint8 activations for the range [low, high]."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / _U8_LEVELS if high > low else 1.0
    zero_point = int(np.clip(np.rint(-low / scale), 0, 255))
    return np.asarray(scale, np.float32), np.asarray(zero_point, np.uint8)


class FakeQuantizePass(ir.passes.InPlacePass):
    """Rounds the activation input (to the table's uint8 range) and the weight (to its int8
    grid) of each of `nodes`, in float; other consumers of those tensors are untouched."""

    def __init__(
        self,
        table: CalibrationTable,
        nodes: Sequence[str],
        *,
        per_channel: bool = True,
        reduce_range: bool = False,
    ) -> None:
        super().__init__()
        self.table = table
        self.nodes = list(nodes)
        self.per_channel = per_channel
        self.reduce_range = reduce_range

    def call(self, model: ir.Model) -> StatsResult:
        named = nodes_named(model, self.nodes, "fake quantization")
        targets = [node for node in named if not _rounded(node)]
        unfit = [n.name or "" for n in targets if n.op_type not in COMPUTE_OPS or not n.inputs]
        if unfit:
            raise PassError(
                f"fake quantization: {name_list(unfit)} are not {name_list(COMPUTE_OPS)} nodes"
            )
        unranged = [n.name or "" for n in targets if activation_name(n) not in self.table.ranges]
        if unranged:
            raise PassError(
                f"fake quantization: no calibrated range for the inputs of {name_list(unranged)}"
                " — calibrate them first"
            )
        names = NameScope(model)
        rounded: dict[ir.Value, ir.Value] = {}
        for node in targets:
            x = node.inputs[0]
            assert x is not None  # activation_name found it in the table
            if x not in rounded:
                rounded[x] = self._round_trip(model, names, x, node)
            node.replace_input_with(0, rounded[x])
            weight = weight_of(node)
            if weight is not None:
                axis = weight_axis(node) if self.per_channel else None
                grid = static_grid(constant(weight), axis, reduce_range=self.reduce_range)
                fake = names.initializer(model.graph, f"{weight.name}_fq", grid)
                node.replace_input_with(1, fake)
        return StatsResult(model, modified=bool(targets), stats={"fake_quantized": len(targets)})

    def _round_trip(
        self, model: ir.Model, names: NameScope, x: ir.Value, before: ir.Node
    ) -> ir.Value:
        scale, zero_point = uint8_params(*self.table.ranges[x.name or ""])
        s = names.initializer(model.graph, f"{x.name}_fq_scale", scale)
        z = names.initializer(model.graph, f"{x.name}_fq_zero_point", zero_point)
        quantize = ir.node(
            "QuantizeLinear", [x, s, z], name=names.node(f"{x.name}_fq_q"), num_outputs=1
        )
        quantize.outputs[0].name = names.value(f"{x.name}_fq_q")
        dequantize = ir.node(
            "DequantizeLinear",
            [quantize.outputs[0], s, z],
            name=names.node(f"{x.name}_fq_dq"),
            num_outputs=1,
        )
        out = dequantize.outputs[0]
        out.name = names.value(f"{x.name}_fq")
        out.dtype, out.shape = ir.DataType.FLOAT, x.shape
        model.graph.insert_before(before, [quantize, dequantize])
        return out


def _rounded(node: ir.Node) -> bool:
    """Whether `node` was fake-quantized already (its input comes from a DequantizeLinear)."""
    first = node.inputs[0] if node.inputs else None
    producer = first.producer() if first is not None else None
    return producer is not None and producer.op_type == "DequantizeLinear"
