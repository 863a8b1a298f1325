"""Int8 quantization passes: prepare, SmoothQuant, static QDQ (wraps ORT), dynamic int8."""

from onnxsmith.passes.quantize.dynamic import QuantizeDynamicPass
from onnxsmith.passes.quantize.plan import (
    COMPUTE_OPS,
    DYNAMIC,
    FP32,
    STATIC,
    Candidate,
    QuantPlan,
    activation_name,
    companion_nodes,
    dynamic_ok,
    find_candidates,
)
from onnxsmith.passes.quantize.prepare import MIN_OPSET, prepare_passes
from onnxsmith.passes.quantize.qdq import FORMATS, InsertQdqPass, qdq_tensors
from onnxsmith.passes.quantize.smoothquant import SmoothQuantPass, smoothing_scales

__all__ = [
    "COMPUTE_OPS",
    "DYNAMIC",
    "FORMATS",
    "FP32",
    "MIN_OPSET",
    "STATIC",
    "Candidate",
    "InsertQdqPass",
    "QuantPlan",
    "QuantizeDynamicPass",
    "SmoothQuantPass",
    "activation_name",
    "companion_nodes",
    "dynamic_ok",
    "find_candidates",
    "prepare_passes",
    "qdq_tensors",
    "smoothing_scales",
]
