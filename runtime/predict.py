"""Batched inference over stacked (possibly memory-mapped) inputs."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnxruntime as ort
from onnxsmith.runtime.session import run


def predict(
    session: ort.InferenceSession,
    inputs: Mapping[str, np.ndarray],
    *,
    output: int = 0,
    batch_size: int = 256,
    label: str = "model",
) -> np.ndarray:
    """Output `output` of `session` for every sample, fed `batch_size` samples at a time."""
    total = len(next(iter(inputs.values())))
    parts = []
    for start in range(0, total, batch_size):
        feed = {name: np.asarray(a[start : start + batch_size]) for name, a in inputs.items()}
        parts.append(run(session, feed, label)[output])
    return np.concatenate(parts)
