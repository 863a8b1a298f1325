"""Folds per-channel constant Muls and Adds after Conv into the Conv's weight and bias.

PaddlePaddle exports (all PP-OCR models) write `Conv` without bias followed by `Add(bias)`, and
PP-LCNetV3 backbones (PP-OCRv4) a learnable affine `Mul(scale)`, `Add(bias)` after each conv;
onnxscript's affine rule only takes scalar offsets. ORT folds these into fp32 convs when it
loads a model, but not into an int8 conv whose output is quantized before the Mul.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import RewriteRuleClassBase, RewriteRuleSet
from onnxscript.rewriter._basics import MatchResult
from onnxsmith.passes.cleanup.batchnorm import constant_array

from onnxsmith.pipeline import StatsResult


def _channel_offset(offset: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """`offset` as a (channels,) vector if it only varies along axis 1 of a rank-`rank` output."""
    if offset.ndim > rank:
        return None
    full = (1,) * (rank - offset.ndim) + offset.shape
    if any(size != 1 for axis, size in enumerate(full) if axis != 1):
        return None
    if full[1] not in (1, channels):
        return None
    return np.broadcast_to(offset.reshape(-1), (channels,))


class _FuseIntoConv(RewriteRuleClassBase):
    """Add(Conv(x, W[, b]), C) -> Conv(x, W, b + C) and Mul(Conv(x, W[, b]), S) ->
    Conv(x, W·S, b·S), for C and S constant per output channel (or scalars)."""

    def __init__(self, op_type: str) -> None:
        super().__init__(name=f"Fuse{op_type}IntoConv")
        self.op_type = op_type

    def pattern(self, op: Any, x: ir.Value, operand: ir.Value) -> Any:
        conv = op.Conv(x, _allow_other_inputs=True, _outputs=["conv_out"])
        return getattr(op, self.op_type)(conv, operand)

    def check(self, op: Any, *args: Any, **values: Any) -> MatchResult:
        result = MatchResult()
        conv = values["conv_out"].producer()
        weight = constant_array(conv.inputs[1])
        operand = constant_array(values["operand"])
        if weight is None or operand is None or operand.dtype != weight.dtype:
            return result.fail("weight or operand is not a constant of the conv's dtype")
        if self.op_type == "Mul" and len(conv.inputs[1].uses()) != 1:
            return result.fail("conv weight is shared")
        bias = conv.inputs[2] if len(conv.inputs) > 2 else None
        if bias is not None and (constant_array(bias) is None or len(bias.uses()) != 1):
            return result.fail("conv bias is not a constant used only here")
        if len(values["conv_out"].uses()) != 1 or values["conv_out"].is_graph_output():
            return result.fail("conv output has other users")
        if _channel_offset(operand, weight.shape[0], weight.ndim) is None:
            return result.fail("operand is not per output channel")
        return result

    def rewrite(self, op: Any, *args: Any, **values: Any) -> Any:
        conv = values["conv_out"].producer()
        weight = constant_array(conv.inputs[1])
        operand = constant_array(values["operand"])
        old_bias = conv.inputs[2] if len(conv.inputs) > 2 else None
        bias = constant_array(old_bias)
        assert weight is not None and operand is not None  # guaranteed by check()
        channel = _channel_offset(operand, weight.shape[0], weight.ndim)
        assert channel is not None
        new_weight = conv.inputs[1]
        if self.op_type == "Mul":
            scaled = weight * channel.reshape((-1,) + (1,) * (weight.ndim - 1))
            new_weight = op.initializer(
                ir.tensor(scaled.astype(weight.dtype)), name=f"{conv.inputs[1].name}_scaled"
            )
            if bias is None:
                return op.Conv(values["x"], new_weight, **conv.attributes)
            new_bias = bias * channel
        else:
            new_bias = (0 if bias is None else bias) + channel
        bias_value = op.initializer(
            ir.tensor(np.asarray(new_bias, weight.dtype)),
            name=old_bias.name if old_bias is not None else f"{conv.inputs[1].name}_bias",
        )
        return op.Conv(values["x"], new_weight, bias_value, **conv.attributes)


_RULES = RewriteRuleSet(
    [rule for op_type in ("Mul", "Add") for rule in _FuseIntoConv.rule(op_type).commute()]
)


class FuseConvAffinePass(ir.passes.InPlacePass):
    """Moves constant per-channel Muls and Adds after Conv into its weight and bias, in every
    graph, until none is left (Conv -> Mul -> Add becomes one Conv)."""

    def call(self, model: ir.Model) -> StatsResult:
        fused = total = _RULES.apply_to_model(model)
        while fused:
            fused = _RULES.apply_to_model(model)
            total += fused
        return StatsResult(model, modified=total > 0, stats={"fused": total})
