"""report.md: the benchmark's tables as GitHub Markdown (the plots live in report.html)."""

from __future__ import annotations

from onnxsmith.report.tables import TextTable, all_tables
from onnxsmith.runtime.benchmark import BenchmarkResult


def markdown_table(table: TextTable) -> str:
    align = ["---:" if numeric else ":---" for numeric in table.numeric]
    lines = [
        f"### {table.title}",
        "",
        "| " + " | ".join(table.headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows
    ]
    return "\n".join(lines) + "\n"


def render_markdown(result: BenchmarkResult) -> str:
    """The whole report as Markdown: every table, then the method."""
    options = result.as_dict()["options"]
    parts = ["# onnxsmith bench report", ""]
    parts += [markdown_table(t) for t in all_tables(result)]
    parts += [
        "### method",
        "",
        f"- timing: {options['timing_method']}",
        f"- memory: {options['memory_method']}",
        f"- feeds: {options['feeds']}",
        "",
        "Plots (latency distributions, ratios, accuracy vs latency, throughput vs batch, "
        "latency vs threads) are in report.html; every number is in report.json.",
        "",
    ]
    return "\n".join(parts)
