"""Latency of a quantized model against its fp32 originals, over the eval set's shapes.

The eval feeds are grouped into shape buckets (`runtime.timing.shape_buckets`); every round
times each bucket on every model, interleaved, and the overall ratio weights each bucket by its
share of the eval feeds. Timing goes on past `seconds` (up to `CONFIDENCE_BUDGET` times that)
until the 95 % interval of int8/fp32 excludes 1; if it never does, the verdict is "no
measurable gain" and no speed-up is claimed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.runtime.timer import BucketJob, Timer
from onnxsmith.runtime.timing import (
    NO_GAIN,
    SLOWER,
    BucketTiming,
    ShapeBucket,
    verdict,
)

CONFIDENCE_BUDGET = 3.0  # at most this many times --timing-seconds while the interval straddles 1


@dataclasses.dataclass(frozen=True)
class BucketLatency:
    """One shape bucket: median latencies and the int8/fp32 ratio (median, 95 % CI)."""

    label: str
    share: float  # of the eval feeds
    fp32_ms: float
    int8_ms: float
    ratio: tuple[float, float, float]  # against the cleaned-up fp32 model

    @property
    def verdict(self) -> str:
        return verdict(self.ratio)


@dataclasses.dataclass(frozen=True)
class Latency:
    """Overall and per-bucket int8/fp32 ratios (median, 95 % CI) from interleaved rounds.

    `verdict` judges `vs_prepared`: "faster", "slower" or "no measurable gain".
    """

    fp32_ms: float
    int8_ms: float
    vs_input: tuple[float, float, float]
    vs_prepared: tuple[float, float, float]  # against the cleaned-up fp32 model
    rounds: int
    seconds: float = 0.0
    buckets: tuple[BucketLatency, ...] = ()

    @property
    def verdict(self) -> str:
        return verdict(self.vs_prepared)

    def slower_buckets(self) -> list[BucketLatency]:
        """Buckets where int8 is slower with confidence (the interval lies above 1)."""
        return [b for b in self.buckets if b.verdict == SLOWER]

    def describe(self) -> str:
        """`0.83x fp32 (95% CI 0.80-0.86): faster; 120 rounds in 6.1 s over 3 shape buckets`."""
        ratio, low, high = self.vs_input
        claim = "no measurable gain" if self.verdict == NO_GAIN else self.verdict
        return (
            f"{ratio:.2f}x fp32 (95% CI {low:.2f}-{high:.2f}): {claim}; {self.rounds} "
            f"interleaved rounds in {self.seconds:.1f} s over {len(self.buckets)} shape "
            f"bucket{'s' * (len(self.buckets) != 1)}"
        )


def measure_latency(
    timer: Timer,
    original: ir.Model,
    prepared: ir.Model,
    quantized: Sequence[ir.Model],
    buckets: Sequence[ShapeBucket],
    *,
    seconds: float = 8.0,
    threads: int | None = None,
) -> tuple[Latency, ...]:
    """Times the fp32 models and each quantized candidate round-robin over `buckets`, where
    `timer` measures; returns one `Latency` per candidate, all from the same rounds."""
    job = BucketJob(
        (original, prepared, *quantized),
        tuple(buckets),
        decide=tuple((2 + i, 1) for i in range(len(quantized))),
        seconds=seconds,
        max_seconds=seconds * CONFIDENCE_BUDGET,
        threads=threads,
    )
    timing = timer.time_buckets(job)
    return tuple(_latency(timing, 2 + i) for i in range(len(quantized)))


def _latency(timing: BucketTiming, candidate: int) -> Latency:
    per_bucket = tuple(
        BucketLatency(
            label=bucket.label,
            share=bucket.share,
            fp32_ms=float(np.median(timing.samples[1][b])),
            int8_ms=float(np.median(timing.samples[candidate][b])),
            ratio=timing.bucket_ratio(candidate, 1, b),
        )
        for b, bucket in enumerate(timing.buckets)
    )
    return Latency(
        fp32_ms=float(np.median(timing.overall(0))),
        int8_ms=float(np.median(timing.overall(candidate))),
        vs_input=timing.ratio(candidate, 0),
        vs_prepared=timing.ratio(candidate, 1),
        rounds=timing.rounds,
        seconds=timing.seconds,
        buckets=per_bucket,
    )
