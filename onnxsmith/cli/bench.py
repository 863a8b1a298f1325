"""`onnxsmith bench`: interleaved latency, memory and accuracy of models, with a report."""

from __future__ import annotations

import argparse
import itertools

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from onnxsmith.cli.options import add_metric_option, add_target_options, check_json_path
from onnxsmith.cli.render import console
from onnxsmith.errors import UsageError
from onnxsmith.io import load_model, save_json
from onnxsmith.report.tables import TextTable, all_tables, targets_tables
from onnxsmith.runtime.accuracy import AccuracySpec, evaluate, resolve_metric
from onnxsmith.runtime.benchmark import BenchmarkResult, BenchOptions, benchmark, with_accuracy
from onnxsmith.runtime.data import DataDir, Feed
from onnxsmith.runtime.labels import read_labels
from onnxsmith.runtime.parity import random_feed
from onnxsmith.runtime.session import resolve_providers
from onnxsmith.signature import TensorSpec, input_specs

HELP = "time models interleaved: latency percentiles, ratios with 95 % CI, memory, accuracy"
EXAMPLE = (
    "onnxsmith bench model.onnx model.int8.onnx --data feeds/ --reference model.onnx "
    "--eval val/ --labels val-labels/ --batch 1,8 --report bench-report/"
)
_RANDOM_FEEDS = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help="models with the same inputs")
    parser.add_argument(
        "--data",
        help="data dir of .npz feeds to time on (default: --eval, else random feeds with "
        "dynamic dims 32)",
    )
    parser.add_argument(
        "--feeds", type=int, default=16, help="time on the first N feeds of --data (default 16)"
    )
    parser.add_argument("--eval", help="data dir to score accuracy on (default: --data)")
    parser.add_argument(
        "--labels",
        help="ground truth: a dir with one .npz per eval file (key 'label'), or one .npz",
    )
    parser.add_argument(
        "--reference", help="model whose outputs are the targets (usually the fp32 original)"
    )
    add_metric_option(
        parser,
        several="cosine, mse, max-abs, top1 (default: auto,cosine,max-abs against --reference, "
        "top1 against --labels)",
    )
    parser.add_argument("--output", help="the output to score (default: each model's first)")
    parser.add_argument(
        "--threads", help="intra-op threads to sweep, e.g. 1,2 (default: ORT's choice)"
    )
    parser.add_argument(
        "--batch", help="batch sizes to sweep, e.g. 1,8,32 (inputs with a symbolic first dim)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="warm-up rounds (default 10)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--runs", type=int, help="exact number of interleaved rounds")
    stop.add_argument("--seconds", type=float, help="time budget per configuration (default 5 s)")
    parser.add_argument(
        "--min-runs", type=int, default=20, help="fewest rounds with --seconds (default 20)"
    )
    parser.add_argument("--providers", default="cpu", help="execution providers (default cpu)")
    parser.add_argument(
        "--optimization",
        choices=["disable", "basic", "extended", "all"],
        default="all",
        help="ORT graph optimization level (default all)",
    )
    parser.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the per-model peak-memory child processes",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--report", metavar="DIR", help="write report.json, report.md and report.html"
    )
    add_target_options(parser, several=True)


def run(args: argparse.Namespace) -> int:
    check_json_path("bench", args.json, [*args.models, *filter(None, [args.reference])])
    if args.target:
        from onnxsmith.runtime.cluster import require_ray

        require_ray("bench")  # fail before loading anything
    elif args.cluster is not None:
        raise UsageError("bench: --cluster is only used with --target KEY=VALUE")
    if args.report:
        from onnxsmith.report import require_matplotlib

        require_matplotlib()  # fail before minutes of timing, not after
    options = BenchOptions(
        batches=tuple(_positive_ints(args.batch, "--batch")),
        threads=tuple(_positive_ints(args.threads, "--threads")) or (None,),
        warmup=args.warmup,
        runs=args.runs,
        seconds=args.seconds,
        min_runs=args.min_runs,
        providers=tuple(p.strip() for p in args.providers.split(",") if p.strip()),
        optimization=args.optimization,
        memory=args.memory,
    )
    if args.feeds < 1:
        raise UsageError(f"bench: --feeds must be >= 1, got {args.feeds}")
    specs = input_specs(load_model(args.models[0]))
    feeds = _timing_feeds(args, specs)
    accuracy = _accuracy(args, specs, feeds)
    context = {
        key: getattr(args, key)
        for key in ("data", "eval", "labels", "reference", "output")
        if getattr(args, key) is not None
    }
    if args.target:
        results = _on_targets(args, options, feeds, accuracy, context)
    else:
        results = [_here(args, options, feeds, accuracy, context)]
    _print(results, random_feeds=args.data is None and args.eval is None)
    if args.json:
        save_json(_json(results), args.json, inputs=[*args.models, *filter(None, [args.reference])])
        console.print(f"wrote {args.json}")
    if args.report:
        from onnxsmith.report import write_report, write_targets_report

        if len(results) == 1:
            written = write_report(results[0], args.report)
        else:
            written = write_targets_report(results, args.report)
        console.print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _here(
    args: argparse.Namespace,
    options: BenchOptions,
    feeds: list[Feed],
    accuracy: AccuracySpec | None,
    context: dict[str, str],
) -> BenchmarkResult:
    stderr = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,  # keep logs and the one-line error contract clean
    ) as bars:
        tasks: dict[str, TaskID] = {}

        def progress(task: str, done: float, total: float) -> None:
            if task not in tasks:
                tasks[task] = bars.add_task(task, total=total)
            bars.update(tasks[task], completed=done, total=total)

        return benchmark(
            args.models,
            feeds,
            options=options,
            accuracy=accuracy,
            context=context,
            progress=progress,
        )


def _on_targets(
    args: argparse.Namespace,
    options: BenchOptions,
    feeds: list[Feed],
    accuracy: AccuracySpec | None,
    context: dict[str, str],
) -> list[BenchmarkResult]:
    """Timing and memory on each target's node; accuracy once, here (it does not depend on
    which CPU runs the model, and the eval data stays on this machine)."""
    from onnxsmith.runtime.remote import benchmark_targets

    results = benchmark_targets(
        args.target, args.cluster, args.models, feeds, options=options, context=context
    )
    if accuracy is None:
        return results
    scores = evaluate(
        args.models,
        accuracy,
        threads=options.threads[0],
        providers=resolve_providers(options.providers),
        optimization=options.optimization,
    )
    return [with_accuracy(result, scores) for result in results]


def _json(results: list[BenchmarkResult]) -> dict:
    """Today's schema for one result; `{"targets": [...]}` of them for several targets."""
    if len(results) == 1:
        return results[0].as_dict()
    return {"targets": [r.as_dict() for r in results]}


def _positive_ints(text: str | None, flag: str) -> list[int]:
    if not text:
        return []
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UsageError(
            f"bench: {flag} expects comma-separated positive integers like 1,8,32, got {text!r}"
        )
    return values


def _timing_feeds(args: argparse.Namespace, specs: list[TensorSpec]) -> list[Feed]:
    source = args.data or args.eval
    if source is None:
        return [random_feed(specs, seed=i) for i in range(_RANDOM_FEEDS)]
    return list(itertools.islice(DataDir(source, specs, step="bench"), args.feeds))


def _accuracy(
    args: argparse.Namespace, specs: list[TensorSpec], feeds: list[Feed]
) -> AccuracySpec | None:
    if args.reference is None and args.labels is None:
        for flag in ("eval", "metric", "output"):
            if getattr(args, flag) is not None:
                raise UsageError(
                    f"bench: --{flag} needs --reference MODEL or --labels DIR to score against"
                )
        return None
    metrics = tuple(resolve_metric(m) for m in (args.metric or "").split(",") if m.strip())
    source = args.eval or args.data
    if source is None and args.labels is not None:
        raise UsageError("bench: --labels needs --eval DIR (or --data) with the matching inputs")
    # --reference alone, with neither --eval nor --data: score on the (random) timing feeds
    data = feeds if source is None else DataDir(source, specs, step="bench")
    labels = None
    if args.labels is not None and isinstance(data, DataDir):
        labels = read_labels(data, args.labels, step="bench")
    return AccuracySpec(
        data=data, reference=args.reference, labels=labels, metrics=metrics, output=args.output
    )


def _print(results: list[BenchmarkResult], *, random_feeds: bool) -> None:
    for result in results:
        prefix = f"{result.machine.target}: " if len(results) > 1 else ""
        for table in all_tables(result):
            console.print(_rich(table, prefix))
    if len(results) > 1:
        for table in targets_tables(results):
            console.print(_rich(table))
    if random_feeds:
        console.print(
            "[yellow]note:[/yellow] timed on random feeds (dynamic dims 1 and 32); pass --data "
            "with real inputs for latencies that mean something"
        )
    if len(results[0].models) > 1:
        console.print(
            "ratio < 1: faster than the first model; the interval is a bootstrap 95 % CI over "
            "interleaved rounds"
        )


def _rich(table: TextTable, prefix: str = "") -> Table:
    rich_table = Table(title=prefix + table.title, title_justify="left")
    for header, numeric in zip(table.headers, table.numeric, strict=True):
        rich_table.add_column(header, justify="right" if numeric else "left", overflow="fold")
    for row in table.rows:
        rich_table.add_row(*row)
    return rich_table
