"""Latency of a quantized model against its fp32 originals, interleaved on the same feeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.timer import Rounds, Timer, TimingJob
from onnxsmith.runtime.timing import ratio_ci95


@dataclasses.dataclass(frozen=True)
class Latency:
    """Median latency and int8/fp32 ratios (median, 95 % CI) over interleaved rounds."""

    fp32_ms: float
    int8_ms: float
    vs_input: tuple[float, float, float]
    vs_prepared: tuple[float, float, float]  # against the cleaned-up fp32 model
    rounds: int


def measure_latency(
    timer: Timer,
    original: ir.Model,
    prepared: ir.Model,
    quantized: Sequence[ir.Model],
    feeds: Sequence[Feed],
    *,
    seconds: float = 8.0,
    threads: int | None = None,
) -> tuple[Latency, ...]:
    """Times the fp32 models and each quantized candidate round-robin for about `seconds`,
    where `timer` measures; returns one `Latency` per candidate, all from the same rounds."""
    job = TimingJob(
        (original, prepared, *quantized), tuple(feeds), Rounds(warmup=3, seconds=seconds), threads
    )
    (times,) = timer.time([job])
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
