"""Symmetric int8 weight quantization (numpy), shared by the dynamic and weight-only emitters."""

from __future__ import annotations

import numpy as np

QMAX = 127  # symmetric: [-127, 127], zero point 0 (what ORT's MLAS kernels expect for int8 B)


def quantize_weight(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Int8 values and float32 scales of `w`, per slice along `axis` (None: one scale).

    A slice that is all zeros gets scale 1 (any positive scale represents it exactly).
    """
    w = np.asarray(w, dtype=np.float32)
    if axis is None:
        absmax = np.abs(w).max(keepdims=False) if w.size else np.float32(0)
        scale = np.asarray(absmax / QMAX, np.float32)
        scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
        q = np.clip(np.rint(w / scale), -QMAX, QMAX).astype(np.int8)
        return q, scale
    reduce = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    absmax = np.abs(w).max(axis=reduce)
    scale = np.where(absmax > 0, absmax / QMAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis % w.ndim] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return q, scale
