"""matplotlib figures for the bench report, as base64 PNG that report.html embeds.

matplotlib is the optional `bench` extra; only this module imports it, and only when a report
is written. Figures are built with `matplotlib.figure.Figure` (no pyplot, no global state, no
display needed).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import itertools
from typing import TYPE_CHECKING

import numpy as np

from onnxsmith.errors import UsageError
from onnxsmith.report.tables import display_names, metric_keys, metric_value
from onnxsmith.runtime.benchmark import BenchmarkResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclasses.dataclass(frozen=True)
class Plot:
    """One figure: PNG bytes in base64, or None with `note` saying how to get it."""

    title: str
    png_base64: str | None
    note: str


def require_matplotlib() -> None:
    """Raises a one-line UsageError when the `bench` extra is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise UsageError(
            "bench: --report needs matplotlib — pip install 'onnxsmith[bench]' (or drop --report)"
        ) from e


def all_plots(result: BenchmarkResult) -> list[Plot]:
    """Latency distributions, ratios, accuracy-vs-latency Pareto, throughput vs batch,
    latency vs threads."""
    require_matplotlib()
    return [
        _latency(result),
        _ratios(result),
        _pareto(result),
        _throughput(result),
        _threads(result),
    ]


def _figure(width: float, height: float, columns: int = 1) -> tuple[Figure, list]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _latency(result: BenchmarkResult) -> Plot:
    names = display_names(result)
    samples = [m.sweep[0].samples_ms for m in result.models]
    figure, (violin, ecdf) = _figure(12, 1.2 + 0.55 * len(names) + 1.5, columns=2)
    positions = np.arange(len(names))[::-1]
    violin.violinplot(samples, positions=positions, orientation="horizontal", showextrema=False)
    violin.boxplot(
        samples, positions=positions, orientation="horizontal", widths=0.25, showfliers=False
    )
    violin.set_yticks(positions, names)
    for ax in (violin, ecdf):
        ax.set_xlabel("latency per run (ms)")
        ax.grid(axis="x", alpha=0.3)
    for name, values in zip(names, samples, strict=True):
        ordered = np.sort(values)
        ecdf.step(ordered, np.arange(1, len(ordered) + 1) / len(ordered), where="post", label=name)
    ecdf.set_ylabel("share of runs at or below")
    ecdf.legend(fontsize="small")
    high = max(float(np.max(s)) for s in samples)
    low = min(float(np.min(s)) for s in samples)
    if low > 0 and high / low > 20:  # spread over decades: a linear axis hides the fast models
        violin.set_xscale("log")
        ecdf.set_xscale("log")
    violin.set_title("distribution (box: quartiles, whiskers 1.5 IQR)")
    ecdf.set_title("cumulative distribution")
    note = "per-run latency of every model at the first configuration, interleaved rounds"
    return Plot("latency distributions", _png(figure), note)


def _ratios(result: BenchmarkResult) -> Plot:
    names = display_names(result)
    if len(names) < 2:
        return Plot("p50 ratio vs first model", None, "bench two or more models to compare them")
    figure, (ax,) = _figure(8, 1.2 + 0.45 * len(names))
    positions = np.arange(len(names))[::-1]
    ratios = np.array([m.ratio for m in result.models])
    low = np.array([m.ci95_ratio[0] for m in result.models])
    high = np.array([m.ci95_ratio[1] for m in result.models])
    ax.errorbar(ratios, positions, xerr=[ratios - low, high - ratios], fmt="o", capsize=4)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(positions, names)
    ax.set_ylim(-0.5, len(names) - 0.5)  # default margins put the end rows' dots on the frame
    ax.set_xlabel(f"p50 latency / p50 of {names[0]}  (< 1 is faster)")
    ax.grid(axis="x", alpha=0.3)
    return Plot("p50 ratio vs first model", _png(figure), "dots: ratio; bars: bootstrap 95 % CI")


def _pareto(result: BenchmarkResult) -> Plot:
    keys = metric_keys(result)
    title = "accuracy vs latency (Pareto)"
    if not keys:
        return Plot(title, None, "run with --reference and/or --labels to score accuracy")
    against, metric = keys[0]
    names = display_names(result)
    values = [metric_value(m, against, metric) for m in result.models]
    points = [
        (m.latency.p50, v, n)
        for m, v, n in zip(result.models, values, names, strict=True)
        if v is not None
    ]
    higher_better = next(
        m.accuracy.higher_is_better[metric] for m in result.models if m.accuracy is not None
    )
    figure, (ax,) = _figure(8, 5)
    for latency, value, name in points:
        ax.scatter([latency], [value], s=50)
        ax.annotate(
            name, (latency, value), textcoords="offset points", xytext=(6, 4), fontsize="small"
        )
    front = _front(points, higher_better)
    ax.plot(
        [p[0] for p in front],
        [p[1] for p in front],
        color="grey",
        linestyle="--",
        linewidth=1,
        drawstyle="steps-post",
        # rings mark the front's points: a front of one point draws no line at all
        marker="o",
        markersize=12,
        markerfacecolor="none",
        label="Pareto front",
    )
    ax.set_xlabel("p50 latency (ms)  (left is faster)")
    direction = "higher" if higher_better else "lower"
    ax.set_ylabel(
        f"{metric} vs {'labels' if against == 'labels' else 'reference'} ({direction} is better)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    note = f"{metric} against {'the labels' if against == 'labels' else 'the reference model'}"
    return Plot(title, _png(figure), note)


def _front(
    points: list[tuple[float, float, str]], higher_better: bool
) -> list[tuple[float, float, str]]:
    """Points no other point beats on both latency and the metric, fastest first."""
    front = []
    best = -np.inf
    for latency, value, name in sorted(
        points, key=lambda p: (p[0], -p[1] if higher_better else p[1])
    ):
        score = value if higher_better else -value
        if score > best:
            front.append((latency, value, name))
            best = score
    return front


def _throughput(result: BenchmarkResult) -> Plot:
    title = "throughput vs batch size"
    batches = result.options.batches
    if len(batches) < 2:
        return Plot(title, None, "run with --batch 1,8,32 to sweep batch sizes")
    figure, (ax,) = _figure(8, 5)
    styles = ("-", "--", ":", "-.")
    for index, (name, model) in enumerate(zip(display_names(result), result.models, strict=True)):
        for style, threads in zip(itertools.cycle(styles), result.options.threads):
            points = [p for p in model.sweep if p.threads == threads]
            label = name if len(result.options.threads) == 1 else f"{name}, threads={threads}"
            ax.plot(
                [p.batch for p in points],
                [p.throughput_per_s for p in points],
                marker="o",
                color=f"C{index % 10}",  # one colour per model, one line style per thread count
                linestyle=style,
                label=label,
            )
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(batches), [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("samples per second (single stream)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return Plot(title, _png(figure), "samples per second = batch × runs / total run time")


def _threads(result: BenchmarkResult) -> Plot:
    title = "latency vs intra-op threads"
    threads = result.options.threads
    if len(threads) < 2 or None in threads:
        return Plot(title, None, "run with --threads 1,2,4 to sweep thread counts")
    batch = result.models[0].sweep[0].batch
    figure, (ax,) = _figure(8, 5)
    for name, model in zip(display_names(result), result.models, strict=True):
        points = [p for p in model.sweep if p.batch == batch]
        ax.plot(
            [p.threads for p in points], [p.latency.p50 for p in points], marker="o", label=name
        )
    ax.set_xticks(list(threads), [str(t) for t in threads])
    ax.set_xlabel("intra-op threads")
    ax.set_ylabel(f"p50 latency (ms){'' if batch is None else f', batch {batch}'}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return Plot(title, _png(figure), "p50 per thread count at the first batch size")
