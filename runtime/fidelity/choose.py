"""Which built-in metric judges an output, read from the reference's outputs on the eval set.

The rules, first match wins (the reason printed with the choice says which fired):

1. not float (ids, masks as integers, booleans) → `exact`;
2. a YOLO head (see `detection.yolo_layout`) → `detection_f1`;
3. [N, T, C] scores whose rows are distributions over C (softmax: >= 0, sum 1; log-softmax:
   logsumexp 0), or [T, C] such rows whose T varies across feeds and where one class (the
   blank) wins at least half of all steps → `ctc`;
4. [N, C, H, W] with C <= 64 and H, W >= 16, or [N, H, W] probabilities with H, W >= 16 →
   `mask_iou`;
5. [N, D] or [N, T, D] whose name says embedding (emb, pool, hidden, feature, sentence,
   vector) or whose rows have unit L2 norm → `embedding`;
6. [N, C] with C >= 2 → `top1` (one decision per row);
7. anything else → `cosine`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np
from onnxsmith.runtime.fidelity.dense import probabilities
from onnxsmith.runtime.fidelity.detection import yolo_layout

_EMBEDDING_NAME = re.compile(r"emb|pool|hidden|feature|sentence|vector")
_MAX_MAP_CHANNELS = 64
_MIN_MAP_SIDE = 16
_FEEDS_CHECKED = 4
_ATOL = 1e-3


@dataclasses.dataclass(frozen=True)
class Choice:
    """The metric chosen for one output and the rule that chose it."""

    metric: str
    reason: str


def choose_metric(name: str, reference: Sequence[np.ndarray]) -> Choice:
    """The metric for output `name`, given the reference's values on the eval feeds."""
    arrays = [np.asarray(r) for r in reference[:_FEEDS_CHECKED]]
    first = arrays[0]
    shape = "[" + ", ".join(map(str, first.shape)) + "]"
    if first.dtype.kind != "f":
        return Choice("exact", f"{shape} {first.dtype} values: the share of equal elements")
    layout = yolo_layout(first)
    if layout is not None:
        return Choice(
            "detection_f1",
            f"{shape}: {layout.describe()} → decode, NMS, F1 at IoU 0.5 against fp32's boxes",
        )
    hinted = bool(_EMBEDDING_NAME.search(name.lower()))
    varies = len({a.shape[0] for a in arrays if a.ndim}) > 1
    steps = first.ndim == 3 or (first.ndim == 2 and varies and _blank_dominates(arrays))
    if not hinted and steps and _distributions(arrays):
        return Choice(
            "ctc",
            f"{shape}: rows are distributions over {first.shape[-1]} classes → greedy CTC "
            "decoding, character error rate against fp32's strings",
        )
    if _is_map(first):
        return Choice("mask_iou", f"{shape}: a dense map → IoU of the thresholded masks")
    if first.ndim in (2, 3) and (hinted or _unit_rows(first)):
        why = "its name" if hinted else "rows of unit norm"
        return Choice(
            "embedding",
            f"{shape}: an embedding ({why}) → cosine and nearest-neighbour agreement",
        )
    if first.ndim == 2 and first.shape[-1] >= 2:
        return Choice("top1", f"{shape}: class scores → top-1 agreement with fp32")
    return Choice("cosine", f"{shape}: no task structure recognized → cosine per row")


def _distributions(arrays: Sequence[np.ndarray]) -> bool:
    """Rows over the last axis are probabilities or log-probabilities (C >= 2)."""
    if arrays[0].shape[-1] < 2:
        return False
    for a in arrays:
        rows = a.reshape(-1, a.shape[-1]).astype(np.float64)
        if not len(rows):
            return False
        softmax = rows.min() >= -_ATOL and np.allclose(rows.sum(1), 1.0, atol=_ATOL)
        high = rows.max(1, keepdims=True)
        logsumexp = high[:, 0] + np.log(np.exp(rows - high).sum(1))
        if not (softmax or np.allclose(logsumexp, 0.0, atol=_ATOL)):
            return False
    return True


def _blank_dominates(arrays: Sequence[np.ndarray]) -> bool:
    """One class wins at least half of all rows, as a CTC blank does (a classifier's batches
    of varying size spread their argmax over the classes)."""
    counts = np.bincount(np.concatenate([a.argmax(-1).ravel() for a in arrays]))
    return bool(counts.max() * 2 >= counts.sum())


def _is_map(first: np.ndarray) -> bool:
    if first.ndim == 4:
        _, channels, height, width = first.shape
        return channels <= _MAX_MAP_CHANNELS and min(height, width) >= _MIN_MAP_SIDE
    if first.ndim == 3:
        return probabilities([first]) and min(first.shape[1:]) >= _MIN_MAP_SIDE
    return False


def _unit_rows(first: np.ndarray) -> bool:
    rows = first.reshape(-1, first.shape[-1]).astype(np.float64)
    return first.shape[-1] >= 8 and bool(np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=_ATOL))
