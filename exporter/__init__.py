"""PyTorch → ONNX export and distillation: the only part of onnxsmith that imports torch.

Nothing here imports torch at package import time, so `import onnxsmith` stays torch-free;
`require_torch` turns a missing torch into one line that says what to install.
"""

from __future__ import annotations

from onnxsmith.errors import ExportError


def require_torch(step: str) -> None:
    """Raises a one-line `ExportError` when PyTorch is not installed.

    Args:
        step: the verb that needs torch (`export`, `distill`), named in the message.
    """
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise ExportError(
            f"{step}: PyTorch is not installed — pip install 'onnxsmith[torch]' (torch==2.13.0)"
        ) from e
