"""`onnxsmith quantize`: int8 that is accurate and faster, chosen per op on this machine."""

from __future__ import annotations

import argparse

from rich.table import Table

from onnxsmith.cli.options import add_metric_option, add_target_options, target_timer
from onnxsmith.cli.render import console, megabytes
from onnxsmith.errors import UsageError
from onnxsmith.passes.quantize.plan import MODES
from onnxsmith.quantize import quantize
from onnxsmith.quantize.report import QuantizeReport
from onnxsmith.runtime.calibrate import METHODS

HELP = "int8 quantization: static QDQ, dynamic or fp32 per op, measured for accuracy and speed"
EXAMPLE = "onnxsmith quantize model.onnx -o model.int8.onnx --calib calib/ --report report/"
_SHOWN_FP32 = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the fp32 .onnx file (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the int8 model")
    parser.add_argument(
        "--calib", required=True, metavar="DIR", help="calibration data dir (.npz feeds)"
    )
    parser.add_argument(
        "--eval", metavar="DIR", help="eval data dir (default: every 5th --calib feed held out)"
    )
    parser.add_argument(
        "--labels",
        metavar="DIR",
        help="labels of the --eval feeds (one .npz per feed, key 'label': class ids, or a CTC "
        "label sequence): the top1 or ctc output is judged by the accuracy it loses against "
        "them (default: by how far it moves from fp32's decisions)",
    )
    add_metric_option(parser)
    parser.add_argument(
        "--max-loss",
        type=float,
        metavar="F",
        help="allowed loss on every output in its metric's terms: 1 - top-1 agreement, CER, "
        "1 - IoU, 1 - F1, 1 - cosine, ... (default: the metric's own tolerance; see "
        "docs/metrics.md)",
    )
    parser.add_argument(
        "--method",
        default="auto",
        choices=(*METHODS, "auto"),
        help="calibration ranges (default auto: try all, keep the most accurate)",
    )
    channel = parser.add_mutually_exclusive_group()
    channel.add_argument(
        "--per-channel",
        dest="per_channel",
        action="store_true",
        default=True,
        help="int8 weights per output channel (default)",
    )
    channel.add_argument(
        "--per-tensor", dest="per_channel", action="store_false", help="one scale per weight"
    )
    smooth = parser.add_mutually_exclusive_group()
    smooth.add_argument(
        "--smoothquant",
        nargs="?",
        const="search",
        default="auto",
        metavar="ALPHA",
        help="always apply SmoothQuant (alpha searched unless given); default: tried, and kept "
        "when it is needed for the target or cuts the loss by a fifth or more",
    )
    smooth.add_argument(
        "--no-smoothquant",
        dest="smoothquant",
        action="store_const",
        const="off",
        help="never apply SmoothQuant",
    )
    parser.add_argument(
        "--weight-rounding",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="try static weights rounded on the calibration data (kept if the loss drops)",
    )
    parser.add_argument(
        "--frontier",
        action="store_true",
        help="also time every configuration the search tried; fidelity vs latency in --report",
    )
    parser.add_argument("--ops", metavar="OP,...", help="op types to quantize (default all)")
    parser.add_argument("--exclude", metavar="NODE,...", help="node names to keep in fp32")
    parser.add_argument(
        "--latency-aware",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep int8 only where it runs faster here; refuse a slower result (default on)",
    )
    parser.add_argument(
        "--format", default="qdq", choices=("qdq", "qoperator"), help="static node format"
    )
    parser.add_argument("--report", metavar="DIR", help="write report.json and report.md there")
    parser.add_argument("--threads", type=int, help="ORT intra-op threads for measurements")
    parser.add_argument(
        "--timing-seconds",
        type=float,
        default=6.0,
        metavar="S",
        help="time spent on each latency comparison (default 6; up to 3x that while the 95 %% "
        "interval of the ratio still straddles 1)",
    )
    add_target_options(parser)


def _names(text: str | None, option: str) -> list[str]:
    if text is None:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"quantize: {option} needs a comma-separated list, got {text!r}")
    return names


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"quantize: --threads {args.threads} must be >= 1")
    if args.frontier and not args.report:
        raise UsageError("quantize: --frontier needs --report DIR (the frontier goes there)")
    ops = _names(args.ops, "--ops") or None
    timer = target_timer(args, "quantize")  # a missing label or Ray fails before any work
    report = quantize(
        args.model,
        args.output,
        calib=args.calib,
        eval_data=args.eval,
        labels=args.labels,
        metric=args.metric,
        max_loss=args.max_loss,
        method=args.method,
        per_channel=args.per_channel,
        smoothquant=args.smoothquant,
        weight_rounding=args.weight_rounding,
        frontier=args.frontier,
        ops=ops,
        exclude=_names(args.exclude, "--exclude"),
        latency_aware=args.latency_aware,
        quant_format=args.format,
        report_dir=args.report,
        threads=args.threads,
        timing_seconds=args.timing_seconds,
        progress=True,
        timer=timer,
    )
    _print(report)
    if args.report:
        console.print(f"report: {args.report}/report.md, {args.report}/report.json")
    console.print(f"wrote {args.output}")
    return 0


def _print(report: QuantizeReport) -> None:
    table = Table(title="what runs in int8", title_justify="left")
    for column in ("op group", *MODES):
        table.add_column(column, justify="left" if column == "op group" else "right")
    for group, counts in report.groups().items():
        table.add_row(group, *(str(counts.get(m, 0)) for m in MODES))
    console.print(table)
    r, lat = report.result, report.latency
    for line in report.fidelity_lines():
        console.print(line)
    console.print(
        f"latency {lat.describe()} ({lat.int8_ms:.2f} vs {lat.fp32_ms:.2f} ms), weights "
        f"{megabytes(report.weight_bytes[0])} → {megabytes(report.weight_bytes[1])}"
    )
    if len(lat.buckets) > 1:
        for b in lat.buckets:
            console.print(
                f"  {b.label} ({b.share:.0%} of eval): {b.ratio[0]:.2f}x "
                f"(95% CI {b.ratio[1]:.2f}-{b.ratio[2]:.2f}), {b.verdict}"
            )
    smoothing = f"SmoothQuant alpha {r.smoothing.alpha:g}" if r.smoothing else "no SmoothQuant"
    console.print(f"calibration {r.method or 'not needed'}, {smoothing}")
    console.print(f"ORT runs: {report.kernels.describe()}; tuned for {report.tuned_for}")
    kept = [row for row in report.layers if row.mode == "fp32"]
    for row in kept[:_SHOWN_FP32]:
        console.print(f"  fp32 {row.node}: {row.reason}")
    if len(kept) > _SHOWN_FP32:
        console.print(f"  ... and {len(kept) - _SHOWN_FP32} more fp32 nodes (see --report)")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
