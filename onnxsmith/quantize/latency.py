"""Latency of a quantized model against its fp32 originals, interleaved on the same feeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import Session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved


@dataclasses.dataclass(frozen=True)
class Latency:
    """Median latency and int8/fp32 ratios (median, 95 % CI) over interleaved rounds."""

    fp32_ms: float
    int8_ms: float
    vs_input: tuple[float, float, float]
    vs_prepared: tuple[float, float, float]  # against the cleaned-up fp32 model
    rounds: int


def measure_latency(
    original: Session,
    prepared: Session,
    quantized: Sequence[Session],
    feeds: Sequence[Feed],
    *,
    seconds: float = 8.0,
) -> tuple[Latency, ...]:
    """Times the fp32 sessions and each quantized candidate round-robin for about `seconds`;
    returns one `Latency` per candidate, all from the same rounds."""
    sessions = [original, prepared, *quantized]
    times = time_interleaved(sessions, list(feeds), warmup=3, runs=None, seconds=seconds)
    return tuple(
        Latency(
            fp32_ms=float(np.median(times[0])),
            int8_ms=float(np.median(candidate)),
            vs_input=ratio_ci95(candidate, times[0]),
            vs_prepared=ratio_ci95(candidate, times[1]),
            rounds=len(times[0]),
        )
        for candidate in times[2:]
    )
