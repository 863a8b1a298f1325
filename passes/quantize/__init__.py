"""Int8 quantization passes: prepare, SmoothQuant, weight rounding, bias correction, static QDQ
(wraps ORT),
dynamic int8, and the float simulation of static int8 the search measures layers with."""

from onnxsmith.passes.quantize.bias import CorrectBiasPass, correctable, input_channel_axis
from onnxsmith.passes.quantize.dynamic import QuantizeDynamicPass
from onnxsmith.passes.quantize.fakequant import FakeQuantizePass
from onnxsmith.passes.quantize.gather import QuantizeGatherPass
from onnxsmith.passes.quantize.plan import (
    COMPANIONS,
    COMPUTE_OPS,
    DYNAMIC,
    FP32,
    QUANTIZABLE_OPS,
    STATIC,
    WEIGHT_ONLY,
    Candidate,
    QuantPlan,
    activation_name,
    companion_nodes,
    dynamic_ok,
    find_candidates,
)
from onnxsmith.passes.quantize.prepare import MIN_OPSET, prepare_passes
from onnxsmith.passes.quantize.qdq import FORMATS, InsertQdqPass, qdq_tensors
from onnxsmith.passes.quantize.rounding import ROUNDABLE_OPS, RoundWeightsPass
from onnxsmith.passes.quantize.smoothquant import SmoothQuantPass, smoothing_scales

__all__ = [
    "COMPANIONS",
    "COMPUTE_OPS",
    "DYNAMIC",
    "FORMATS",
    "FP32",
    "MIN_OPSET",
    "QUANTIZABLE_OPS",
    "ROUNDABLE_OPS",
    "STATIC",
    "WEIGHT_ONLY",
    "Candidate",
    "CorrectBiasPass",
    "FakeQuantizePass",
    "InsertQdqPass",
    "QuantPlan",
    "QuantizeDynamicPass",
    "QuantizeGatherPass",
    "RoundWeightsPass",
    "SmoothQuantPass",
    "activation_name",
    "companion_nodes",
    "correctable",
    "dynamic_ok",
    "find_candidates",
    "input_channel_axis",
    "prepare_passes",
    "qdq_tensors",
    "smoothing_scales",
]
