"""The benchmark's tables as plain text cells, rendered by the terminal, Markdown and HTML."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

from onnxsmith.runtime.benchmark import BenchmarkResult, ModelResult, SweepPoint

RATIO_HEADER = "ratio vs first (95% CI)"


@dataclasses.dataclass(frozen=True)
class TextTable:
    """A titled table of strings; `numeric[i]` right-aligns column i."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]


def display_names(result: BenchmarkResult) -> list[str]:
    """File names, or full paths where two models share a file name."""
    names = [Path(m.path).name for m in result.models]
    counts = Counter(names)
    return [n if counts[n] == 1 else m.path for n, m in zip(names, result.models, strict=True)]


def number(value: float | None, digits: int = 3) -> str:
    """`digits` significant digits without scientific notation for everyday magnitudes."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if -3 <= magnitude < 6:
        return f"{value:,.{max(0, digits - 1 - magnitude)}f}"
    return f"{value:.{digits}g}"


def ratio_text(point: SweepPoint, first: bool) -> str:
    if first:
        return "1 (base)"
    low, high = point.ci95_ratio
    return f"{number(point.ratio_p50_vs_first)} ({number(low)}–{number(high)})"


def metric_keys(result: BenchmarkResult) -> list[tuple[str, str]]:
    """(against, metric) pairs present in any model, `against` being reference or labels."""
    keys: list[tuple[str, str]] = []
    for model in result.models:
        if model.accuracy is None:
            continue
        for against, scores in (
            ("labels", model.accuracy.labels),
            ("ref", model.accuracy.reference),
        ):
            keys += [(against, name) for name in scores if (against, name) not in keys]
    return keys


def metric_value(model: ModelResult, against: str, name: str) -> float | None:
    if model.accuracy is None:
        return None
    scores = model.accuracy.labels if against == "labels" else model.accuracy.reference
    return scores.get(name)


def summary_table(result: BenchmarkResult) -> TextTable:
    """Latency of every model at the first configuration of the sweep."""
    first = result.models[0].sweep[0]
    title = f"latency (ms) at {_config(first)}, {len(first.samples_ms)} interleaved rounds"
    headers = ["model", "p50", "p90", "p99", "mean ± std", "min", "items/s", RATIO_HEADER]
    rows = []
    for i, (name, model) in enumerate(zip(display_names(result), result.models, strict=True)):
        lat = model.latency
        rows.append(
            [
                name,
                number(lat.p50),
                number(lat.p90),
                number(lat.p99),
                f"{number(lat.mean)} ± {number(lat.std, 2)}",
                number(lat.min),
                number(model.throughput_per_s),
                ratio_text(model.sweep[0], i == 0),
            ]
        )
    return TextTable(title, headers, rows, [False] + [True] * (len(headers) - 1))


def models_table(result: BenchmarkResult) -> TextTable:
    """Memory, size, start-up time and accuracy of every model."""
    keys = metric_keys(result)
    headers = ["model", "peak RSS MB", "model RSS MB", "init ms", "file MB", "params (M)"]
    headers += [f"{name} ({against})" for against, name in keys]
    rows = []
    for name, model in zip(display_names(result), result.models, strict=True):
        memory = model.sweep[0].memory
        rows.append(
            [
                name,
                number(None if memory is None else memory.peak_rss_mb),
                number(None if memory is None else memory.model_rss_mb),
                number(model.session_init_ms),
                number(model.file_mb),
                number(model.params / 1e6),
                *(number(metric_value(model, a, n), 5) for a, n in keys),
            ]
        )
    return TextTable(
        "memory, size and accuracy", headers, rows, [False] + [True] * (len(headers) - 1)
    )


def sweep_table(result: BenchmarkResult) -> TextTable | None:
    """Every model at every (threads, batch); None without a sweep."""
    if len(result.models[0].sweep) < 2:
        return None
    headers = [
        "model",
        "threads",
        "batch",
        "rounds",
        "p50 ms",
        "p99 ms",
        "items/s",
        "ratio (95% CI)",
        "RSS MB",
    ]
    rows = []
    for i, (name, model) in enumerate(zip(display_names(result), result.models, strict=True)):
        for point in model.sweep:
            memory = None if point.memory is None else point.memory.peak_rss_mb
            rows.append(
                [
                    name,
                    str(point.threads or "default"),
                    str(point.batch or "as given"),
                    str(len(point.samples_ms)),
                    number(point.latency.p50),
                    number(point.latency.p99),
                    number(point.throughput_per_s),
                    ratio_text(point, i == 0),
                    number(memory),
                ]
            )
    return TextTable("sweep", headers, rows, [False] + [True] * (len(headers) - 1))


def all_tables(result: BenchmarkResult) -> list[TextTable]:
    """Latency, memory/size/accuracy, the sweep (when there is one) and the machine."""
    tables = [summary_table(result), models_table(result), sweep_table(result)]
    return [t for t in tables if t is not None] + [machine_table(result)]


def targets_tables(results: list[BenchmarkResult]) -> list[TextTable]:
    """Several targets side by side: each model's p50 and ratio per target, then the machines.

    Ratios are same-run (interleaved on one node); latencies across targets come from
    different machines and runs, so compare them as they are, not as ratios.
    """
    names = display_names(results[0])
    headers = ["model"]
    for result in results:
        headers += [f"p50 ms {result.machine.target}", f"ratio {result.machine.target}"]
    rows = []
    for i, name in enumerate(names):
        row = [name]
        for result in results:
            point = result.models[i].sweep[0]
            row += [number(point.latency.p50), ratio_text(point, i == 0)]
        rows.append(row)
    first = results[0].models[0].sweep[0]
    latency = TextTable(
        f"targets side by side, at {_config(first)}",
        headers,
        rows,
        [False] + [True] * (len(headers) - 1),
    )
    machines = [
        [
            r.machine.target or "this machine",
            (r.machine.node_id or "-")[:12],
            r.machine.cpu_model,
            f"{r.machine.physical_cores or '?'} physical / {r.machine.usable_cores} usable",
            "yes" if r.machine.vnni else "no",
            ", ".join(r.machine.isa_flags) or "-",
            r.machine.onnxruntime,
        ]
        for r in results
    ]
    machine_headers = ["target", "node", "CPU", "cores", "VNNI", "ISA", "onnxruntime"]
    return [latency, TextTable("target machines", machine_headers, machines, [False] * 7)]


def machine_table(result: BenchmarkResult) -> TextTable:
    m = result.machine
    cores = (
        f"{m.logical_cores} logical, {m.physical_cores or '?'} physical, {m.usable_cores} usable"
    )
    rows = [["target", f"{m.target} (Ray node {m.node_id})"]] if m.target else []
    rows += [
        ["CPU", m.cpu_model],
        ["cores", cores],
        ["ISA", ", ".join(m.isa_flags) or "-"],
        ["int8 dot product (VNNI)", "yes" if m.vnni else "no"],
        ["memory", f"{m.memory_gb} GB" if m.memory_gb else "?"],
        ["load average (1, 5, 15 min)", ", ".join(map(str, m.load_average or ())) or "?"],
        ["onnxruntime", f"{m.onnxruntime} ({', '.join(result.providers)} used)"],
        ["OS / Python / numpy", f"{m.os} / {m.python} / {m.numpy}"],
        ["date", result.date],
    ]
    return TextTable("machine", ["field", "value"], rows, [False, False])


def _config(point: SweepPoint) -> str:
    threads = f"threads {point.threads or 'default'}"
    return threads if point.batch is None else f"{threads}, batch {point.batch}"
