"""Folds a per-channel constant Add after Conv into the Conv's bias.

PaddlePaddle exports (all PP-OCR models) write `Conv` without bias followed by `Add(bias)`;
onnxscript's affine rule only takes scalar offsets.
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


class _FuseAddIntoConvBias(RewriteRuleClassBase):
    """Add(Conv(x, W[, b]), C) -> Conv(x, W, b + C) for a C constant per output channel."""

    def pattern(self, op: Any, x: ir.Value, offset: ir.Value) -> Any:
        conv = op.Conv(x, _allow_other_inputs=True, _outputs=["conv_out"])
        return op.Add(conv, offset)

    def check(self, op: Any, *args: Any, **values: Any) -> MatchResult:
        result = MatchResult()
        conv = values["conv_out"].producer()
        weight = constant_array(conv.inputs[1])
        offset = constant_array(values["offset"])
        if weight is None or offset is None or offset.dtype != weight.dtype:
            return result.fail("weight or offset is not a constant of the conv's dtype")
        bias = conv.inputs[2] if len(conv.inputs) > 2 else None
        if bias is not None and (constant_array(bias) is None or len(bias.uses()) != 1):
            return result.fail("conv bias is not a constant used only here")
        if len(values["conv_out"].uses()) != 1 or values["conv_out"].is_graph_output():
            return result.fail("conv output has other users")
        if _channel_offset(offset, weight.shape[0], weight.ndim) is None:
            return result.fail("offset is not per output channel")
        return result

    def rewrite(self, op: Any, *args: Any, **values: Any) -> Any:
        conv = values["conv_out"].producer()
        weight = constant_array(conv.inputs[1])
        offset = constant_array(values["offset"])
        old_bias = conv.inputs[2] if len(conv.inputs) > 2 else None
        bias = constant_array(old_bias)
        assert weight is not None and offset is not None  # guaranteed by check()
        if bias is None:
            bias = np.zeros(weight.shape[0], weight.dtype)
        channel = _channel_offset(offset, weight.shape[0], weight.ndim)
        assert channel is not None
        new_bias = op.initializer(
            ir.tensor((bias + channel).astype(weight.dtype)),
            name=old_bias.name if old_bias is not None else f"{conv.inputs[1].name}_bias",
        )
        return op.Conv(values["x"], conv.inputs[1], new_bias, **conv.attributes)


_RULES = RewriteRuleSet(_FuseAddIntoConvBias().rule().commute())


class FuseConvBiasPass(ir.passes.InPlacePass):
    """Moves constant per-channel Adds after Conv into the Conv bias, in every graph."""

    def call(self, model: ir.Model) -> StatsResult:
        fused = _RULES.apply_to_model(model)
        return StatsResult(model, modified=fused > 0, stats={"fused": fused})
