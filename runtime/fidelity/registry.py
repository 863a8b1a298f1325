"""The built-in metrics by name, each with its default tolerance in the task's own terms."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
from onnxsmith.runtime.fidelity.classification import top1
from onnxsmith.runtime.fidelity.dense import mask_iou
from onnxsmith.runtime.fidelity.detection import detection_f1
from onnxsmith.runtime.fidelity.embedding import embedding
from onnxsmith.runtime.fidelity.result import Fidelity
from onnxsmith.runtime.fidelity.sequence import ctc
from onnxsmith.runtime.fidelity.signal import Measured, cosine, exact, nmse, snr

from onnxsmith.errors import DataError

Measure = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], Measured]


@dataclasses.dataclass(frozen=True)
class TaskMetric:
    """A built-in metric: how to measure, what the loss means, and how much of it passes."""

    name: str
    measure: Measure
    tolerance: float
    loss: str  # what the loss is, for help texts and reports

    def __call__(
        self,
        reference: Sequence[np.ndarray],
        outputs: Sequence[np.ndarray],
        tolerance: float | None = None,
    ) -> Fidelity:
        """Judges `outputs` against `reference` (one array per eval feed each)."""
        value, loss, details = self.measure(reference, outputs)
        if not math.isfinite(loss):
            raise DataError(f"{self.name}: the loss is {loss} — the outputs are not comparable")
        limit = self.tolerance if tolerance is None else tolerance
        return Fidelity(self.name, value, loss, limit, details)


METRICS: dict[str, TaskMetric] = {
    m.name: m
    for m in (
        TaskMetric("top1", top1, 0.01, "share of argmax decisions that changed"),
        TaskMetric("ctc", ctc, 0.005, "character error rate of the greedy-decoded strings"),
        TaskMetric("mask_iou", mask_iou, 0.02, "1 - IoU of the thresholded maps"),
        TaskMetric("detection_f1", detection_f1, 0.03, "1 - F1 of the decoded boxes at IoU 0.5"),
        TaskMetric("embedding", embedding, 0.005, "max(1 - cosine, (1 - NN agreement) / 10)"),
        TaskMetric("cosine", cosine, 0.01, "1 - mean cosine per row"),
        TaskMetric("snr", snr, 0.01, "10^(-SNR/10): 0.01 is 20 dB"),
        TaskMetric("mse", nmse, 0.01, "normalized MSE"),
        TaskMetric("exact", exact, 0.01, "share of elements that differ"),
    )
}
