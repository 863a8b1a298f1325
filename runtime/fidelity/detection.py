"""YOLO-family detection heads: decode, NMS, then F1 of the candidate's boxes against the
reference's own boxes.

The detection rule (also in docs/metrics.md and every report that uses it):

1. Layout. A rank-3 float output [N, a, b] is a YOLO head when its smaller inner axis holds
   k >= 5 attributes per anchor and the other axis at least 2k anchors, the first four
   attributes are boxes in pixels (the largest exceeds 1.5) and the rest are scores in [0, 1].
   Attributes on axis 1 ([N, 4 + classes, anchors]) is YOLOv8's layout, without objectness;
   on axis 2 ([N, anchors, 5 + classes]) is YOLOv5's and YOLOX's, with objectness at index 4.
   80 classes (COCO) decide it by count when the axis alone would not: k = 84 has no
   objectness, k = 85 has it.
2. Decode. Boxes are (cx, cy, w, h). A box's score is its best class score (times the
   objectness when there is one); boxes scoring under 0.25 are dropped.
3. NMS per class at IoU 0.45, at most 300 boxes per image, highest scores first (the
   YOLOv5/v8 defaults).
4. Match. Candidate boxes, best score first, each take the unmatched reference box of the same
   class with the highest IoU, if that IoU is >= 0.5. F1 = 2·matches / (candidate boxes +
   reference boxes), pooled over every image of the eval set; no boxes on either side is 1.0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from onnxsmith.runtime.fidelity.signal import Measured, pairs

from onnxsmith.errors import DataError

RULE = (
    "YOLO detection rule: score = best class score (x objectness if any) >= 0.25; per-class "
    "NMS at IoU 0.45, at most 300 boxes; F1 = 2·matches / (boxes + fp32 boxes), a match being "
    "a box of the same class at IoU >= 0.5, one to one, best score first"
)
CONFIDENCE = 0.25
NMS_IOU = 0.45
MATCH_IOU = 0.5
MAX_DETECTIONS = 300
_COCO = 80


@dataclasses.dataclass(frozen=True)
class YoloLayout:
    """Where a YOLO head keeps its attributes and whether it has an objectness score."""

    attributes_axis: int  # 1: [N, attributes, anchors] (v8); 2: [N, anchors, attributes]
    objectness: bool
    classes: int

    def describe(self) -> str:
        shape = "[N, 4+C, anchors]" if self.attributes_axis == 1 else "[N, anchors, attrs]"
        obj = "with objectness" if self.objectness else "without objectness"
        return f"YOLO head {shape}, {self.classes} classes, {obj}"


@dataclasses.dataclass(frozen=True)
class Detections:
    """One image's boxes (x1, y1, x2, y2), scores and class ids, best score first."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def shape_layout(shape: Sequence[int]) -> YoloLayout | None:
    """The layout rule 1 reads from a head's shape alone, or None when the shape is not one."""
    if len(shape) != 3 or shape[0] == 0:
        return None
    axis = 1 if shape[1] < shape[2] else 2
    k, anchors = shape[axis], shape[3 - axis]
    if k < 5 or anchors < 2 * k:
        return None
    objectness = {k - 4: False, k - 5: True}.get(_COCO, axis == 2)
    return YoloLayout(axis, objectness, k - 5 if objectness else k - 4)


def yolo_layout(sample: np.ndarray) -> YoloLayout | None:
    """The head's layout by rule 1 of the module docstring, or None when it is not one."""
    sample = np.asarray(sample)
    layout = shape_layout(sample.shape) if sample.dtype.kind == "f" else None
    if layout is None:
        return None
    rows = np.moveaxis(sample, layout.attributes_axis, -1)
    rows = rows.reshape(-1, sample.shape[layout.attributes_axis])
    boxes, scores = rows[:, :4], rows[:, 4:]
    if not np.isfinite(rows).all() or boxes.max() <= 1.5:
        return None
    if scores.min() < 0.0 or scores.max() > 1.0:
        return None
    return layout


def decode(prediction: np.ndarray, layout: YoloLayout) -> list[Detections]:
    """Rules 2 and 3: per image, boxes over the confidence threshold after per-class NMS."""
    rows = np.moveaxis(np.asarray(prediction, dtype=np.float64), layout.attributes_axis, -1)
    found = []
    for image in rows:
        scores = image[:, 5:] * image[:, 4:5] if layout.objectness else image[:, 4:]
        classes = scores.argmax(1)
        best = scores[np.arange(len(scores)), classes]
        keep = best >= CONFIDENCE
        cx, cy, w, h = image[keep, :4].T
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        chosen = nms(boxes, best[keep], classes[keep])
        found.append(Detections(boxes[chosen], best[keep][chosen], classes[keep][chosen]))
    return found


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x1, y1, x2, y2) box with each of `boxes` (0 where both are empty)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)

    def area(b: np.ndarray) -> np.ndarray:
        return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)

    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Indices kept by greedy per-class NMS at `NMS_IOU`, best score first, at most 300."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < MAX_DETECTIONS:
        first, rest = order[0], order[1:]
        kept.append(int(first))
        overlap = box_iou(boxes[first], boxes[rest])
        order = rest[(overlap <= NMS_IOU) | (classes[rest] != classes[first])]
    return np.asarray(kept, dtype=np.int64)


def matches(reference: Detections, candidate: Detections) -> int:
    """Rule 4: candidate boxes matched one to one to reference boxes of their class."""
    free = np.ones(len(reference), dtype=bool)
    found = 0
    for i in np.argsort(-candidate.scores, kind="stable"):
        same = free & (reference.classes == candidate.classes[i])
        if not same.any():
            continue
        overlap = np.where(same, box_iou(candidate.boxes[i], reference.boxes), -1.0)
        best = int(np.argmax(overlap))
        if overlap[best] >= MATCH_IOU:
            free[best] = False
            found += 1
    return found


def detection_f1(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Measured:
    """F1 of the candidate's detections against the reference's (module docstring); loss =
    1 - F1. Details: precision, recall and the reference's box count."""
    found = pairs(reference, outputs, "detection_f1")
    if not found:
        return 1.0, 0.0, {}
    layout = yolo_layout(found[0][0])
    if layout is None:
        raise DataError(
            f"detection_f1: an output of shape {found[0][0].shape} is not a YOLO head "
            "(see docs/metrics.md for the layouts) — choose another --metric"
        )
    hits = ref_boxes = cand_boxes = 0
    for ref, out in found:
        for want, got in zip(decode(ref, layout), decode(out, layout), strict=True):
            hits += matches(want, got)
            ref_boxes += len(want)
            cand_boxes += len(got)
    total = ref_boxes + cand_boxes
    f1 = 2 * hits / total if total else 1.0
    details = {
        "precision": hits / cand_boxes if cand_boxes else 1.0,
        "recall": hits / ref_boxes if ref_boxes else 1.0,
        "reference_boxes": float(ref_boxes),
    }
    return f1, 1.0 - f1, details
