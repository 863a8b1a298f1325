"""The measured frontier: fidelity against latency of every configuration the search tried.

With `quantize(..., frontier=True)` each int8 configuration the search scored is timed against
fp32 over the eval set's shape buckets, so a user whose target is out of reach sees what is
reachable on this machine: the report's table and `frontier.svg`. Each distinct graph is timed
in its own interleaved run with fp32, as the final check times the written one: with many
models in one round-robin, copies of one model read 0.80-0.93x for a true 0.895x. When
quantize refuses (no measurable gain), the frontier is still written: `frontier.md` and
`frontier.svg` in the report folder, so the refusal shows what was tried.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from html import escape
from pathlib import Path

import onnx_ir as ir

from onnxsmith.errors import ModelSaveError
from onnxsmith.quantize.latency import Latency, measure_latency
from onnxsmith.quantize.search import SearchResult
from onnxsmith.runtime.timer import Timer
from onnxsmith.runtime.timing import ShapeBucket

_WIDTH, _HEIGHT, _MARGIN = 640, 400, 56
_LOSS_CAP = 10.0  # losses above this many tolerances are drawn at the top edge


@dataclasses.dataclass(frozen=True)
class FrontierPoint:
    """One configuration: its search step, loss as a share of the tolerance, int8 node counts,
    and its latency ratio to fp32 (median, 95 % CI)."""

    label: str
    loss: float
    static: int
    dynamic: int
    ratio: tuple[float, float, float]
    chosen: bool = False


def measure_frontier(
    timer: Timer,
    fp32: tuple[ir.Model, ir.Model],
    result: SearchResult,
    written: Latency,
    buckets: Sequence[ShapeBucket],
    *,
    seconds: float,
    threads: int | None,
) -> tuple[FrontierPoint, ...]:
    """Times each distinct int8 graph the search kept (`keep_trials`) in its own interleaved run
    against fp32 (the original, the prepared); configurations that differ only in ranges or
    weight values share a graph and its timing, and the written model's is `written`, the final
    check. Points in the order the search tried them."""
    ratios = {_graph(result.model): written.vs_input}
    points = []
    for trial, model in result.trial_models:
        graph = _graph(model)
        if graph not in ratios:
            (latency,) = measure_latency(
                timer, *fp32, [model], buckets, seconds=seconds, threads=threads
            )
            ratios[graph] = latency.vs_input
        counts = (trial.static, trial.dynamic)
        points.append(
            FrontierPoint(trial.label, trial.loss, *counts, ratios[graph], model is result.model)
        )
    return tuple(points)


def _graph(model: ir.Model) -> tuple[tuple[str, str, str | None], ...]:
    """What decides a model's latency: its nodes (domain, op, name), not its weight values."""
    return tuple((node.domain, node.op_type, node.name) for node in model.graph)


def frontier_rows(points: Sequence[FrontierPoint]) -> list[str]:
    """Markdown rows of the report's frontier table, numbered as in the plot."""
    rows = ["| # | step | loss / tolerance | static | dynamic | latency vs fp32 (95% CI) |"]
    rows.append("|---:|---|---:|---:|---:|---|")
    for i, p in enumerate(points, start=1):
        mark = " (written)" if p.chosen else ""
        rows.append(
            f"| {i} | {p.label}{mark} | {p.loss:.4g} | {p.static} | {p.dynamic} | "
            f"{p.ratio[0]:.2f}x ({p.ratio[1]:.2f}-{p.ratio[2]:.2f}) |"
        )
    return rows


def frontier_title(source: str) -> str:
    """The plot's and the table's title for the model at `source`."""
    return f"{Path(source).name}: every configuration the search tried"


def write_refused_frontier(
    folder: Path, points: Sequence[FrontierPoint], source: str, refusal: str
) -> None:
    """`frontier.md` (the refusal, then the table) and `frontier.svg` for a run that wrote no
    model."""
    title = frontier_title(source)
    lines = [f"# {title}", "", f"Nothing written: {refusal}.", "", *frontier_rows(points)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "frontier.md").write_text("\n".join(lines) + "\n")
        (folder / "frontier.svg").write_text(frontier_svg(points, title))
    except OSError as e:
        raise ModelSaveError(f"quantize: cannot write the frontier to {folder} ({e})") from e


def frontier_svg(points: Sequence[FrontierPoint], title: str) -> str:
    """A scatter of loss / tolerance (up) against latency vs fp32 (right), numbered points,
    the tolerance (loss 1) and fp32's latency (1x) as dashed lines; the written one in red."""
    x_max = max([1.1, *(p.ratio[2] for p in points)]) * 1.05
    y_max = min(_LOSS_CAP, max([1.5, *(p.loss for p in points)])) * 1.05

    def x(value: float) -> float:
        return _MARGIN + value / x_max * (_WIDTH - 2 * _MARGIN)

    def y(value: float) -> float:
        return _HEIGHT - _MARGIN - min(value, y_max) / y_max * (_HEIGHT - 2 * _MARGIN)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{_WIDTH / 2}" y="20" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<line x1="{_MARGIN}" y1="{y(0)}" x2="{_WIDTH - _MARGIN}" y2="{y(0)}" stroke="black"/>',
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(0)}" y2="{_MARGIN}" stroke="black"/>',
        f'<line x1="{x(0)}" y1="{y(1)}" x2="{_WIDTH - _MARGIN}" y2="{y(1)}" stroke="grey" '
        'stroke-dasharray="4"/>',
        f'<line x1="{x(1)}" y1="{y(0)}" x2="{x(1)}" y2="{_MARGIN}" stroke="grey" '
        'stroke-dasharray="4"/>',
        f'<text x="{_WIDTH / 2}" y="{_HEIGHT - 16}" text-anchor="middle">latency vs fp32 '
        "(95% CI)</text>",
        f'<text x="16" y="{_HEIGHT / 2}" transform="rotate(-90 16 {_HEIGHT / 2})" '
        'text-anchor="middle">loss / tolerance (≤ 1 meets it)</text>',
        f'<text x="{x(1) + 3}" y="{_MARGIN + 10}" fill="grey">fp32</text>',
        f'<text x="{_WIDTH - _MARGIN}" y="{y(1) - 4}" fill="grey" text-anchor="end">'
        "tolerance</text>",
    ]
    for tick in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0):
        if tick <= x_max:
            parts.append(
                f'<text x="{x(tick)}" y="{y(0) + 14}" text-anchor="middle">{tick:g}x</text>'
            )
    for i, p in enumerate(points, start=1):
        colour = "red" if p.chosen else "steelblue"
        cy = y(p.loss)
        parts += [
            f'<line x1="{x(p.ratio[1])}" y1="{cy}" x2="{x(p.ratio[2])}" y2="{cy}" '
            f'stroke="{colour}" stroke-opacity="0.5"/>',
            f'<circle cx="{x(p.ratio[0])}" cy="{cy}" r="4" fill="{colour}"/>',
            f'<text x="{x(p.ratio[0]) + 5}" y="{cy - 5}">{i}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
