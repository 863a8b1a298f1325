"""Calibration: streamed statistics and the four range methods, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from modelzoo import to_ir
from onnx import TensorProto, helper
from onnxsmith.runtime.calibrate import (
    BINS,
    CalibrationTable,
    calibrate,
    collect_statistics,
    compute_ranges,
)
from quant_models import mlp, sequence_feeds

from onnxsmith.errors import DataError, PassError, UsageError


def identity_model():
    """x → Identity → y, so the observed tensor 'x' is exactly the fed data."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"], name="id")],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    return to_ir(graph)


def feeds_of(*arrays):
    return [{"x": np.asarray(a, np.float32)} for a in arrays]


def test_minmax_is_exact_over_feeds_of_different_lengths():
    data = feeds_of([0.5, -2.0], [3.0, 1.0, 0.0, -1.0], [0.25])
    table = calibrate(identity_model(), data, ["x"], "minmax")
    assert table.ranges["x"] == (-2.0, 3.0)
    assert table.feeds == 3


def test_ranges_always_contain_zero():
    table = calibrate(identity_model(), feeds_of([2.0, 3.0], [4.0]), ["x"], "minmax")
    assert table.ranges["x"] == (0.0, 4.0)


def test_growing_range_merges_bins_exactly():
    """Streaming 1 → 1000 regrows the histogram; counts equal np.histogram over the final range."""
    rng = np.random.default_rng(0)
    chunks = [rng.uniform(-1, 1, 500), rng.uniform(-30, 30, 500), rng.uniform(-1000, 900, 500)]
    stats = collect_statistics(identity_model(), feeds_of(*chunks), ["x"])
    s = stats.tensors["x"]
    assert s.limit == 1024.0  # next power of two above 1000
    expected, _ = np.histogram(
        np.concatenate(chunks).astype(np.float32), bins=2 * BINS, range=(-1024.0, 1024.0)
    )
    np.testing.assert_array_equal(s.histogram, expected)
    assert s.count == 1500


def test_all_zero_feeds_before_data_still_count():
    stats = collect_statistics(identity_model(), feeds_of([0.0, 0.0], [1.0, -1.0]), ["x"])
    s = stats.tensors["x"]
    assert s.histogram.sum() == 4 and s.histogram[BINS] == 2  # the zeros seen before the range


def test_percentile_clips_the_tail_only():
    values = np.concatenate([np.linspace(-1, 1, 100_000), [50.0]])  # one outlier in 100k
    stats = collect_statistics(identity_model(), feeds_of(values), ["x"])
    low, high = compute_ranges(stats, "percentile", percentile=99.99).ranges["x"]
    width = stats.tensors["x"].limit / BINS
    assert abs(high - 1.0) <= 2 * width  # the outlier is clipped
    assert abs(low + 1.0) <= 2 * width
    assert compute_ranges(stats, "minmax").ranges["x"][1] == 50.0


@pytest.mark.parametrize("method", ["entropy", "mse"])
def test_entropy_and_mse_clip_a_rare_outlier_but_keep_the_bulk(method):
    # MSE weighs an outlier's squared clipping error against everyone's rounding error, so
    # it clips only when the bulk is large: a million values, two outliers.
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 1, 1_000_000), [40.0, -35.0]])
    stats = collect_statistics(identity_model(), feeds_of(values), ["x"])
    low, high = compute_ranges(stats, method).ranges["x"]
    assert 2.5 < high < 20.0, (low, high)  # covers most of N(0,1), drops the outlier
    assert -20.0 < low < -2.5


def test_mse_keeps_the_full_range_of_uniform_data():
    values = np.linspace(0, 10, 50_000)
    stats = collect_statistics(identity_model(), feeds_of(values), ["x"])
    low, high = compute_ranges(stats, "mse").ranges["x"]
    assert low == 0.0 and high >= 9.5


def test_percentile_works_on_variable_sequence_lengths():
    """ORT's HistogramCalibrater stacks activations and crashes here; we stream them."""
    model = mlp()
    feeds = sequence_feeds(6)
    assert len({f["x"].shape for f in feeds}) > 1
    table = calibrate(model, feeds, ["x", "h1", "y"], "percentile")
    assert set(table.ranges) == {"x", "h1", "y"}
    assert all(low < 0 < high for low, high in table.ranges.values())


def test_channel_statistics_per_last_axis():
    data = [{"x": np.array([[1.0, -5.0], [2.0, 0.5]], np.float32)}]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"], name="id")],
        "identity2d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
    )
    stats = collect_statistics(to_ir(graph), data, [], histograms=False, channel_tensors=["x"])
    np.testing.assert_array_equal(stats.tensors["x"].channel_absmax, [2.0, 5.0])
    np.testing.assert_array_equal(stats.tensors["x"].channel_min, [1.0, -5.0])


def test_the_table_is_frozen():
    table = CalibrationTable("minmax", {"x": (-1.0, 1.0)}, 1)
    with pytest.raises(TypeError):
        table.ranges["x"] = (0.0, 0.0)  # type: ignore[index]


def test_no_feed_is_a_data_error():
    with pytest.raises(DataError, match="no feed"):
        calibrate(identity_model(), [], ["x"])


def test_unknown_tensor_and_method_are_clear_errors():
    with pytest.raises(PassError, match="'nope'"):
        calibrate(identity_model(), feeds_of([1.0]), ["nope"])
    stats = collect_statistics(identity_model(), feeds_of([1.0]), ["x"])
    with pytest.raises(UsageError, match="minmax"):
        compute_ranges(stats, "kl")


def test_the_model_keeps_its_outputs():
    model = identity_model()
    calibrate(model, feeds_of([1.0]), ["x"])
    assert [v.name for v in model.graph.outputs] == ["y"]
