"""`onnxsmith prune`: unstructured magnitude or structured channel pruning, measured."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from onnxsmith.cli.options import (
    add_metric_option,
    add_model_output_options,
    add_target_options,
    check_json_path,
    target_timer,
)
from onnxsmith.cli.render import console, megabytes
from onnxsmith.errors import UsageError
from onnxsmith.io import save_json
from onnxsmith.prune import PruneOptions, PruneReport, prune_file
from onnxsmith.prune.result import AUTO_ALLOCATION, AUTO_CRITERION, DEFAULT_OPS, Recover

if TYPE_CHECKING:
    from onnxsmith.exporter.training import EpochStats

HELP = "prune weights (unstructured) or whole channels (structured, faster) with compensation"
EXAMPLE = (
    "onnxsmith prune model.onnx -o model.pruned.onnx --sparsity 0.3 --structured "
    "--calib calib/ --report prune-report/"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the input .onnx file (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument(
        "--sparsity",
        type=float,
        required=True,
        help="fraction to remove, 0 < F < 1: of weights, or with --structured of prunable channels",
    )
    parser.add_argument(
        "--structured", action="store_true", help="remove whole channels so tensors shrink"
    )
    parser.add_argument(
        "--calib", metavar="DIR", help="data dir of .npz feeds: least-squares compensation"
    )
    parser.add_argument(
        "--ops",
        default=",".join(DEFAULT_OPS),
        help=f"op types to prune (default {','.join(DEFAULT_OPS)}; ConvTranspose too)",
    )
    parser.add_argument("--exclude", default="", help="node names to leave whole, comma-separated")
    parser.add_argument(
        "--criterion",
        default=AUTO_CRITERION,
        help="importance: l1 | l2 | taylor | activation (the last two need --calib); default "
        "auto: activation for --structured with --calib, else l1",
    )
    parser.add_argument(
        "--allocation",
        default=AUTO_ALLOCATION,
        help="--structured: how channels are spread over the layers: uniform (each by F) | "
        "sensitivity (where the measured error grows least; needs --calib); default auto: "
        "sensitivity with --calib, else uniform",
    )
    parser.add_argument(
        "--scope",
        default="global",
        help="unstructured: 'global' (all weights ranked together, default) or 'layer' (each "
        "layer to F)",
    )
    parser.add_argument(
        "--channel-multiple",
        type=int,
        metavar="N",
        help="kept channel counts are multiples of N (default: the CPU's SIMD block, 8 on AVX2)",
    )
    parser.add_argument(
        "--no-compensation",
        dest="compensate",
        action="store_false",
        help="with --calib, use the data for importance only",
    )
    parser.add_argument(
        "--no-measure",
        dest="measure",
        action="store_false",
        help="do not time groups; prune every group even if it gains nothing here",
    )
    parser.add_argument("--threads", type=int, help="intra-op threads for timing")
    parser.add_argument(
        "--timing-seconds",
        type=float,
        default=2.0,
        metavar="S",
        help="budget of the interleaved latency measurement (default 2)",
    )
    parser.add_argument(
        "--recover",
        action="store_true",
        help="with --structured: train the pruned model towards the original's outputs on "
        "unlabeled inputs (needs torch: pip install 'onnxsmith[torch]')",
    )
    parser.add_argument(
        "--recover-data",
        metavar="DIR",
        help="inputs for --recover, a few hundred to a few thousand (default: --calib)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        metavar="S",
        help="seconds of --recover training (default 300)",
    )
    parser.add_argument("--report", metavar="DIR", help="write report.json, report.md, a plot")
    add_metric_option(parser)
    add_model_output_options(parser)
    add_target_options(parser)


def run(args: argparse.Namespace) -> int:
    check_json_path("prune", args.json, [args.model], args.output)
    recover = _recover(args)
    options = PruneOptions(
        sparsity=args.sparsity,
        structured=args.structured,
        ops=_names(args.ops),
        exclude=_names(args.exclude),
        criterion=args.criterion,
        allocation=args.allocation,
        scope=args.scope,
        channel_multiple=args.channel_multiple,
        compensate=args.compensate,
        measure=args.measure,
        threads=args.threads,
        seconds=args.timing_seconds,
        metric=args.metric,
    )
    timer = target_timer(args, "prune")  # a missing label or Ray fails before any work
    report = prune_file(
        args.model,
        args.output,
        options,
        calib=args.calib,
        report=args.report,
        external_data=args.external_data,
        timer=timer,
        recover=recover,
        # On a terminal only: in a log or a test, stderr keeps the one-line error contract.
        progress=sys.stderr.isatty(),
    )
    _print(report)
    console.print(f"wrote {args.output}" + (f", report in {args.report}" if args.report else ""))
    if args.json:
        save_json(report.as_dict(), args.json, inputs=[args.model])
    return 0


def _recover(args: argparse.Namespace) -> Recover | None:
    """The --recover step (torch, from the exporter), checked before any pruning starts."""
    if not args.recover:
        for flag, value in (
            ("--recover-data", args.recover_data),
            ("--time-budget", args.time_budget),
        ):
            if value is not None:
                raise UsageError(f"prune: {flag} needs --recover")
        return None
    if not args.structured:
        raise UsageError("prune: --recover needs --structured (it trains the kept channels)")
    data = args.recover_data or args.calib
    if data is None:
        raise UsageError("prune: --recover needs inputs — pass --recover-data DIR or --calib DIR")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UsageError(f"prune: --time-budget {args.time_budget} must be positive")
    from onnxsmith.exporter import require_torch

    require_torch("prune --recover")
    from onnxsmith.exporter.recover import DEFAULT_TIME_BUDGET, RecoverSettings, recover_pruned

    settings = RecoverSettings(Path(data), args.time_budget or DEFAULT_TIME_BUDGET)

    def on_epoch(stats: EpochStats) -> None:
        console.print(
            f"recover epoch {stats.epoch}  loss {stats.loss:.4g}  held-out {stats.metric:.4g}"
            + ("  best" if stats.best else "")
            + f"  ({stats.seconds:.1f} s)"
        )

    return lambda original, pruned: recover_pruned(original, pruned, settings, on_epoch)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _print(report: PruneReport) -> None:
    if report.options.structured:
        table = Table(title="channel groups", title_justify="left")
        for column in ("group", "channels", "kept", "region", "status"):
            table.add_column(column, justify="right" if column in ("channels", "kept") else "left")
        for d in report.groups:
            speed = report.group_speed.get(d.name)
            table.add_row(
                d.name,
                str(d.channels),
                str(d.kept),
                f"{speed.ratio:.2f}x" if speed else "-",
                f"{d.status}: {d.reason}" if d.reason else d.status,
            )
    else:
        table = Table(title="layers", title_justify="left")
        table.add_column("layer")
        table.add_column("sparsity", justify="right")
        for name, value in report.per_layer.items():
            table.add_row(name, f"{value:.1%}")
    console.print(table)
    ratio, low, high = report.latency
    sizes = report.sizes
    third = "zstd" if "zstd" in sizes["original"] else "lzma"
    agreement = report.agreement
    console.print(
        f"sparsity {report.achieved_sparsity:.1%} (target {report.options.sparsity:.0%}); "
        f"weights {megabytes(report.weights[0])} → {megabytes(report.weights[1])}; "
        f"{third} {megabytes(sizes['original'][third])} → {megabytes(sizes['pruned'][third])}"
    )
    console.print(
        f"latency {ratio:.2f}x (95 % CI {low:.2f}–{high:.2f}, interleaved); agreement: cosine "
        f"{agreement.cosine:.4f}, rel. error {agreement.rel_error:.3g}; {report.compensated} "
        "layers refit"
    )
    for line in [*report.metric_lines, *agreement.fidelity.lines("the original")]:
        console.print(line)
    if report.recovery is not None:
        before, training = report.recovery.before, report.recovery.training
        ratio = report.recovery.latency_before[0]
        console.print(
            f"recover: {training['epochs']} epochs in {training['train_seconds']} s, stopped: "
            f"{training['stop_reason']}; before it: latency {ratio:.2f}x, "
            f"{before.fidelity.describe()}"
        )
        if training.get("hints"):
            console.print(f"recover: feature hints: {training['hints']}")
    for note in report.notes:
        console.print(f"note: {note}")
