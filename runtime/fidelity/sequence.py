"""Sequence / CTC scores: greedy-decoded strings, compared as a reader would compare them.

Scores are [N, T, C] (batch, time steps, classes) or [T, C]. Greedy CTC decoding takes the
argmax per step, merges repeats and drops the blank. The blank is the class the *reference*
picks most often over all steps of the eval set (CTC heads emit it at most steps; PaddleOCR and
most CRNNs put it at 0, some at C - 1). The character error rate is the edit distance between
the candidate's and the reference's strings over the reference's length; against the fp32
model's own strings it bounds how much the CER on real labels can grow (triangle inequality).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnxsmith.runtime.fidelity.signal import Measured, pairs

from onnxsmith.errors import DataError


def find_blank(reference: Sequence[np.ndarray]) -> int:
    """The class the reference emits most often across all time steps."""
    counts: np.ndarray | None = None
    for scores in reference:
        ids = np.asarray(scores).argmax(-1).ravel()
        found = np.bincount(ids, minlength=np.asarray(scores).shape[-1])
        counts = found if counts is None else counts + found
    return int(np.argmax(counts)) if counts is not None else 0


def greedy_decode(scores: np.ndarray, blank: int) -> list[list[int]]:
    """Greedy CTC decoding of [N, T, C] (or [T, C]) scores: one label sequence per row."""
    scores = np.asarray(scores)
    if scores.ndim == 2:
        scores = scores[None]
    if scores.ndim != 3:
        raise DataError(f"ctc: scores of shape {scores.shape} are not [N, T, C] or [T, C]")
    decoded = []
    for ids in scores.argmax(-1):
        keep = np.ones(len(ids), dtype=bool)
        keep[1:] = ids[1:] != ids[:-1]
        decoded.append([int(i) for i in ids[keep] if i != blank])
    return decoded


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    previous = np.arange(len(b) + 1)
    for i, item in enumerate(a, start=1):
        current = np.empty_like(previous)
        current[0] = i
        for j, other in enumerate(b, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item != other))
        previous = current
    return int(previous[-1])


def ctc(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Measured:
    """Character agreement (1 - CER) of greedy-decoded strings; loss = CER vs the reference.

    Details: `sequence_agreement`, the share of strings decoded identically.
    """
    blank = find_blank(reference)
    errors = length = same = count = 0
    for ref, out in pairs(reference, outputs, "ctc"):
        for want, got in zip(greedy_decode(ref, blank), greedy_decode(out, blank), strict=True):
            errors += edit_distance(got, want)
            length += len(want)
            same += want == got
            count += 1
    cer = errors / length if length else float(errors > 0)
    agreement = same / count if count else 1.0
    return max(0.0, 1.0 - cer), cer, {"sequence_agreement": agreement, "blank": float(blank)}
