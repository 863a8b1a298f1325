"""The cleanup recipe: exact transforms that every later step starts from."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common
from onnxsmith.passes.cleanup.batchnorm import FoldBatchNormPass
from onnxsmith.passes.cleanup.bias import FuseConvAffinePass
from onnxsmith.passes.cleanup.dedup import DeduplicateInitializersPass
from onnxsmith.passes.cleanup.dropout import RemoveDropoutPass
from onnxsmith.passes.cleanup.identity import RemoveIdentityPass
from onnxsmith.passes.cleanup.opset import UpgradeOpsetPass
from onnxsmith.passes.cleanup.shapes import InferShapesPass
from onnxsmith.passes.cleanup.simplify import SimplifyPass


def cleanup_passes(
    opset: int | None = None, keep_dropout: bool = False
) -> list[ir.passes.PassBase]:
    """The passes of `onnxsmith optimize`, in order.

    Args:
        opset: upgrade the ai.onnx opset to this version first (None leaves it as is).
        keep_dropout: keep inference-mode Dropout nodes (they are identities).
    """
    passes: list[ir.passes.PassBase] = []
    if opset is not None:
        passes.append(UpgradeOpsetPass(opset))
    # Weights in Constant nodes (PaddlePaddle, old exporters) become initializers, so that
    # folding, BN fusion, pruning and quantization all see them.
    passes.append(common.LiftConstantsToInitializersPass(size_limit=0))
    if not keep_dropout:
        passes.append(RemoveDropoutPass())
    passes += [
        SimplifyPass(),
        # MatMul+Add+BatchNormalization folds only where the MatMul input is known to be 2-D,
        # and SimplifyPass does not infer the outputs of If nodes: without shapes here such a
        # fold waited for the next run (optimize was not idempotent).
        InferShapesPass(),
        FoldBatchNormPass(),
        FuseConvAffinePass(),
        RemoveIdentityPass(),
        common.RemoveInitializersFromInputsPass(),
        common.RemoveUnusedNodesPass(),
        common.RemoveUnusedFunctionsPass(),
        common.RemoveUnusedOpsetsPass(),
        DeduplicateInitializersPass(),
        InferShapesPass(),
    ]
    return passes
