"""Dense maps (segmentation, text masks): IoU of what the reference and the candidate mark.

A one-channel map ([N, 1, H, W] or [N, H, W]) is thresholded: at 0.5 when the reference's
values all lie in [0, 1] (probabilities; float32 rounding is allowed for: a Sigmoid map of
PP-OCRv4 det reached 1.0000001), else at 0 (logits). A multi-class map [N, C, H, W]
takes the argmax over C per pixel and averages the IoU over the classes either model marks.
IoU is pooled over the whole eval set; two empty masks agree perfectly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnxsmith.runtime.fidelity.signal import Measured, pairs

ROUNDING = 1e-5  # float32 rounding around a probability's bounds (a few ulps of 1.0)


def probabilities(arrays: Sequence[np.ndarray]) -> bool:
    """Whether every value of the (non-empty) `arrays` lies in [0, 1], up to float rounding."""
    filled = [a for a in arrays if np.size(a)]
    low = min((float(np.min(a)) for a in filled), default=0.0)
    high = max((float(np.max(a)) for a in filled), default=0.0)
    return bool(filled) and low >= -ROUNDING and high <= 1.0 + ROUNDING


def mask_threshold(reference: Sequence[np.ndarray]) -> float:
    """0.5 for probability maps, 0.0 for logits (see the module docstring)."""
    return 0.5 if probabilities(reference) else 0.0


def mask_iou(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Measured:
    """IoU of the thresholded (one channel) or argmax (several) maps; loss = 1 - IoU."""
    found = pairs(reference, outputs, "mask_iou")
    if found and found[0][0].ndim == 4 and found[0][0].shape[1] > 1:
        return _class_iou(found)
    threshold = mask_threshold([r for r, _ in found])
    inter = union = 0
    for ref, out in found:
        a, b = ref > threshold, out > threshold
        inter += int(np.count_nonzero(a & b))
        union += int(np.count_nonzero(a | b))
    iou = inter / union if union else 1.0
    return iou, 1.0 - iou, {"threshold": threshold}


def _class_iou(found: list[tuple[np.ndarray, np.ndarray]]) -> Measured:
    classes = found[0][0].shape[1]
    inter, union = np.zeros(classes), np.zeros(classes)
    for ref, out in found:
        a, b = ref.argmax(1), out.argmax(1)
        for k in range(classes):
            inter[k] += np.count_nonzero((a == k) & (b == k))
            union[k] += np.count_nonzero((a == k) | (b == k))
    marked = union > 0
    iou = float(np.mean(inter[marked] / union[marked])) if marked.any() else 1.0
    return iou, 1.0 - iou, {"classes": float(marked.sum())}
