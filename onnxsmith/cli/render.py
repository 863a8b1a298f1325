"""Rich tables for the terminal; every verb prints through here."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from onnxsmith.pipeline import PipelineReport
from onnxsmith.summary import ModelSummary

# Width when stdout is not a terminal: rich would fall back to 80 columns and fold table cells
# mid-word (`cls_pr / uned.o / nnx` over three rows) in CI logs and `| tee`; wide enough that
# every table keeps one line per row. $COLUMNS still wins.
LOG_WIDTH = 400


def make_console() -> Console:
    """The terminal's width on a terminal, `LOG_WIDTH` (or $COLUMNS) anywhere else."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=LOG_WIDTH if piped else None)


console = make_console()


def printable(text: str, *, newlines: bool = False) -> str:
    """`text` with control characters escaped (`\\x1b`), so a name cannot drive the terminal."""
    return "".join(
        c if c.isprintable() or (newlines and c == "\n") else c.encode("unicode_escape").decode()
        for c in text
    )


def plain(value: object) -> Text:
    """Untrusted text (paths, model names, metadata) for rich: no markup, no escape codes."""
    return Text(printable(str(value), newlines=True))


def megabytes(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f} MB"


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no rich markup), for scripts."""
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def summary_table(s: ModelSummary) -> Table:
    table = Table(title=plain(s.path or "model"), show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    w = s.weights
    rows = [
        ("file size", megabytes(s.file_bytes)),
        ("IR version", str(s.ir_version)),
        ("opsets", ", ".join(f"{d or 'ai.onnx'}={v}" for d, v in s.opsets.items())),
        ("producer", s.producer or "-"),
        ("inputs", "\n".join(s.inputs)),
        ("outputs", "\n".join(s.outputs)),
        ("nodes", f"{s.nodes} ({s.subgraphs} subgraphs)"),
        ("ops", ", ".join(f"{op}×{n}" for op, n in s.op_histogram.items())),
        ("parameters", f"{w.params:,} ({megabytes(w.bytes)})"),
        ("by dtype", ", ".join(f"{d}: {v['params']:,}" for d, v in w.by_dtype.items()) or "-"),
        ("weights live in", ", ".join(f"{k}: {megabytes(v)}" for k, v in w.by_location.items())),
        ("weight sparsity", f"{w.sparsity:.1%}"),
        ("quantized nodes", str(s.quantized_nodes)),
        ("metadata", "\n".join(f"{k}={v}" for k, v in s.metadata.items()) or "-"),
    ]
    for field, value in rows:
        table.add_row(field, plain(value))
    return table


def pipeline_table(report: PipelineReport) -> Table:
    table = Table(title="passes", title_justify="left")
    for column in ("pass", "nodes", "changed", "what it did", "ms"):
        table.add_column(column, justify="right" if column in ("nodes", "ms") else "left")
    for p in report.passes:
        stats = ", ".join(f"{k}={v}" for k, v in p.stats.items())
        nodes = (
            f"{p.nodes_before} → {p.nodes_after}"
            if p.nodes_before != p.nodes_after
            else str(p.nodes_after)
        )
        changed = "yes" if p.modified else "-"
        table.add_row(plain(p.name), nodes, changed, plain(stats), f"{p.seconds * 1e3:.0f}")
    return table
