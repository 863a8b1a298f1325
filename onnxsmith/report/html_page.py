"""report.html: one self-contained page (inline CSS, plots as data: URIs), readable offline."""

from __future__ import annotations

import html
import json

from onnxsmith.report.plots import Plot
from onnxsmith.report.tables import (
    TextTable,
    machine_table,
    models_table,
    summary_table,
    sweep_table,
)
from onnxsmith.runtime.benchmark import BenchmarkResult

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1300px; color: #1d232a; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #d6dbe0; padding: 0.3rem 0.55rem; }
th { background: #f1f4f7; text-align: left; } td.num { text-align: right;
     font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #e3e6ea; }
figcaption, .note { color: #5a6570; font-size: 0.85rem; }
pre { background: #f6f8fa; padding: 0.8rem; white-space: pre-wrap; font-size: 0.8rem; }
"""


def html_table(table: TextTable) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(c)}</td>' if numeric else f"<td>{html.escape(c)}</td>"
            for c, numeric in zip(row, table.numeric, strict=True)
        )
        + "</tr>"
        for row in table.rows
    )
    return f"<h2>{html.escape(table.title)}</h2>\n<table><tr>{head}</tr>{body}</table>\n"


def _figure(plot: Plot) -> str:
    title = html.escape(plot.title)
    if plot.png_base64 is None:
        return f'<h2>{title}</h2>\n<p class="note">{html.escape(plot.note)}</p>\n'
    return (
        f'<h2>{title}</h2>\n<figure><img alt="{title}" '
        f'src="data:image/png;base64,{plot.png_base64}">'
        f"<figcaption>{html.escape(plot.note)}</figcaption></figure>\n"
    )


def render_html(result: BenchmarkResult, plots: list[Plot]) -> str:
    """The report page: summary table, plots, sweep, machine, method and options."""
    models = ", ".join(html.escape(m.path) for m in result.models)
    sweep = sweep_table(result)
    options = json.dumps(result.as_dict()["options"], indent=2, default=str)
    body = [
        "<h1>onnxsmith bench report</h1>",
        f'<p class="note">{models} — {html.escape(result.date)}</p>',
        html_table(summary_table(result)),
        html_table(models_table(result)),
        *(_figure(p) for p in plots),
        html_table(sweep) if sweep is not None else "",
        html_table(machine_table(result)),
        f"<h2>options and method</h2>\n<pre>{html.escape(options)}</pre>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>onnxsmith bench report</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
