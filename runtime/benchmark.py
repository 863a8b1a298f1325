"""`benchmark`: interleaved latency, throughput, peak memory and accuracy of several models.

This is the one timing path of onnxsmith: `bench` prints it, and quantize, prune, merge,
distill and the demo call it to decide whether a transform made a model faster. Example:

    from onnxsmith.runtime.benchmark import BenchOptions, benchmark

    result = benchmark(
        ["model.onnx", int8_model],             # paths or ir.Model objects; the first is the base
        feeds,                                  # list of {input name: array}, or a DataDir
        options=BenchOptions(seconds=3, memory=False),
    )
    int8 = result.models[1]
    int8.ratio           # p50(int8) / p50(first model), same run, interleaved
    int8.ci95_ratio      # bootstrap 95 % interval of that ratio: (lo, hi); hi < 1 → faster
    int8.latency.p50     # milliseconds (LatencyStats: p50 p90 p99 mean std min)
    result.as_dict()     # the JSON `onnxsmith bench --json` writes

How it measures: every model gets a session with the same options; after warm-up (at least one
pass over the feeds), the models run round-robin on the same feed, in an order that rotates
each round (`time_interleaved`), so machine noise lands on all of them alike; Python's garbage
collector is off while timing. Each (threads, batch) of a sweep is timed the same way. Peak
memory comes from a fresh child process per model and configuration (`memory.METHOD`).
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
from onnxsmith.runtime.accuracy import AccuracyResult, AccuracySpec, ModelLike, evaluate
from onnxsmith.runtime.batching import batch_feeds, batch_inputs, feed_rows
from onnxsmith.runtime.data import Feed, check_array
from onnxsmith.runtime.machine import MachineInfo, machine_info
from onnxsmith.runtime.memory import METHOD as MEMORY_METHOD
from onnxsmith.runtime.memory import MemoryUsage, measure_peak_rss
from onnxsmith.runtime.session import create_session, resolve_providers, run
from onnxsmith.runtime.timing import LatencyStats, ratio_ci95, time_interleaved

from onnxsmith.errors import DataError, UsageError, name_list
from onnxsmith.io import load_model, save_model
from onnxsmith.signature import TensorSpec, input_specs
from onnxsmith.summary import summarize

Progress = Callable[[str, float, float], None]  # (task, done, total)

DEFAULT_SECONDS = 5.0
TIMING_METHOD = (
    "same session options for every model; warm-up of at least one pass over the feeds; then "
    "round-robin rounds (every model once per round on the same feed, order rotating each "
    "round) with Python's GC off; ratio = p50 / p50 of the first model with a bootstrap 95 % "
    "interval over rounds; throughput = samples per second of single-stream runs"
)


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """How to time. `runs` (exact rounds) and `seconds` (a time budget per configuration, at
    least `min_runs` rounds) are exclusive; with neither, `seconds` is 5.

    Attributes:
        batches: batch sizes to sweep (feeds are stacked/repeated, see `batch_feeds`); empty:
            the feeds as given.
        threads: intra-op thread counts to sweep; None is ORT's default (one per physical core).
        warmup: warm-up rounds (at least one pass over the feeds is always made).
        providers: execution providers, short (`cpu`) or full names.
        optimization: ORT graph optimization level (disable, basic, extended, all).
        memory: measure peak RSS in a child process per model and configuration.
    """

    batches: tuple[int, ...] = ()
    threads: tuple[int | None, ...] = (None,)
    warmup: int = 10
    runs: int | None = None
    seconds: float | None = None
    min_runs: int = 20
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    optimization: str = "all"
    memory: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.runs is not None and self.seconds is not None:
            problems.append("give runs or seconds, not both")
        if self.runs is not None and self.runs < 1:
            problems.append(f"runs must be >= 1, got {self.runs}")
        if self.seconds is not None and not self.seconds > 0:
            problems.append(f"seconds must be > 0, got {self.seconds}")
        if self.warmup < 0 or self.min_runs < 1:
            problems.append("warmup must be >= 0 and min_runs >= 1")
        if any(b < 1 for b in self.batches):
            problems.append(f"batch sizes must be >= 1, got {list(self.batches)}")
        if not self.threads or any(t is not None and t < 1 for t in self.threads):
            problems.append(f"thread counts must be >= 1, got {list(self.threads)}")
        if self.optimization not in ("disable", "basic", "extended", "all"):
            problems.append(f"unknown optimization level {self.optimization!r}")
        if problems:
            raise UsageError(f"bench: {'; '.join(problems)} — fix the options")

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.runs is None and self.seconds is None:
            data["seconds"] = DEFAULT_SECONDS
        return data


@dataclasses.dataclass(frozen=True, eq=False)
class SweepPoint:
    """One model timed at one (threads, batch); `batch` None means the feeds as given."""

    threads: int | None
    batch: int | None
    samples_ms: np.ndarray
    latency: LatencyStats
    throughput_per_s: float
    ratio_p50_vs_first: float
    ci95_ratio: tuple[float, float]
    session_init_ms: float
    memory: MemoryUsage | None

    def as_dict(self) -> dict[str, Any]:
        memory = self.memory
        return {
            "threads": self.threads,
            "batch": self.batch,
            "runs": len(self.samples_ms),
            "latency_ms": dataclasses.asdict(self.latency),
            "throughput_per_s": self.throughput_per_s,
            "ratio_p50_vs_first": self.ratio_p50_vs_first,
            "ci95_ratio": list(self.ci95_ratio),
            "peak_rss_mb": None if memory is None else round(memory.peak_rss_mb, 1),
            "model_rss_mb": None if memory is None else round(memory.model_rss_mb, 1),
            "session_init_ms": self.session_init_ms,
        }


@dataclasses.dataclass(frozen=True, eq=False)
class ModelResult:
    """One model: its sweep (first entry = first threads value, first batch) and accuracy.

    The flat properties (`latency`, `ratio`, ...) describe the first sweep entry.
    """

    path: str
    file_mb: float | None
    params: int
    sweep: tuple[SweepPoint, ...]
    accuracy: AccuracyResult | None

    @property
    def latency(self) -> LatencyStats:
        return self.sweep[0].latency

    @property
    def ratio(self) -> float:
        return self.sweep[0].ratio_p50_vs_first

    @property
    def ci95_ratio(self) -> tuple[float, float]:
        return self.sweep[0].ci95_ratio

    @property
    def throughput_per_s(self) -> float:
        return self.sweep[0].throughput_per_s

    @property
    def peak_rss_mb(self) -> float | None:
        memory = self.sweep[0].memory
        return None if memory is None else memory.peak_rss_mb

    @property
    def session_init_ms(self) -> float:
        """Median in-process session creation time over the sweep's configurations."""
        return float(np.median([p.session_init_ms for p in self.sweep]))

    def as_dict(self) -> dict[str, Any]:
        first = self.sweep[0].as_dict()
        return {
            "path": self.path,
            "latency_ms": first["latency_ms"],
            "throughput_per_s": first["throughput_per_s"],
            "ratio_p50_vs_first": first["ratio_p50_vs_first"],
            "ci95_ratio": first["ci95_ratio"],
            "peak_rss_mb": first["peak_rss_mb"],
            "session_init_ms": self.session_init_ms,
            "file_mb": self.file_mb,
            "params": self.params,
            "metric": {} if self.accuracy is None else self.accuracy.as_dict(),
            "sweep": [p.as_dict() for p in self.sweep],
        }


@dataclasses.dataclass(frozen=True, eq=False)
class BenchmarkResult:
    """Everything one benchmark measured; `as_dict()` is the `--json` schema."""

    models: tuple[ModelResult, ...]
    machine: MachineInfo
    options: BenchOptions
    providers: tuple[str, ...]
    feeds: dict[str, list[str]]  # input name → distinct shapes timed (as given, before --batch)
    date: str
    context: dict[str, Any]  # where the feeds, eval data and reference came from

    def as_dict(self) -> dict[str, Any]:
        options = {
            **self.options.as_dict(),
            "providers": list(self.providers),
            "feeds": self.feeds,
            "date": self.date,
            "timing_method": TIMING_METHOD,
            "memory_method": MEMORY_METHOD if self.options.memory else "not measured",
            **self.context,
        }
        return {
            "models": [m.as_dict() for m in self.models],
            "machine": self.machine.as_dict(),
            "options": options,
        }


@dataclasses.dataclass(frozen=True)
class _Entry:
    label: str
    path: Path  # what ORT loads (in-memory models are saved to a temp folder first)
    specs: list[TensorSpec]
    file_mb: float | None
    params: int


def benchmark(
    models: Sequence[ModelLike],
    feeds: Iterable[Feed],
    *,
    options: BenchOptions | None = None,
    accuracy: AccuracySpec | None = None,
    names: Sequence[str] | None = None,
    context: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> BenchmarkResult:
    """Times `models` interleaved on `feeds`, optionally with memory and accuracy.

    Args:
        models: .onnx paths or `ir.Model`s sharing the same inputs; the first is the baseline
            of every ratio.
        feeds: `{input name: array}` dicts (a `DataDir` works); all of them are held in memory.
        options: timing options (see `BenchOptions`).
        accuracy: eval data, reference and/or labels, metrics (see `AccuracySpec`).
        names: labels for the models in results (default: the path, or the graph name).
        context: recorded verbatim under `options` in the JSON (data dir, eval dir, ...).
        progress: called as `progress(task, done, total)` during warm-up, timing, memory
            probes and evaluation.

    Raises:
        UsageError: bad options, unknown providers, no models.
        DataError: no feeds, or feeds that do not fit a model's inputs.
        SessionError: ORT cannot load or run a model.
    """
    options = options or BenchOptions()
    if not models:
        raise UsageError("bench: no models given — pass at least one .onnx file")
    if names is not None and len(names) != len(models):
        raise UsageError(f"bench: {len(names)} names for {len(models)} models — give one each")
    providers = tuple(resolve_providers(options.providers))
    feeds = list(feeds)
    if not feeds:
        raise DataError("bench: no feeds to time — give a data dir with at least one .npz")
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="onnxsmith-bench-") as tmp:
        entries = [
            _prepare(model, names[i] if names else None, Path(tmp) / f"model{i}.onnx")
            for i, model in enumerate(models)
        ]
        for entry in entries:
            _check_feeds(entry, feeds)
        # Accuracy first: a mismatched output or label fails in seconds, not after the timing.
        scores: list[AccuracyResult | None] = [None] * len(entries)
        if accuracy is not None:
            scores = list(
                evaluate(
                    [e.path for e in entries],
                    accuracy,
                    threads=options.threads[0],
                    providers=providers,
                    optimization=options.optimization,
                    progress=progress,
                )
            )
        points = _sweep(entries, feeds, options, providers, progress)
    results = tuple(
        ModelResult(e.label, e.file_mb, e.params, tuple(p), score)
        for e, p, score in zip(entries, points, scores, strict=True)
    )
    return BenchmarkResult(
        models=results,
        machine=machine_info(),
        options=options,
        providers=providers,
        feeds=_shapes(feeds),
        date=date,
        context=dict(context or {}),
    )


def with_accuracy(
    result: BenchmarkResult, scores: Sequence[AccuracyResult | None]
) -> BenchmarkResult:
    """`result` with each model's accuracy set (scored elsewhere, e.g. on the host while the
    timing ran on a cluster node)."""
    models = tuple(
        dataclasses.replace(model, accuracy=score)
        for model, score in zip(result.models, scores, strict=True)
    )
    return dataclasses.replace(result, models=models)


def _prepare(model: ModelLike, name: str | None, scratch: Path) -> _Entry:
    if isinstance(model, ir.Model):
        path = save_model(model, scratch)
        label = name or f"{model.graph.name or 'model'} (in memory)"
    else:
        path = Path(model)
        label = name or str(model)
    loaded = load_model(path)
    summary = summarize(loaded)
    file_mb = None if summary.file_bytes is None else summary.file_bytes / 2**20
    return _Entry(label, path, input_specs(loaded), file_mb, summary.weights.params)


def _check_feeds(entry: _Entry, feeds: Sequence[Feed]) -> None:
    expected = {s.name for s in entry.specs}
    for i, feed in enumerate(feeds):
        if set(feed) != expected:
            raise DataError(
                f"bench: feed {i} has inputs {name_list(sorted(feed))} but {entry.label} "
                f"expects {name_list(sorted(expected))} — bench compares models with the same "
                "inputs"
            )
        for spec in entry.specs:
            check_array(feed[spec.name], spec, f"bench: feed {i} for {entry.label}")


def _sweep(
    entries: Sequence[_Entry],
    feeds: list[Feed],
    options: BenchOptions,
    providers: tuple[str, ...],
    progress: Progress | None,
) -> list[list[SweepPoint]]:
    """Times every (threads, batch) configuration; returns each model's points in that order."""
    specs = entries[0].specs
    batched = batch_inputs(specs)
    points: list[list[SweepPoint]] = [[] for _ in entries]
    for threads in options.threads:
        for batch in options.batches or (None,):
            config = _config_name(threads, batch)
            config_feeds = feeds if batch is None else batch_feeds(feeds, specs, batch)
            samples, init_ms = _time(
                entries, config_feeds, threads, options, providers, config, progress
            )
            rows = [feed_rows(f, batched) for f in config_feeds]
            for i, entry in enumerate(entries):
                memory = None
                if options.memory:
                    if progress is not None:
                        progress(f"peak memory {config}", i, len(entries))
                    memory = measure_peak_rss(
                        entry.path,
                        config_feeds,
                        threads=threads,
                        providers=providers,
                        optimization=options.optimization,
                    )
                    if progress is not None:
                        progress(f"peak memory {config}", i + 1, len(entries))
                ratio, low, high = ratio_ci95(samples[i], samples[0])
                run_rows = sum(rows[r % len(rows)] for r in range(len(samples[i])))
                points[i].append(
                    SweepPoint(
                        threads=threads,
                        batch=batch,
                        samples_ms=samples[i],
                        latency=LatencyStats.of(samples[i]),
                        throughput_per_s=run_rows / (float(np.sum(samples[i])) / 1e3),
                        ratio_p50_vs_first=ratio,
                        ci95_ratio=(low, high),
                        session_init_ms=init_ms[i],
                        memory=memory,
                    )
                )
    return points


def _time(
    entries: Sequence[_Entry],
    feeds: list[Feed],
    threads: int | None,
    options: BenchOptions,
    providers: tuple[str, ...],
    config: str,
    progress: Progress | None,
) -> tuple[list[np.ndarray], list[float]]:
    """Per-run milliseconds of every model at one configuration, and session creation times."""
    sessions, init_ms = [], []
    for entry in entries:
        start = time.perf_counter()
        sessions.append(
            create_session(
                entry.path, threads=threads, providers=providers, optimization=options.optimization
            )
        )
        init_ms.append((time.perf_counter() - start) * 1e3)
    warmup = max(options.warmup, len(feeds))
    for r in range(warmup):
        for session, entry in zip(sessions, entries, strict=True):
            run(session, feeds[r % len(feeds)], entry.label)
        if progress is not None:
            progress(f"warm-up {config}", r + 1, warmup)
    seconds = None if options.runs is not None else (options.seconds or DEFAULT_SECONDS)
    start = time.perf_counter()

    def on_round(done: int) -> None:
        if progress is None:
            return
        if options.runs is not None:
            progress(f"timing {config}", done, options.runs)
        else:
            elapsed = (time.perf_counter() - start) / (seconds or DEFAULT_SECONDS)
            progress(f"timing {config}", min(1.0, elapsed, done / options.min_runs), 1.0)

    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed run would land on one model only
    try:
        samples = time_interleaved(
            sessions,
            feeds,
            warmup=0,
            runs=options.runs,
            seconds=seconds,
            min_runs=options.min_runs,
            on_round=on_round,
        )
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, init_ms


def _config_name(threads: int | None, batch: int | None) -> str:
    parts = [f"threads={threads or 'default'}"]
    if batch is not None:
        parts.append(f"batch={batch}")
    return ", ".join(parts)


def _shapes(feeds: Sequence[Feed]) -> dict[str, list[str]]:
    shapes: dict[str, list[str]] = {}
    for feed in feeds:
        for name, array in feed.items():
            text = f"{array.dtype}[{'x'.join(str(d) for d in array.shape)}]"
            if text not in shapes.setdefault(name, []):
                shapes[name].append(text)
    return shapes
