"""Classification: does the candidate pick the class the reference picks?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnxsmith.runtime.fidelity.signal import Measured, pairs

from onnxsmith.errors import DataError


def top1(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Measured:
    """Share of rows whose argmax over the last axis matches the reference's.

    Every leading position is a decision ([N, C]: one per sample; [N, T, C]: one per token).
    Loss = 1 - agreement: 0.01 means one decision in a hundred changed.
    """
    agree = total = 0
    for i, (ref, out) in enumerate(pairs(reference, outputs, "top1")):
        if ref.ndim == 0 or ref.shape[-1] < 2:
            raise DataError(
                f"top1: feed {i} output has shape {ref.shape}, with no class axis last — "
                "use --metric cosine"
            )
        classes = ref.shape[-1]
        agree += int(
            np.count_nonzero(
                ref.reshape(-1, classes).argmax(1) == out.reshape(-1, classes).argmax(1)
            )
        )
        total += ref.size // classes
    value = agree / total if total else 1.0
    return value, 1.0 - value, {"decisions": float(total)}
