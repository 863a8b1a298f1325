"""Embeddings: close vectors, and the same nearest neighbours across the eval set.

Each eval feed's output rows ([N, D]; [N, T, D] is mean-pooled over T, as sentence encoders
pool tokens) are gathered into one matrix per model. Cosine is the mean over rows; a row's
nearest neighbour is the other row with the highest cosine similarity, and agreement is the
share of rows whose neighbour is the same for both models (1.0 with fewer than 3 rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnxsmith.runtime.fidelity.signal import Measured, pairs, row_cosines

# loss = max(1 - cosine, (1 - agreement) / 10): the default tolerance 0.005 then asks for
# cosine >= 0.995 and nearest-neighbour agreement >= 0.95 at once.
NEIGHBOUR_WEIGHT = 0.1


def pooled_rows(array: np.ndarray) -> np.ndarray:
    """[N, D] rows of one feed's output: rank 1 is one row, rank 3 is mean-pooled over axis 1."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim <= 1:
        return array.reshape(1, -1)
    if array.ndim == 3:
        array = array.mean(axis=1)
    return array.reshape(array.shape[0], -1)


def nearest_neighbours(rows: np.ndarray) -> np.ndarray:
    """Index of each row's most cosine-similar other row."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = rows / np.where(norms > 0, norms, 1.0)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def embedding(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Measured:
    """Mean cosine of pooled rows, with nearest-neighbour agreement; loss as in NEIGHBOUR_WEIGHT."""
    found = pairs(reference, outputs, "embedding")
    if not found:
        return 1.0, 0.0, {}
    ref = np.concatenate([pooled_rows(r) for r, _ in found])
    out = np.concatenate([pooled_rows(c) for _, c in found])
    cos = float(np.mean(row_cosines(ref, out)))
    agree = (
        float(np.mean(nearest_neighbours(ref) == nearest_neighbours(out))) if len(ref) >= 3 else 1.0
    )
    loss = max(1.0 - cos, (1.0 - agree) * NEIGHBOUR_WEIGHT)
    return cos, loss, {"neighbour_agreement": agree, "rows": float(len(ref))}
