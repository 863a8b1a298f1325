"""Accuracy against the user's labels, for outputs judged by `top1` or `ctc`.

Without labels a candidate is judged by how far its decisions move from the reference's; that
bounds the accuracy it can lose, but counts every change, also where the reference itself is
wrong or unsure. With labels the loss is what the task loses: the reference's accuracy minus
the candidate's (0 when the candidate is as accurate or better).

Labels, one array per eval feed (counted from 0 in the eval dir's sorted order): class ids
shaped like the output without its class axis (`top1`), or the expected label sequence of a
CTC output, `[L]` for a one-row feed or `[N, L]` padded with the blank (`ctc`; the blank as
`sequence.find_blank` finds it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnxsmith.runtime.fidelity.result import Fidelity
from onnxsmith.runtime.fidelity.sequence import edit_distance, find_blank, greedy_decode
from onnxsmith.runtime.labels import check_label, integer_labels

from onnxsmith.errors import DataError

LABELLED = ("top1", "ctc")  # the metrics whose outputs labels can judge


def labelled_fidelity(
    metric: str,
    reference: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    tolerance: float,
) -> Fidelity:
    """The candidate's accuracy against `labels`; loss = the reference's accuracy minus it."""
    if len(labels) != len(reference):
        raise DataError(f"{len(labels)} labels for {len(reference)} eval feeds")
    blank = find_blank(reference) if metric == "ctc" else 0
    expected = accuracy(metric, reference, labels, blank)
    got = accuracy(metric, outputs, labels, blank)
    return Fidelity(
        f"{metric} vs labels",
        got,
        max(0.0, expected - got),
        tolerance,
        {"fp32_accuracy": expected},
    )


def accuracy(
    metric: str, outputs: Sequence[np.ndarray], labels: Sequence[np.ndarray], blank: int = 0
) -> float:
    """Top-1 accuracy, or 1 - CER of the greedy-decoded strings, against `labels`."""
    if metric == "ctc":
        errors = length = 0
        for i, (scores, label) in enumerate(zip(outputs, labels, strict=True)):
            decoded = greedy_decode(scores, blank)
            for got, want in zip(decoded, _sequences(label, len(decoded), blank, i), strict=True):
                errors += edit_distance(got, want)
                length += len(want)
        return 1.0 - errors / length if length else float(errors == 0)
    right = total = 0
    for i, (scores, label) in enumerate(zip(outputs, labels, strict=True)):
        predicted = np.asarray(scores).argmax(-1)
        ids = check_label(label, predicted, f"eval feed {i}")
        right += int(np.count_nonzero(predicted == ids))
        total += predicted.size
    return right / total if total else 1.0


def _sequences(label: np.ndarray, rows: int, blank: int, feed: int) -> list[list[int]]:
    label = integer_labels(label, f"eval feed {feed}")
    if label.ndim == 1 and rows == 1:
        label = label[None]
    if label.ndim != 2 or label.shape[0] != rows:
        raise DataError(
            f"eval feed {feed}: labels of shape {label.shape} for {rows} sequences — save "
            "[L] for a one-row feed or [N, L] padded with the blank"
        )
    return [[int(c) for c in row if c != blank] for row in label]
