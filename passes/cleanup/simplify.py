"""Constant folding and exact algebraic rewrites, delegated to onnxscript's optimizer."""

from __future__ import annotations

import onnx_ir as ir
import onnxscript.optimizer

from onnxsmith.pipeline import StatsResult, count_nodes

# onnxscript's defaults (8 Ki / 256 Ki elements) skip weight-sized folds such as
# Transpose(W) or Cast(W) that exporters emit; a few million elements keeps memory modest.
_SIZE_LIMIT = 1 << 22
# Folding f(W) while W itself stays in use stores W twice (silero-vad's LSTM weights grew the
# file by 45 % that way); below this many elements the copy does not matter.
_SHARED_WEIGHT_ELEMENTS = 4096
_MAX_ROUNDS = 4


def _keeps_weights_single(node: ir.Node) -> bool | None:
    """onnxscript `should_fold` hook: False vetoes a fold, None defers to its default rules."""
    for value in node.inputs:
        if value is None or value.const_value is None:
            continue
        if value.const_value.size > _SHARED_WEIGHT_ELEMENTS and len(value.uses()) > 1:
            return False
    return None


class SimplifyPass(ir.passes.InPlacePass):
    """Folds constant subexpressions (shape arithmetic included) and applies exact rewrites.

    Runs `onnxscript.optimizer.optimize_ir`: reference-evaluator folding with ONNX shape
    inference, onnxscript's default rewrite rules (no-op Cast/Expand/Transpose/Reshape removal,
    Pad→Conv, BN→Conv/Gemm, Min/Max→Clip, ...), common-subexpression elimination and function
    inlining, over every graph and subgraph. Never runs ORT. Folds that would store a second
    copy of a weight still used elsewhere are vetoed.
    """

    def call(self, model: ir.Model) -> StatsResult:
        before = count_nodes(model)
        # optimize_ir stops after two rounds; repeat to a fixpoint so the pass is idempotent.
        after, previous = before, -1
        for _ in range(_MAX_ROUNDS):
            previous = after
            onnxscript.optimizer.optimize_ir(
                model,
                onnx_shape_inference=True,
                input_size_limit=_SIZE_LIMIT,
                output_size_limit=_SIZE_LIMIT,
                should_fold=_keeps_weights_single,
            )
            after = count_nodes(model)
            if after == previous:
                break
        return StatsResult(model, modified=after != before, stats={"nodes_removed": before - after})
