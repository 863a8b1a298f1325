"""`onnxsmith merge`: N models into one graph, checked against the members run separately."""

from __future__ import annotations

import argparse

from rich.table import Table

from onnxsmith.cli.options import add_metric_option, add_model_output_options, check_json_path
from onnxsmith.cli.render import console, megabytes
from onnxsmith.errors import UsageError
from onnxsmith.io import save_json
from onnxsmith.merge import MODES
from onnxsmith.merge.evaluate import MergeEval
from onnxsmith.merge.files import MergeReport, merge_files

HELP = "merge models into one graph: mean/weighted/vote/max, chain, cascade, stack"
EXAMPLE = (
    "onnxsmith merge a.onnx b.onnx c.onnx -o ens.onnx --mode vote --softmax\n"
    "  onnxsmith merge small.onnx big.onnx -o cas.onnx --mode cascade --threshold 0.9 "
    "--eval val/ --eval-labels val_labels/"
)
_SWEEP = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help="member .onnx files (never modified), in order")
    parser.add_argument("-o", "--out", required=True, help="where to write the merged model")
    parser.add_argument("--mode", required=True, choices=MODES, help="how to combine")
    parser.add_argument(
        "--weights", type=_floats, help="weighted: one weight per model, 0.5,0.3,0.2"
    )
    parser.add_argument(
        "--output", help="the output to combine/vote/gate on (default: all matching)"
    )
    parser.add_argument(
        "--softmax",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="softmax logits before combining (cascade: automatic unless the output is a Softmax)",
    )
    parser.add_argument("--threshold", type=float, help="cascade: escalate when max prob < T")
    parser.add_argument("--fit", metavar="DIR", help="weighted/stack: fit weights on this data dir")
    parser.add_argument("--labels", metavar="DIR", help="class ids for --fit (key 'label')")
    parser.add_argument("--teacher", metavar="MODEL", help="fit against this model's outputs")
    parser.add_argument(
        "--stacker", choices=("nnls", "logistic"), default="nnls", help="stack: how to fit"
    )
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="[K:]OLD=NEW",
        help="match member K's (or every member's) input/output OLD as NEW; repeatable",
    )
    parser.add_argument("--axis", type=int, default=-1, help="class axis (default -1)")
    parser.add_argument("--opset", type=int, help="target ai.onnx opset (default: highest member)")
    parser.add_argument("--eval", metavar="DIR", help="score and time the result on a data dir")
    parser.add_argument("--eval-labels", metavar="DIR", help="class ids for --eval")
    parser.add_argument(
        "--thresholds",
        type=_floats,
        help=f"cascade thresholds to sweep on --eval (default {','.join(map(str, _SWEEP))})",
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="timing budget per --eval run (default 5)"
    )
    parser.add_argument(
        "--no-check", dest="check", action="store_false", help="skip the check vs separate runs"
    )
    add_metric_option(parser)
    add_model_output_options(parser)


def run(args: argparse.Namespace) -> int:
    check_json_path("merge", args.json, args.models, args.out)
    thresholds = args.thresholds
    if thresholds is None and args.mode == "cascade" and args.eval:
        thresholds = _SWEEP
    report = merge_files(
        args.models,
        args.out,
        args.mode,
        weights=args.weights,
        output_name=args.output,
        softmax=args.softmax,
        threshold=args.threshold,
        fit=args.fit,
        labels=args.labels,
        teacher=args.teacher,
        stacker=args.stacker,
        mapping=[m for item in args.map for m in item.split(",") if m],
        axis=args.axis,
        opset=args.opset,
        check=args.check,
        evaluate=args.eval,
        metric=args.metric,
        eval_labels=args.eval_labels,
        thresholds=thresholds or (),
        seconds=args.seconds,
        external_data=args.external_data,
    )
    _print(report)
    if args.json:
        save_json(report.as_dict(), args.json, inputs=args.models)
    return 0


def _print(report: MergeReport) -> None:
    record = report.record
    table = Table(title=f"merge: {record['mode']}, opset {record['opset']}", title_justify="left")
    for column in ("member", "file", "opset", "IR", "sha256", "weight"):
        table.add_column(column)
    weights = record.get("weights") or record.get("stack", {}).get("weights")
    for i, m in enumerate(record["members"]):
        weight = f"{weights[i]:.3f}" if weights else "-"
        table.add_row(
            m["tag"],
            m["file"] or "-",
            str(m["opset"]),
            str(m["ir_version"]),
            m["sha256"][:12],
            weight,
        )
    console.print(table)
    if report.fit is not None and report.fit.accuracy is not None:
        members = ", ".join(f"{a:.3f}" for a in report.fit.member_accuracy or ())
        console.print(
            f"fit ({report.fit.method}) on {report.fit.samples} rows: members {members} → "
            f"stacked {report.fit.accuracy:.3f}"
        )
    console.print(f"outputs: {', '.join(record['outputs'])}")
    console.print(
        f"file size {megabytes(report.merged_bytes)} (members together "
        f"{megabytes(report.member_bytes)})"
    )
    console.print(f"parity: {report.parity_note}")
    if report.evaluation is not None:
        _print_eval(report.evaluation, record)
    console.print(f"wrote {report.output}")


def _print_eval(ev: MergeEval, record: dict) -> None:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.2%}"

    table = Table(title=f"eval on {ev.samples} feeds", title_justify="left")
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    for m, acc in zip(record["members"], ev.member_accuracy, strict=True):
        table.add_row(f"{m['tag']} {m['file'] or ''}", pct(acc))
    table.add_row("merged", pct(ev.accuracy))
    console.print(table)
    ratio, low, high = ev.ratio
    console.print(
        f"latency: merged {ev.merged_ms:.3f} ms vs {len(record['members'])} separate sessions "
        f"{ev.separate_ms:.3f} ms (median) → ×{ratio:.2f} [{low:.2f}, {high:.2f}]"
    )
    if ev.fidelity is not None:
        for line in [*ev.metric_lines, *ev.fidelity.lines("the members run separately")]:
            console.print(line)
    if not ev.cascade:
        return
    sweep = Table(title="cascade: threshold sweep (mean ms per feed)", title_justify="left")
    for column in ("threshold", "escalated", "accuracy", "ms", "× last member alone"):
        sweep.add_column(column, justify="right")
    last = ev.member_ms[-1]
    for p in ev.cascade:
        sweep.add_row(
            f"{p.threshold:g}",
            pct(p.escalated),
            pct(p.accuracy),
            f"{p.mean_ms:.3f}",
            f"{p.mean_ms / last:.2f}",
        )
    for m, ms in zip(record["members"], ev.member_ms, strict=True):
        sweep.add_row(f"{m['tag']} alone", "-", "-", f"{ms:.3f}", f"{ms / last:.2f}")
    console.print(sweep)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise UsageError(f"merge: {text!r} is not a comma-separated list of numbers") from e
