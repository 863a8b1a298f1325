"""Exact cleanup passes: what `onnxsmith optimize` runs."""

from onnxsmith.passes.cleanup.batchnorm import FoldBatchNormPass
from onnxsmith.passes.cleanup.bias import FuseConvAffinePass
from onnxsmith.passes.cleanup.dedup import DeduplicateInitializersPass
from onnxsmith.passes.cleanup.dropout import RemoveDropoutPass
from onnxsmith.passes.cleanup.identity import RemoveIdentityPass
from onnxsmith.passes.cleanup.opset import UpgradeOpsetPass
from onnxsmith.passes.cleanup.recipe import cleanup_passes
from onnxsmith.passes.cleanup.simplify import SimplifyPass

__all__ = [
    "DeduplicateInitializersPass",
    "FoldBatchNormPass",
    "FuseConvAffinePass",
    "RemoveDropoutPass",
    "RemoveIdentityPass",
    "SimplifyPass",
    "UpgradeOpsetPass",
    "cleanup_passes",
]
