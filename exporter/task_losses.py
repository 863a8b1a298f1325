"""Losses shaped by how the fidelity check judges an output: the soft Dice overlap for a
probability map (judged by mask IoU), and a detection loss for a YOLO head (judged by the F1 of
its decoded boxes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from onnxsmith.runtime.fidelity.detection import shape_layout

from onnxsmith.errors import DataError

PROBABILITY_EPS = 1e-6  # keeps log(p) finite for outputs that are exactly 0 or 1


def soft_dice_loss(prediction: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 − the soft Dice overlap of two probability maps, per sample, averaged: what the
    thresholded mask's IoU rewards, with the rare marked pixels weighing as much as the
    background (DBNet trains its binary map with the same term)."""
    p, t = prediction.flatten(1), targets.clamp(0, 1).flatten(1)
    overlap = 2 * (p * t).sum(1) + 1.0
    return (1 - overlap / (p.sum(1) + t.sum(1) + 1.0)).mean()


def detection_loss(prediction: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A YOLO head's (runtime/fidelity/detection.py) loss: what decides its detection F1.

    - Scores: BCE over every anchor and class, plus the per-anchor BCE averaged over the anchors
      where either model detects, weighted by the higher of their best scores. Over all 2,100
      anchors, the background's near-zero scores dominated: the student learned to be unsure
      where the original detects (mean score 0.25 where fp32 has 0.51) and missed boxes.
      Weighting only the original's detections made it fire elsewhere instead; counting both
      misses and false alarms measured best (NudeNet YOLOv8n, fixed plan, F1 0.657 → 0.708).
    - Boxes: 1 − the generalized IoU of each anchor's box with the original's, weighted by the
      original's score for it: the boxes a detection keeps decide the F1, the thousands of
      background anchors' boxes do not, and the squared error in pixels would drown the scores.
    """
    layout = shape_layout(tuple(targets.shape))
    if layout is None:
        raise DataError(f"distill: --loss detection needs a YOLO head, not {tuple(targets.shape)}")
    got = prediction.movedim(layout.attributes_axis, -1)
    want = targets.movedim(layout.attributes_axis, -1)
    bounded = got[..., 4:].clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    each = F.binary_cross_entropy(bounded, want[..., 4:].clamp(0, 1), reduction="none")
    first_class = 5 if layout.objectness else 4
    detected = want[..., first_class:].amax(-1)  # the original's best class score per anchor
    fired = got[..., first_class:].amax(-1).detach()  # the student's
    if layout.objectness:
        detected = detected * want[..., 4]
        fired = fired * got[..., 4].detach()
    scores = each.mean() + _weighted(each.mean(-1), torch.maximum(detected, fired))
    return scores + _weighted(1 - generalized_iou(got[..., :4], want[..., :4]), detected)


def _weighted(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum().clamp_min(PROBABILITY_EPS)


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU (Rezatofighi et al., 2019) of (cx, cy, w, h) boxes, pairwise along the last axis:
    the IoU less the share of the enclosing box that neither covers, so boxes that do not
    overlap still get a gradient towards each other."""

    def corners(box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = box[..., 2:].clamp_min(0) / 2
        return box[..., :2] - half, box[..., :2] + half

    (a1, a2), (b1, b2) = corners(a), corners(b)
    inter = (torch.minimum(a2, b2) - torch.maximum(a1, b1)).clamp_min(0).prod(-1)
    union = (a2 - a1).prod(-1) + (b2 - b1).prod(-1) - inter
    hull = (torch.maximum(a2, b2) - torch.minimum(a1, b1)).prod(-1)
    eps = PROBABILITY_EPS
    return inter / (union + eps) - (hull - union) / (hull + eps)
