"""`onnxsmith export`: PyTorch → ONNX with dynamic axes and a torch-vs-ORT parity table.

torch-side code is imported inside `run`, so the CLI (and `onnxsmith --help`) works without
torch installed; `run` then fails with one line saying what to install.
"""

from __future__ import annotations

import argparse
import re
import warnings
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from onnxsmith.cli.options import check_json_path
from onnxsmith.cli.render import console, megabytes, pipeline_table
from onnxsmith.errors import UsageError
from onnxsmith.io import save_json

if TYPE_CHECKING:
    from onnxsmith.exporter.export import ExportReport
    from onnxsmith.exporter.parity import ParityReport

HELP = "export a PyTorch model (file.py:factory, module:factory or HF folder) to ONNX, checked"
EXAMPLE = (
    "onnxsmith export models.py:build -o model.onnx --input-shape image=1x3x224x224 --dynamic-batch"
)
_AXIS = re.compile(r"^([^:]+):(-?\d+)=(\w+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", help="FILE.py:FACTORY, package.module:FACTORY, or a Hugging Face model folder"
    )
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, help="ai.onnx opset (default: the exporter's)")
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=1x3x224x224[:DTYPE]",
        help="example input for a factory that returns a bare module (repeat per input, in "
        "forward's order; DTYPE float32 (default), int64 for token ids, ...)",
    )
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="make axis 0 of every input symbolic"
    )
    parser.add_argument(
        "--dynamic-axis",
        action="append",
        default=[],
        metavar="INPUT:AXIS=NAME",
        help="make one axis symbolic, e.g. ids:1=sequence (repeatable)",
    )
    parser.add_argument("--output-names", help="comma-separated output names (or a subset)")
    parser.add_argument(
        "--no-optimize", dest="optimize", action="store_false", help="skip the cleanup recipe"
    )
    parser.add_argument(
        "--no-check", dest="check", action="store_false", help="skip the parity check"
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="parity atol (default 1e-4)")
    parser.add_argument("--rtol", type=float, default=1e-3, help="parity rtol (default 1e-3)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def run(args: argparse.Namespace) -> int:
    from onnxsmith.exporter import require_torch

    require_torch("export")
    check_json_path("export", args.json, [], args.output)
    from onnxsmith.exporter.export import ExportWarning, export
    from onnxsmith.exporter.targets import inputs_from_shapes, load_target

    target = load_target(args.target)
    example, names = target.example_inputs, None
    if example is None:
        if not args.input_shape:
            raise UsageError(
                f"export: {args.target} returns a bare module — pass --input-shape "
                "NAME=1x3x224x224 per input, or return (module, example_inputs)"
            )
        example, names = inputs_from_shapes(target.model, args.input_shape)
    elif args.input_shape:
        raise UsageError(
            f"export: {args.target} already provides example inputs — drop --input-shape"
        )
    axes = dict(target.dynamic_axes or {})
    for spec in args.dynamic_axis:
        name, axis, symbol = _parse_axis(spec)
        axes.setdefault(name, {})[axis] = symbol
    outputs = args.output_names.split(",") if args.output_names else target.output_names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExportWarning)  # printed from the report below
        report = export(
            target.model,
            example,
            args.output,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes or None,
            dynamic_batch=args.dynamic_batch,
            opset=args.opset,
            check=args.check,
            optimize=args.optimize,
            atol=args.atol,
            rtol=args.rtol,
        )
    print_report(report)
    console.print(f"wrote {escape(str(args.output))}")
    if args.json:
        save_json(report.as_dict(), args.json)
    return 0


def _parse_axis(spec: str) -> tuple[str, int, str]:
    match = _AXIS.match(spec)
    if not match:
        raise UsageError(f"export: --dynamic-axis {spec!r} is not INPUT:AXIS=NAME (ids:1=sequence)")
    return match.group(1), int(match.group(2)), match.group(3)


def print_report(report: ExportReport, *, passes: bool = True) -> None:
    """The exporter used (and why), interface, passes (or a one-line total), parity, warnings."""
    if report.fallback_reason:
        console.print(
            f"[bold]exported[/bold] with the {report.exporter} exporter; the dynamo exporter "
            f"was not used: {escape(report.fallback_reason)}"
        )
    else:
        console.print(f"[bold]exported[/bold] with the {report.exporter} exporter")
    console.print(f"inputs: {escape(', '.join(report.inputs))}")
    console.print(f"outputs: {escape(', '.join(report.outputs))}")
    if report.pipeline is not None and passes:
        console.print(pipeline_table(report.pipeline))
    elif report.pipeline is not None and report.pipeline.passes:
        first, last = report.pipeline.passes[0], report.pipeline.passes[-1]
        console.print(
            f"cleanup: {len(report.pipeline.passes)} passes, nodes {first.nodes_before} → "
            f"{last.nodes_after}"
        )
    if report.parity is not None:
        console.print(parity_table(report.parity))
    else:
        console.print("parity: skipped (--no-check)")
    for note in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(note)}")
    console.print(
        f"opset {report.opset}, {report.nodes} nodes, weights {megabytes(report.weight_bytes)}, "
        f"{report.seconds:.1f} s"
    )


def parity_table(parity: ParityReport) -> Table:
    """One row per case and output: shape, max abs / rel error against torch."""
    table = Table(
        title=f"parity vs torch (atol {parity.atol:g}, rtol {parity.rtol:g})",
        title_justify="left",
    )
    for column in ("inputs", "output", "shape", "max abs", "max rel", "ok"):
        table.add_column(column, justify="right" if column.startswith("max") else "left")
    for row in parity.rows:
        ok = "[green]yes[/green]" if row.ok else "[red]NO[/red]"
        if row.note and row.ok:
            ok = f"skipped: {escape(row.note)}"
        elif row.note:
            ok = f"[red]NO[/red]: {escape(row.note)}"
        cells = (row.case, row.output, row.shape, _number(row.max_abs), _number(row.max_rel))
        table.add_row(*(escape(c) for c in cells), ok)
    return table


def _number(value: float) -> str:
    return f"{value:.2e}"
