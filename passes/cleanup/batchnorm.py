"""Folds BatchNormalization into the linear op before it.

Conv, ConvTranspose and Gemm use onnxscript's rules; MatMul+Add (what exporters emit for
`nn.Linear` followed by `BatchNorm1d`) has no rule there, so it is written here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import RewriteRuleClassBase
from onnxscript.rewriter._basics import MatchResult
from onnxscript.rewriter.rules.common import (
    fuse_batchnorm_into_conv_rule,
    fuse_batchnorm_into_conv_transpose_rule,
    fuse_batchnorm_into_gemm_rule,
)
from onnxsmith.passes.cleanup.rules import apply_rules

from onnxsmith.pipeline import StatsResult


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's data if it is a constant initializer (not an overridable graph input)."""
    if value is None:
        return None
    if value.const_value is None or value.is_graph_input():
        return None
    return value.const_value.numpy()


def _batchnorm_scale_shift(node: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) such that BN(y) = y * scale + shift, or None if BN is not constant."""
    params = [constant_array(v) for v in node.inputs[1:5] if v is not None]
    if len(params) != 4:
        return None
    gamma, beta, mean, var = params
    if gamma is None or beta is None or mean is None or var is None:
        return None
    epsilon = node.attributes.get_float("epsilon", 1e-5)
    scale = gamma / np.sqrt(var + epsilon)
    return scale, beta - mean * scale


class _FuseBatchNormIntoMatMulAdd(RewriteRuleClassBase):
    """BatchNormalization(MatMul(x, W) + B) -> MatMul(x, W') + B' for a 2-D MatMul output."""

    def pattern(self, op: Any, x: ir.Value, w: ir.Value, b: ir.Value) -> Any:
        matmul = op.MatMul(x, w, _outputs=["matmul_out"])
        return op.BatchNormalization(
            op.Add(matmul, b, _outputs=["add_out"]), _allow_other_inputs=True, _outputs=["bn_out"]
        )

    def check(self, op: Any, *args: Any, **values: Any) -> MatchResult:
        x, w, b = values["x"], values["w"], values["b"]
        result = MatchResult()
        weight, bias = constant_array(w), constant_array(b)
        bn = values["bn_out"].producer()
        if weight is None or bias is None or weight.ndim != 2:
            return result.fail("MatMul weight or Add bias is not a constant 2-D initializer")
        # BatchNormalization normalizes axis 1; that is the MatMul's output features only in 2-D.
        if x.shape is None or x.shape.rank() != 2:
            return result.fail("MatMul input is not known to be 2-D")
        if bn.attributes.get_int("training_mode", 0) or _batchnorm_scale_shift(bn) is None:
            return result.fail("BatchNormalization is in training mode or not constant")
        if len(w.uses()) != 1 or len(b.uses()) != 1:
            return result.fail("weight or bias is shared with other nodes")
        if len(values["matmul_out"].uses()) != 1 or len(values["add_out"].uses()) != 1:
            return result.fail("intermediate value has other users")
        return result

    def rewrite(self, op: Any, *args: Any, **values: Any) -> Any:
        x, w, b = values["x"], values["w"], values["b"]
        scale, shift = _batchnorm_scale_shift(values["bn_out"].producer())  # type: ignore[misc]
        weight, bias = constant_array(w), constant_array(b)
        assert weight is not None and bias is not None
        new_w = op.initializer(ir.tensor((weight * scale).astype(weight.dtype)), name=w.name)
        new_b = op.initializer(ir.tensor((bias * scale + shift).astype(bias.dtype)), name=b.name)
        return op.Add(op.MatMul(x, new_w), new_b)


fuse_batchnorm_into_matmul_add_rule = _FuseBatchNormIntoMatMulAdd().rule()


class FoldBatchNormPass(ir.passes.InPlacePass):
    """Folds BatchNormalization into a preceding Conv, ConvTranspose, Gemm or MatMul+Add."""

    def call(self, model: ir.Model) -> StatsResult:
        before = _count_batchnorms(model)
        apply_rules(
            model,
            [
                fuse_batchnorm_into_conv_rule,
                fuse_batchnorm_into_conv_transpose_rule,
                fuse_batchnorm_into_gemm_rule,
                fuse_batchnorm_into_matmul_add_rule,
            ],
        )
        left = _count_batchnorms(model)
        return StatsResult(
            model, modified=left < before, stats={"folded": before - left, "left": left}
        )


def _count_batchnorms(model: ir.Model) -> int:
    return sum(
        1
        for node in ir.traversal.RecursiveGraphIterator(model.graph)
        if node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx")
    )
