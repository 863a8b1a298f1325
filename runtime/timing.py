"""Interleaved latency measurement: the timing code `bench` and `quantize` share.

Timing A fully and then B lets machine noise (other processes, frequency changes) land on one
of them; running A, B, A, B... on the same feed spreads it evenly, so the ratio holds.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
import onnxruntime as ort
from onnxsmith.runtime.data import Feed


def time_interleaved(
    sessions: Sequence[ort.InferenceSession],
    feeds: Sequence[Feed],
    *,
    warmup: int = 5,
    runs: int | None = 50,
    seconds: float | None = None,
    min_runs: int = 3,
    max_runs: int | None = None,
    on_round: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Milliseconds per run for each session, measured round-robin over `feeds`.

    Each round runs every session once on the same feed, in an order that rotates each round
    so no session always runs right after another. Stops after `runs` rounds or, when
    `seconds` is given, once that much wall time has passed (at least `min_runs` rounds, at
    most `max_runs`).
    `on_round(rounds_done)` is called after each round, outside the timed region.
    """
    if not sessions or not feeds:
        raise ValueError("time_interleaved needs at least one session and one feed")
    for _ in range(warmup):
        for session in sessions:
            session.run(None, feeds[0])
    samples: list[list[float]] = [[] for _ in sessions]
    deadline = None if seconds is None else time.perf_counter() + seconds
    round_ = 0
    while True:
        if deadline is None and runs is not None and round_ >= runs:
            break
        if deadline is not None and round_ >= min_runs and time.perf_counter() >= deadline:
            break
        if max_runs is not None and round_ >= max_runs:
            break
        feed = feeds[round_ % len(feeds)]
        shift = round_ % len(sessions)
        for index in [*range(shift, len(sessions)), *range(shift)]:
            start = time.perf_counter()
            sessions[index].run(None, feed)
            samples[index].append((time.perf_counter() - start) * 1e3)
        round_ += 1
        if on_round is not None:
            on_round(round_)
    return [np.asarray(s) for s in samples]


def ratio_ci95(
    candidate: np.ndarray, baseline: np.ndarray, *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Median-latency ratio candidate/baseline with a bootstrap 95 % interval over rounds."""
    rng = np.random.default_rng(seed)
    pairs = min(len(candidate), len(baseline))
    ratio = float(np.median(candidate) / np.median(baseline))
    idx = rng.integers(0, pairs, size=(resamples, pairs))
    boot = np.median(candidate[:pairs][idx], axis=1) / np.median(baseline[:pairs][idx], axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return ratio, float(low), float(high)


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Summary of one model's per-run latencies, in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float

    @classmethod
    def of(cls, samples_ms: np.ndarray) -> LatencyStats:
        """Percentiles use numpy's default linear interpolation; std is the sample std (ddof 1)."""
        if len(samples_ms) == 0:
            raise ValueError("LatencyStats.of needs at least one sample")
        p50, p90, p99 = np.percentile(samples_ms, [50, 90, 99])
        std = float(np.std(samples_ms, ddof=1)) if len(samples_ms) > 1 else 0.0
        return cls(
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            mean=float(np.mean(samples_ms)),
            std=std,
            min=float(np.min(samples_ms)),
        )
