"""Latency over the eval set's shapes, decided with confidence: the bucketing and the decision
rule on synthetic timing arrays (no timing of real runs is asserted)."""

from __future__ import annotations

import numpy as np
import pytest
from onnxsmith.runtime.timing import (
    BucketTiming,
    ShapeBucket,
    keep_timing,
    shape_buckets,
    time_buckets,
    verdict,
)

from onnxsmith.quantize import _not_faster
from onnxsmith.quantize.latency import _latency


def line(width: int) -> dict[str, np.ndarray]:
    return {"x": np.zeros((1, 3, 48, width), np.float32)}


def test_few_distinct_shapes_get_a_bucket_each_smallest_first():
    feeds = [line(320), line(160), line(320), line(640)]
    buckets = shape_buckets(feeds)
    assert [b.label for b in buckets] == ["x 1x3x48x160", "x 1x3x48x320", "x 1x3x48x640"]
    assert [b.share for b in buckets] == [0.25, 0.5, 0.25]
    assert [len(b.feeds) for b in buckets] == [1, 2, 1]


def test_many_shapes_are_cut_into_equal_count_size_quantiles():
    widths = [100, 190, 110, 180, 120, 170, 130, 160, 140, 150]
    buckets = shape_buckets([line(w) for w in widths], max_buckets=4, per_bucket=1)
    assert [b.label for b in buckets] == [
        "x 1x3x48x[100-120]", "x 1x3x48x[130-150]", "x 1x3x48x[160-170]", "x 1x3x48x[180-190]",
    ]  # fmt: skip
    assert [b.share for b in buckets] == [0.3, 0.3, 0.2, 0.2]
    # the representative is the feed nearest the bucket's median size
    assert [b.feeds[0]["x"].shape[-1] for b in buckets] == [110, 140, 170, 190]
    with pytest.raises(ValueError, match="at least one feed"):
        shape_buckets([])


@pytest.mark.parametrize(
    ("ci", "expected"),
    [
        ((0.80, 0.70, 0.90), "faster"),
        ((1.10, 1.02, 1.20), "slower"),
        ((0.72, 0.42, 1.19), "no measurable gain"),  # the PP-OCRv4 rec report of issue 16
        ((0.95, 0.90, 1.00), "no measurable gain"),  # touching 1 is not excluding it
    ],
)
def test_verdict_needs_the_interval_to_exclude_one(ci, expected):
    assert verdict(ci) == expected


def test_timing_goes_on_until_confident_within_the_budget():
    straddles, confident = [(0.9, 0.8, 1.1)], [(0.9, 0.8, 0.95)]
    rule = {"seconds": 2.0, "max_seconds": 6.0, "min_rounds": 10}
    assert keep_timing(3.0, 5, confident, **rule)  # too few rounds
    assert keep_timing(1.0, 50, confident, **rule)  # under the minimum time
    assert not keep_timing(3.0, 50, confident, **rule)  # decided
    assert keep_timing(3.0, 50, straddles, **rule)  # not decided: time left
    assert not keep_timing(6.0, 50, straddles, **rule)  # not decided, budget spent
    assert keep_timing(3.0, 50, [*confident, *straddles], **rule)  # every pair must be decided


def synthetic(fp32: list[float], int8: list[float], shares: list[float]) -> BucketTiming:
    """[original, prepared, int8] x buckets, 60 rounds of seeded 1 % noise around the means."""
    rng = np.random.default_rng(0)

    def noisy(means: list[float]) -> tuple[np.ndarray, ...]:
        return tuple(m * (1 + 0.01 * rng.standard_normal(60)) for m in means)

    buckets = tuple(ShapeBucket(f"b{i}", (), s) for i, s in enumerate(shares))
    return BucketTiming(buckets, (noisy(fp32), noisy(fp32), noisy(int8)), 1.0)


def test_overall_ratio_weights_buckets_by_their_share_of_the_eval_set():
    timing = synthetic([10.0, 20.0], [8.0, 30.0], [0.5, 0.5])
    latency = _latency(timing, 2)
    assert latency.vs_prepared[0] == pytest.approx((4 + 15) / (5 + 10), rel=0.01)
    assert [b.verdict for b in latency.buckets] == ["faster", "slower"]
    assert latency.verdict == "slower" and "slower on this machine" in _not_faster(
        latency, "this machine"
    )


def test_a_model_faster_overall_but_slower_on_one_bucket_is_not_shipped():
    latency = _latency(synthetic([10.0, 10.0], [7.0, 11.0], [0.75, 0.25]), 2)
    assert latency.verdict == "faster"  # 0.75·0.7 + 0.25·1.1 = 0.8
    assert [b.label for b in latency.slower_buckets()] == ["b1"]
    assert "but slower on b1 1.1" in _not_faster(latency, "this machine")
    assert _not_faster(_latency(synthetic([10.0], [7.0], [1.0]), 2), "this machine") == ""


def test_equal_models_end_as_no_measurable_gain_when_the_budget_is_spent():
    class Instant:
        def run(self, names, feed):
            return []

    buckets = shape_buckets([line(16), line(32)])
    timing = time_buckets(
        [Instant(), Instant()], buckets, decide=[(1, 0)], seconds=0.0, max_seconds=0.05,
        min_rounds=12,
    )  # fmt: skip
    assert timing.rounds >= 12
    assert all(len(t) == timing.rounds for per_session in timing.samples for t in per_session)
