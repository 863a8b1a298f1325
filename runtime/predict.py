"""Batched inference over stacked (possibly memory-mapped) inputs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import onnxruntime as ort
from onnxsmith.runtime.session import run

from onnxsmith.signature import fixed_batch


def predict(
    session: ort.InferenceSession,
    inputs: Mapping[str, np.ndarray],
    *,
    output: int = 0,
    batch_size: int = 256,
    label: str = "model",
) -> np.ndarray:
    """Output `output` of `session` for every sample, fed `batch_size` samples at a time (the
    model's own batch size where it fixes one)."""
    feeds = stacked_feeds(session, inputs, batch_size)
    return np.concatenate([run(session, feed, label)[output] for feed in feeds])


def stacked_feeds(
    session: ort.InferenceSession, inputs: Mapping[str, np.ndarray], batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Stacked `inputs` in runs of `batch_size` samples, or of the batch size the model fixes
    (a graph declaring batch 1 usually bakes it into its reshapes: ddddocr's detector)."""
    size = fixed_batch(session.get_inputs()) or batch_size
    for start in range(0, len(next(iter(inputs.values()))), size):
        yield {name: np.asarray(a[start : start + size]) for name, a in inputs.items()}
