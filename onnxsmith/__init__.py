"""onnxsmith: a deployment-oriented ONNX optimizer.

The core (IO, passes, runtime, quantize, merge, bench) needs no torch; `onnxsmith.exporter`
and distillation do.
"""

import importlib
from typing import Any

from onnxsmith.errors import OnnxsmithError
from onnxsmith.io import load_model, save_model
from onnxsmith.pipeline import PipelineReport, apply
from onnxsmith.version import __version__

# torch-side verbs, imported on first use so that `import onnxsmith` never imports torch.
_TORCH_VERBS = {
    "export": "onnxsmith.exporter.export",
    "distill": "onnxsmith.exporter.distill",
}

__all__ = [
    "OnnxsmithError",
    "PipelineReport",
    "__version__",
    "apply",
    "load_model",
    "save_model",
]


def __getattr__(name: str) -> Any:
    if name in _TORCH_VERBS:
        from onnxsmith.exporter import require_torch

        require_torch(name)
        return getattr(importlib.import_module(_TORCH_VERBS[name]), name)
    raise AttributeError(f"module 'onnxsmith' has no attribute {name!r}")
