"""Streamed calibration: activation statistics over a data dir, then ranges by MinMax, Percentile,
Entropy (KL) or MSE.

This replaces `onnxruntime.quantization`'s calibrators: they keep every batch's activations in
memory (or re-collect histograms per method), and their Percentile/Entropy collectors crash on
feeds whose shapes differ (variable sequence lengths, image sizes). Here one pass over the feeds
keeps, per tensor, the exact min/max and a signed histogram whose range doubles as needed by
merging bin pairs (exact: the range is a power of two and bins stay aligned on zero), so memory
is one feed's activations plus the histograms, and every method is computed from the same pass.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx_ir as ir
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.probe import ProbeSession

from onnxsmith.calibration import CalibrationTable, ChannelMeans
from onnxsmith.errors import DataError, UsageError, name_list

METHODS = ("minmax", "percentile", "entropy", "mse")
BINS = 2048  # per sign; 4096 in all
DEFAULT_PERCENTILE = 99.999
_KL_LEVELS = 128  # int8 levels on |x|, as TensorRT's entropy calibration
_KL_STRIDE = 16
_MSE_GRID = np.linspace(0.05, 1.0, 96)
_QLEVELS = 255  # uint8 activations


@dataclasses.dataclass(frozen=True)
class TensorStats:
    """What one pass saw of one tensor.

    `histogram` counts values in 2*BINS equal bins over [-limit, limit] (bin BINS starts at 0);
    `channel_min`/`channel_max` are per index of the last axis (SmoothQuant reads them), when
    asked and when the last axis has one size throughout.
    """

    name: str
    minimum: float
    maximum: float
    limit: float
    histogram: np.ndarray | None
    channel_min: np.ndarray | None
    channel_max: np.ndarray | None
    count: int

    @property
    def channel_absmax(self) -> np.ndarray | None:
        if self.channel_min is None or self.channel_max is None:
            return None
        return np.maximum(np.abs(self.channel_min), np.abs(self.channel_max))


@dataclasses.dataclass(frozen=True)
class ActivationStats:
    """Statistics of many tensors over `feeds` feeds."""

    tensors: Mapping[str, TensorStats]
    feeds: int


class _Accumulator:
    """Running statistics of one tensor (mutable while streaming; frozen by `freeze`)."""

    def __init__(self, name: str, histogram: bool, channels: bool):
        self.name = name
        self.minimum = math.inf
        self.maximum = -math.inf
        self.limit = 0.0
        self.hist = np.zeros(2 * BINS, np.int64) if histogram else None
        self.channels = channels
        self.channel_min: np.ndarray | None = None
        self.channel_max: np.ndarray | None = None
        self.count = 0
        self.pending_zeros = 0  # zeros seen before any non-zero value fixed the range

    def add(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        x = x.astype(np.float32, copy=False)
        lo, hi = float(x.min()), float(x.max())
        self.minimum, self.maximum = min(self.minimum, lo), max(self.maximum, hi)
        self.count += x.size
        if self.channels and x.ndim >= 1:
            rows = x.reshape(-1, x.shape[-1])
            low, high = rows.min(axis=0), rows.max(axis=0)
            if self.channel_min is None or self.channel_max is None:
                self.channel_min, self.channel_max = low, high
            elif self.channel_min.shape == low.shape:
                self.channel_min = np.minimum(self.channel_min, low)
                self.channel_max = np.maximum(self.channel_max, high)
            else:  # the last axis is not a channel axis here; smoothing cannot use it
                self.channels, self.channel_min, self.channel_max = False, None, None
        if self.hist is not None:
            self._add_histogram(x, max(abs(lo), abs(hi)))

    def _add_histogram(self, x: np.ndarray, absmax: float) -> None:
        assert self.hist is not None
        if absmax == 0.0:
            if self.limit == 0.0:
                self.pending_zeros += x.size
            else:
                self.hist[BINS] += x.size
            return
        needed = 2.0 ** math.ceil(math.log2(absmax))
        if self.limit == 0.0:
            self.limit = needed
            self.hist[BINS] += self.pending_zeros
        elif needed > self.limit:
            self._grow(round(math.log2(needed / self.limit)))
        idx = np.floor(x * (BINS / self.limit)).astype(np.int64) + BINS
        np.clip(idx, 0, 2 * BINS - 1, out=idx)
        self.hist += np.bincount(idx.ravel(), minlength=2 * BINS)

    def _grow(self, doublings: int) -> None:
        """Doubles the range `doublings` times; bin pairs merge exactly (edges stay aligned)."""
        assert self.hist is not None
        factor = min(2**doublings, BINS)
        positive = self.hist[BINS:].reshape(-1, factor).sum(axis=1)
        negative = self.hist[:BINS][::-1].reshape(-1, factor).sum(axis=1)
        pad = np.zeros(BINS - positive.size, np.int64)
        self.hist = np.concatenate([np.concatenate([negative, pad])[::-1], positive, pad])
        self.limit *= 2.0**doublings

    def freeze(self) -> TensorStats:
        seen = self.count > 0
        return TensorStats(
            name=self.name,
            minimum=self.minimum if seen else 0.0,
            maximum=self.maximum if seen else 0.0,
            limit=self.limit,
            histogram=None if self.hist is None else self.hist.copy(),
            channel_min=self.channel_min,
            channel_max=self.channel_max,
            count=self.count,
        )


def collect_statistics(
    model: ir.Model,
    feeds: Iterable[Feed],
    tensors: Sequence[str],
    *,
    histograms: bool = True,
    channel_tensors: Sequence[str] = (),
    limit: int | None = None,
    on_feed: Callable[[], None] | None = None,
) -> ActivationStats:
    """Runs `model` over `feeds` once and accumulates statistics of `tensors`.

    Args:
        model: the float model; left unchanged.
        feeds: streamed one at a time (a `DataDir` or any iterable).
        tensors: main-graph float tensors to observe.
        histograms: also keep histograms (needed for every method but minmax).
        channel_tensors: tensors (among `tensors` or not) whose per-channel min/max to keep.
        limit: stop after this many feeds.
        on_feed: called after each feed (progress bars).

    Raises:
        DataError: no feed, or a feed ORT cannot run.
    """
    names = list(dict.fromkeys([*tensors, *channel_tensors]))
    probe = ProbeSession(model, names)
    channel_set = set(channel_tensors)
    stats = {n: _Accumulator(n, histograms and n in tensors, n in channel_set) for n in names}
    count = 0
    for feed in feeds:
        if limit is not None and count >= limit:
            break
        observed = probe.run(feed, "quantize: calibration")
        for name, array in observed.items():
            stats[name].add(array)
        count += 1
        if on_feed is not None:
            on_feed()
    if count == 0:
        raise DataError("quantize: the calibration data holds no feed — add .npz files to it")
    return ActivationStats({n: s.freeze() for n, s in stats.items()}, count)


def compute_ranges(
    stats: ActivationStats, method: str, *, percentile: float = DEFAULT_PERCENTILE
) -> CalibrationTable:
    """A `CalibrationTable` from collected statistics by `method` (see METHODS)."""
    if method not in METHODS:
        raise UsageError(
            f"unknown calibration method {method!r} — choose from {name_list(METHODS)}"
        )
    ranges = {}
    for name, s in stats.tensors.items():
        if method == "minmax" or s.histogram is None or s.limit == 0.0:
            low, high = s.minimum, s.maximum
        elif method == "percentile":
            low, high = _percentile_range(s, percentile)
        elif method == "entropy":
            low, high = _entropy_range(s)
        else:
            low, high = _mse_range(s)
        ranges[name] = (min(float(low), 0.0), max(float(high), 0.0))
    return CalibrationTable(method=method, ranges=ranges, feeds=stats.feeds)


def calibrate(
    model: ir.Model,
    feeds: Iterable[Feed],
    tensors: Sequence[str],
    method: str = "minmax",
    *,
    percentile: float = DEFAULT_PERCENTILE,
) -> CalibrationTable:
    """Collects statistics of `tensors` over `feeds` and returns ranges by `method`."""
    stats = collect_statistics(model, feeds, tensors, histograms=method != "minmax")
    return compute_ranges(stats, method, percentile=percentile)


def channel_means(
    model: ir.Model,
    feeds: Iterable[Feed],
    axes: Mapping[str, int],
    *,
    limit: int | None = None,
) -> ChannelMeans:
    """Runs `model` over `feeds` and averages each tensor in `axes` over all but its channel axis.

    Args:
        model: the float model; left unchanged.
        feeds: streamed one at a time.
        axes: tensor name → its channel axis (1 for NCHW activations, -1 for MatMul inputs).
        limit: stop after this many feeds (means settle long before ranges do).

    Raises:
        DataError: no feed, or a channel axis whose size changes between feeds.
    """
    probe = ProbeSession(model, list(axes))
    sums: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(axes, 0)
    used = 0
    for feed in feeds:
        if limit is not None and used >= limit:
            break
        for name, array in probe.run(feed, "quantize: channel means").items():
            channels = np.moveaxis(array, axes[name], -1).reshape(-1, array.shape[axes[name]])
            total = channels.astype(np.float64).sum(axis=0)
            if name in sums and sums[name].shape != total.shape:
                raise DataError(
                    f"quantize: tensor {name!r} has {total.size} channels on one calibration feed "
                    f"and {sums[name].size} on another — its channel axis must not vary"
                )
            sums[name] = sums[name] + total if name in sums else total
            counts[name] += channels.shape[0]
        used += 1
    if used == 0:
        raise DataError("quantize: the calibration data holds no feed — add .npz files to it")
    means = {name: sums[name] / counts[name] for name in sums if counts[name] > 0}
    return ChannelMeans(means, used)


def _edges(s: TensorStats) -> np.ndarray:
    return np.linspace(-s.limit, s.limit, 2 * BINS + 1)


def _percentile_range(s: TensorStats, percentile: float) -> tuple[float, float]:
    assert s.histogram is not None
    cumulative = np.cumsum(s.histogram)
    total = cumulative[-1]
    tail = total * (1.0 - percentile / 100.0)
    edges = _edges(s)
    low_bin = int(np.searchsorted(cumulative, tail, side="right"))
    high_bin = int(np.searchsorted(cumulative, total - tail, side="left"))
    low = max(s.minimum, edges[min(low_bin, 2 * BINS - 1)])
    high = min(s.maximum, edges[min(high_bin, 2 * BINS - 1) + 1])
    return low, high


def _entropy_range(s: TensorStats) -> tuple[float, float]:
    """Threshold on |x| that minimizes KL(P || Q) between clipped and 128-level histograms."""
    assert s.histogram is not None
    hist = (s.histogram[BINS:] + s.histogram[:BINS][::-1]).astype(np.float64)
    width = s.limit / BINS
    last = int(np.flatnonzero(hist)[-1]) + 1 if hist.any() else BINS
    best_kl, best_bins = math.inf, last
    for bins in range(_KL_LEVELS, last + _KL_STRIDE, _KL_STRIDE):
        bins = min(bins, last)
        kl = _kl_divergence(hist, bins)
        if kl < best_kl:
            best_kl, best_bins = kl, bins
    threshold = best_bins * width
    return max(s.minimum, -threshold), min(s.maximum, threshold)


def _kl_divergence(hist: np.ndarray, bins: int) -> float:
    reference = hist[:bins].copy()
    reference[bins - 1] += hist[bins:].sum()
    nonzero = reference > 0
    groups = np.minimum((np.arange(bins) * _KL_LEVELS) // bins, _KL_LEVELS - 1)
    sums = np.bincount(groups, weights=hist[:bins], minlength=_KL_LEVELS)
    counts = np.bincount(groups, weights=nonzero.astype(np.float64), minlength=_KL_LEVELS)
    expanded = np.where(nonzero, sums[groups] / np.maximum(counts[groups], 1.0), 0.0)
    p = reference / reference.sum()
    q = expanded / max(expanded.sum(), 1e-30)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


def _mse_range(s: TensorStats) -> tuple[float, float]:
    """Shrinks (min, max) by the factor that minimizes the expected uint8 quantization MSE.

    Expected error from the histogram: values inside the range cost scale²/12 (rounding), values
    outside cost their squared distance to the nearest end (clipping).
    """
    assert s.histogram is not None
    edges = _edges(s)
    centers = (edges[:-1] + edges[1:]) / 2
    counts = s.histogram.astype(np.float64)
    lows = np.minimum(s.minimum * _MSE_GRID, 0.0)[:, None]
    highs = np.maximum(s.maximum * _MSE_GRID, 0.0)[:, None]
    scales = np.maximum(highs - lows, 1e-12) / _QLEVELS
    clipped = np.clip(centers[None, :], lows, highs)
    inside = (centers[None, :] >= lows) & (centers[None, :] <= highs)
    error = (centers[None, :] - clipped) ** 2 + inside * scales**2 / 12.0
    best = int(np.argmin(error @ counts))
    return float(lows[best, 0]), float(highs[best, 0])
