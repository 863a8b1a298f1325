"""Per-layer error measured in isolation: each int8 layer alone, its error at the model's output.

The fallback used to rank int8 nodes by the error each adds along the fully quantized model
(noise ratio at its output minus at its input). That underrates a layer whose error the rest of
the network amplifies: on PP-OCRv4 det, 3 early convolutions each cost cosine 0.95–0.97 at the
output when quantized alone, while their locally added error ranked them among 60 others, and
the fallback sent 60 of 62 convs back to fp32. Quantizing one layer at a time (a "shadow" of the
float model with one int8 layer) and measuring at the output ranks them first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import Session, run


def output_noise(
    session: Session, feeds: Sequence[Feed], references: Sequence[Sequence[np.ndarray]]
) -> float:
    """The worst float output's noise-to-signal ratio, Σ(y - ŷ)² / Σy², over `feeds`.

    `references` holds the fp32 model's outputs per feed, in the session's output order.
    """
    signal: dict[int, float] = {}
    noise: dict[int, float] = {}
    for feed, expected in zip(feeds, references, strict=True):
        outputs = run(session, feed, "quantize: a one-layer int8 model")
        for i, (want, got) in enumerate(zip(expected, outputs, strict=True)):
            if want.dtype.kind != "f" or want.shape != got.shape:
                continue
            a, b = want.astype(np.float64), got.astype(np.float64)
            signal[i] = signal.get(i, 0.0) + float(np.sum(a * a))
            noise[i] = noise.get(i, 0.0) + float(np.sum((a - b) ** 2))
    ratios = [noise[i] / signal[i] if signal[i] > 0 else noise[i] for i in signal]
    return max(ratios, default=0.0)
