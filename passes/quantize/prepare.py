"""The prepare recipe: cleanup, opset >= 13 (per-channel QDQ needs it), 1-D Gemm biases,
names, shapes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.passes.cleanup.opset import default_opset

from onnxsmith.pipeline import StatsResult

# DequantizeLinear gained `axis` (per-channel) in opset 13; ORT's quantize_static writes it into
# older models anyway and produces an invalid file.
MIN_OPSET = 13


def prepare_passes(model: ir.Model) -> list[ir.passes.PassBase]:
    """The cleanup recipe with an opset upgrade to >= 13, plus names for unnamed nodes.

    Shape inference is onnx's, non-strict: it leaves symbolic dims symbolic and skips what it
    cannot infer, where ORT's symbolic shape inference (`quant_pre_process`) aborts.
    """
    current = default_opset(model)
    return [
        *cleanup_passes(opset=MIN_OPSET if current < MIN_OPSET else None),
        FlattenGemmBiasPass(),
        common.NameFixPass(),
    ]


class FlattenGemmBiasPass(ir.passes.InPlacePass):
    """Gives every Gemm a constant bias of shape (N,) where it has one of shape (1, N), (1,),
    () or (1, 1): exact, since Gemm broadcasts C over (M, N) the same way.

    ORT's per-channel static quantizer indexes the bias as a vector of N and fails on the
    others (`The truth value of an array ... is ambiguous`, `index 1 is out of bounds`). A
    bias shared with other nodes is copied rather than changed.
    """

    def call(self, model: ir.Model) -> StatsResult:
        flattened = 0
        for node in model.graph:
            if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 3:
                continue
            weight, bias = node.inputs[1], node.inputs[2]
            if weight is None or weight.shape is None or bias is None or bias.is_graph_input():
                continue
            if bias.const_value is None or bias.shape is None or len(weight.shape) != 2:
                continue
            channels = weight.shape[0 if node.attributes.get_int("transB", 0) else 1]
            shape = tuple(bias.shape)
            if not isinstance(channels, int) or shape not in ((1, channels), (1,), (), (1, 1)):
                continue
            array = np.broadcast_to(bias.const_value.numpy().reshape(-1), (channels,)).copy()
            if len(bias.uses()) == 1 and not bias.is_graph_output():
                bias.const_value = ir.tensor(array, name=bias.name)
                bias.shape = ir.Shape([channels])
            else:
                flat = ir.Value(
                    name=f"{bias.name}_flat_{node.name}",
                    shape=ir.Shape([channels]),
                    type=bias.type,
                    const_value=ir.tensor(array, name=f"{bias.name}_flat_{node.name}"),
                )
                model.graph.register_initializer(flat)
                node.replace_input_with(2, flat)
            flattened += 1
        return StatsResult(model, modified=bool(flattened), stats={"flattened": flattened})
