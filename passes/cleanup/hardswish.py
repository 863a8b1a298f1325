"""Fuses the decomposed hard-swish, x · Clip(x + 3, 0, 6) / 6, into one or two ops.

PaddlePaddle (every PP-OCR and PP-LCNet model) and older exporters write hard-swish as four
elementwise ops. From opset 14 it becomes `HardSwish(x)`; below, `x · HardSigmoid(x)` with
alpha 1/6 and beta 1/2 (the same function, opset 6+). Either way ORT runs one or two kernels
instead of four, and in an int8 model fewer float ops sit between a conv's dequantize and the
next quantize.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import RewriteRuleClassBase, RewriteRuleSet
from onnxscript.rewriter._basics import MatchResult
from onnxsmith.passes.cleanup.batchnorm import constant_array

from onnxsmith.pipeline import StatsResult

HARDSWISH_OPSET = 14


def _is_scalar(value: ir.Value, expected: float) -> bool:
    array = constant_array(value)
    return array is not None and array.size == 1 and bool(np.isclose(array.item(), expected))


class _DecomposedHardSwish(RewriteRuleClassBase):
    """Div(Mul(Clip(Add(x, 3), 0, 6), x), 6) -> HardSwish(x) or Mul(x, HardSigmoid(x))."""

    def __init__(self, native: bool) -> None:
        super().__init__(name="FuseHardSwish" if native else "FuseHardSigmoidMul")
        self.native = native

    def pattern(
        self, op: Any, x: ir.Value, three: ir.Value, low: ir.Value, high: ir.Value, six: ir.Value
    ) -> Any:
        return op.Div(op.Mul(op.Clip(op.Add(x, three), low, high), x), six)

    def check(
        self, op: Any, x: ir.Value, three: ir.Value, low: ir.Value, high: ir.Value, six: ir.Value
    ) -> MatchResult:
        result = MatchResult()
        expected = ((three, 3.0), (low, 0.0), (high, 6.0), (six, 6.0))
        if not all(value is not None and _is_scalar(value, want) for value, want in expected):
            return result.fail("not the constants 3, 0, 6 and 6 of a hard-swish")
        return result

    def rewrite(self, op: Any, x: ir.Value, **_: Any) -> Any:
        if self.native:
            return op.HardSwish(x)
        return op.Mul(x, op.HardSigmoid(x, alpha=1.0 / 6.0, beta=0.5))


class FuseHardSwishPass(ir.passes.InPlacePass):
    """Rewrites every decomposed hard-swish: `HardSwish` from opset 14, else x · HardSigmoid."""

    def call(self, model: ir.Model) -> StatsResult:
        native = model.opset_imports.get("", 1) >= HARDSWISH_OPSET
        rules = RewriteRuleSet(_DecomposedHardSwish.rule(native).commute())
        fused = rules.apply_to_model(model)
        return StatsResult(model, modified=fused > 0, stats={"fused": fused})
