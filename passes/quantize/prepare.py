"""The prepare recipe: cleanup, opset >= 13 (per-channel QDQ needs it), names, shapes."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.passes.cleanup.opset import default_opset

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
        common.NameFixPass(),
    ]
