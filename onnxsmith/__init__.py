"""onnxsmith: a deployment-oriented ONNX optimizer.

The core (IO, passes, runtime, quantize, merge, bench) needs no torch; `onnxsmith.exporter`
and distillation do.
"""

from onnxsmith.errors import OnnxsmithError
from onnxsmith.io import load_model, save_model
from onnxsmith.pipeline import PipelineReport, apply

__version__ = "0.1.0"

__all__ = [
    "OnnxsmithError",
    "PipelineReport",
    "__version__",
    "apply",
    "load_model",
    "save_model",
]
