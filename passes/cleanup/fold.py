"""Constant folding, delegated to onnxscript's optimizer."""

from __future__ import annotations

import onnx_ir as ir
import onnxscript.optimizer

from onnxsmith.pipeline import StatsResult

# onnxscript's defaults (8 Ki / 256 Ki elements) skip weight-sized folds such as
# Transpose(W) or Cast(W) that exporters emit; a few million elements keeps memory modest.
_SIZE_LIMIT = 1 << 22


class FoldConstantsPass(ir.passes.InPlacePass):
    """Evaluates nodes whose inputs are all constant and stores their results as initializers.

    Uses `onnxscript.optimizer.fold_constants` (reference evaluator, never ORT), which also
    walks If/Loop/Scan bodies.
    """

    def call(self, model: ir.Model) -> StatsResult:
        before = {v.name for v in model.graph.initializers.values()}
        result = onnxscript.optimizer.fold_constants(
            model,
            # Shapes inferred while folding let FoldBatchNormPass see that a MatMul is 2-D in
            # models that declare no intermediate shapes; without them it folded only on a
            # second run (found by the property tests: the recipe was not idempotent).
            onnx_shape_inference=True,
            input_size_limit=_SIZE_LIMIT,
            output_size_limit=_SIZE_LIMIT,
        )
        created = len(set(model.graph.initializers) - before)
        return StatsResult(model, modified=result.modified, stats={"new_constants": created})
