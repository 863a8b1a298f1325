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


FASTER, SLOWER, NO_GAIN = "faster", "slower", "no measurable gain"
# A bootstrap interval costs time growing with the rounds: check again only once they have
# grown by a quarter, so the checks cost a few times the last one.
_CHECK_GROWTH = 1.25


def verdict(ci: tuple[float, float, float]) -> str:
    """`faster` when the 95 % interval of candidate/baseline lies below 1, `slower` when above,
    else `no measurable gain` (the interval straddles 1: no claim either way)."""
    _, low, high = ci
    if high < 1.0:
        return FASTER
    if low > 1.0:
        return SLOWER
    return NO_GAIN


def keep_timing(
    elapsed: float,
    rounds: int,
    intervals: Sequence[tuple[float, float, float]],
    *,
    seconds: float,
    max_seconds: float,
    min_rounds: int,
) -> bool:
    """The stopping rule of `time_buckets`: at least `seconds` and `min_rounds`, then on until
    every interval excludes 1 or `max_seconds` have passed."""
    if rounds < min_rounds or elapsed < seconds:
        return True
    if elapsed >= max_seconds:
        return False
    return any(verdict(ci) == NO_GAIN for ci in intervals)


@dataclasses.dataclass(frozen=True)
class ShapeBucket:
    """Eval feeds of similar input shapes, timed through a few representatives.

    Attributes:
        label: the inputs' shapes, varying dims as ranges (`x 1x3x48x[160-320]`).
        feeds: the representatives, nearest the bucket's median size.
        share: the bucket's share of the eval feeds (its weight in the overall ratio).
    """

    label: str
    feeds: tuple[Feed, ...]
    share: float


def shape_buckets(
    feeds: Sequence[Feed], *, max_buckets: int = 4, per_bucket: int = 2
) -> tuple[ShapeBucket, ...]:
    """Groups feeds by their inputs' shapes, as variable H/W/T models see them.

    Up to `max_buckets` distinct shapes: one bucket each. More: feeds sorted by their total
    input elements and cut into `max_buckets` groups of (nearly) equal count.
    """
    if not feeds:
        raise ValueError("shape_buckets needs at least one feed")

    def shapes(feed: Feed) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(np.shape(feed[name])) for name in sorted(feed))

    def size(feed: Feed) -> int:
        return sum(int(np.size(feed[name])) for name in feed)

    distinct = list(dict.fromkeys(shapes(f) for f in feeds))
    if len(distinct) <= max_buckets:
        distinct.sort(key=lambda s: sum(int(np.prod(d)) for d in s))
        groups = [[f for f in feeds if shapes(f) == s] for s in distinct]
    else:
        ordered = sorted(feeds, key=size)
        parts = np.array_split(np.arange(len(ordered)), max_buckets)
        groups = [[ordered[i] for i in part] for part in parts]
    buckets = []
    for group in groups:
        middle = size(group[len(group) // 2])
        chosen = sorted(group, key=lambda f: abs(size(f) - middle))[:per_bucket]
        buckets.append(ShapeBucket(_label(group), tuple(chosen), len(group) / len(feeds)))
    return tuple(buckets)


def _label(group: Sequence[Feed]) -> str:
    parts = []
    for name in sorted(group[0]):
        dims = np.array([np.shape(f[name]) for f in group])
        shown = [
            str(lo) if lo == hi else f"[{lo}-{hi}]"
            for lo, hi in zip(dims.min(0), dims.max(0), strict=True)
        ]
        parts.append(f"{name} {'x'.join(shown) or 'scalar'}")
    return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class BucketTiming:
    """Milliseconds per round, per session and per shape bucket, from one interleaved run."""

    buckets: tuple[ShapeBucket, ...]
    samples: tuple[tuple[np.ndarray, ...], ...]  # [session][bucket] -> ms, one per round
    seconds: float

    @property
    def rounds(self) -> int:
        return len(self.samples[0][0])

    def overall(self, session: int) -> np.ndarray:
        """Per round, the buckets' times weighted by their share of the eval feeds."""
        weights = np.array([b.share for b in self.buckets])
        return weights @ np.stack(self.samples[session])

    def ratio(self, candidate: int, baseline: int) -> tuple[float, float, float]:
        """Overall median ratio candidate/baseline with its 95 % interval."""
        return ratio_ci95(self.overall(candidate), self.overall(baseline))

    def bucket_ratio(
        self, candidate: int, baseline: int, bucket: int
    ) -> tuple[float, float, float]:
        return ratio_ci95(self.samples[candidate][bucket], self.samples[baseline][bucket])


def time_buckets(
    sessions: Sequence[ort.InferenceSession],
    buckets: Sequence[ShapeBucket],
    *,
    decide: Sequence[tuple[int, int]],
    seconds: float,
    max_seconds: float,
    warmup: int = 2,
    min_rounds: int = 10,
) -> BucketTiming:
    """Times every session on every bucket, interleaved, until the decision is confident.

    A round runs each bucket's next representative on all sessions (order rotating). Timing
    goes on for at least `seconds`, then until the overall interval of every (candidate,
    baseline) pair in `decide` excludes 1, or `max_seconds` have passed (see `keep_timing`).
    """
    for bucket in buckets:
        for _ in range(warmup):
            for session in sessions:
                session.run(None, bucket.feeds[0])
    samples: list[list[list[float]]] = [[[] for _ in buckets] for _ in sessions]
    started, next_check = time.perf_counter(), 0
    round_ = 0
    while True:
        elapsed = time.perf_counter() - started
        ready = elapsed >= seconds and round_ >= min_rounds
        if ready and (elapsed >= max_seconds or round_ >= next_check):
            timing = _freeze(buckets, samples, elapsed)
            if elapsed >= max_seconds:
                return timing
            intervals = [timing.ratio(c, b) for c, b in decide]
            if not keep_timing(
                elapsed, round_, intervals, seconds=seconds, max_seconds=max_seconds,
                min_rounds=min_rounds,
            ):  # fmt: skip
                return timing
            next_check = int(round_ * _CHECK_GROWTH) + 1
        for b, bucket in enumerate(buckets):
            feed = bucket.feeds[round_ % len(bucket.feeds)]
            shift = (round_ + b) % len(sessions)
            for index in [*range(shift, len(sessions)), *range(shift)]:
                start = time.perf_counter()
                sessions[index].run(None, feed)
                samples[index][b].append((time.perf_counter() - start) * 1e3)
        round_ += 1


def _freeze(
    buckets: Sequence[ShapeBucket], samples: list[list[list[float]]], elapsed: float
) -> BucketTiming:
    frozen = tuple(tuple(np.asarray(t) for t in per_bucket) for per_bucket in samples)
    return BucketTiming(tuple(buckets), frozen, elapsed)
