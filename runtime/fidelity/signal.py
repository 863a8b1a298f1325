"""Task-agnostic closeness of outputs: cosine, SNR, normalized MSE, exact agreement.

Each function takes the reference outputs and the candidate's (one array per eval feed, same
shapes) and returns `(value, loss, details)`; see `registry.py` for the tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from onnxsmith.errors import DataError

Measured = tuple[float, float, dict[str, float]]
_SNR_CAP_DB = 200.0  # an exact match counts as 200 dB, not infinity


def pairs(
    reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray], metric: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """float64 (reference, output) pairs; a shape mismatch is a DataError naming the feed."""
    if len(reference) != len(outputs):
        raise DataError(f"{metric}: {len(reference)} reference outputs but {len(outputs)} outputs")
    found = []
    for i, (ref, out) in enumerate(zip(reference, outputs, strict=True)):
        ref, out = np.asarray(ref), np.asarray(out)
        if ref.shape != out.shape:
            raise DataError(
                f"{metric}: feed {i} has reference shape {ref.shape} but output shape {out.shape}"
                " — the models must have the same outputs"
            )
        found.append((ref.astype(np.float64), out.astype(np.float64)))
    return found


def row_cosines(reference: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Cosine per row (axis 0; rank < 2 is one row); two zero rows count as identical."""
    rows = reference.shape[0] if reference.ndim >= 2 and reference.shape[0] > 0 else 1
    r, c = reference.reshape(rows, -1), output.reshape(rows, -1)
    norm_r, norm_c = np.linalg.norm(r, axis=1), np.linalg.norm(c, axis=1)
    norms = norm_r * norm_c
    cos = np.sum(r * c, axis=1) / np.where(norms > 0, norms, 1.0)
    return np.where((norm_r == 0) & (norm_c == 0), 1.0, np.where(norms > 0, cos, 0.0))


def cosine(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Measured:
    """Mean cosine per row over the eval set; loss = 1 - cosine."""
    found = [row_cosines(r, c) for r, c in pairs(reference, outputs, "cosine")]
    value = float(np.mean(np.concatenate(found))) if found else 1.0
    return value, 1.0 - value, {}


def snr(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Measured:
    """Signal-to-noise ratio in dB, averaged over feeds; loss = 10^(-snr/10)."""
    values = [
        min(sqnr_db(float(np.sum(r**2)), float(np.sum((r - c) ** 2))), _SNR_CAP_DB)
        for r, c in pairs(reference, outputs, "snr")
    ]
    value = float(np.mean(values)) if values else _SNR_CAP_DB
    return value, 10.0 ** (-value / 10.0), {}


def nmse(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Measured:
    """Squared error over squared reference, summed over the eval set; loss = it."""
    found = pairs(reference, outputs, "mse")
    noise = sum(float(np.sum((r - c) ** 2)) for r, c in found)
    signal = sum(float(np.sum(r**2)) for r, _ in found)
    value = noise / signal if signal > 0 else (0.0 if noise == 0 else math.inf)
    return value, value, {}


def exact(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Measured:
    """Share of elements equal (ids, masks, any non-float output); loss = share that differ."""
    found = pairs(reference, outputs, "exact")
    total = sum(r.size for r, _ in found)
    differ = sum(int(np.count_nonzero(r != c)) for r, c in found)
    share = differ / max(total, 1)
    return 1.0 - share, share, {}


def sqnr_db(signal: float, noise: float) -> float:
    """10·log10(signal / noise) with the limits spelled out (inf when there is no noise)."""
    if noise <= 0.0:
        return math.inf
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)
