"""`onnxsmith distill`: ONNX teacher(s) → a small student (PyTorch or ONNX) → ONNX, compared.

torch-side code is imported inside `run`, so the CLI works without torch installed.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from onnxsmith.cli.export import print_report
from onnxsmith.cli.options import check_json_path
from onnxsmith.cli.render import console, megabytes
from onnxsmith.errors import UsageError
from onnxsmith.io import save_json

if TYPE_CHECKING:
    from onnxsmith.exporter.distill import DistillReport, EpochStats

HELP = "distill one ONNX teacher or an ensemble into a small student (PyTorch or ONNX) → ONNX"
EXAMPLE = (
    "onnxsmith distill t1.onnx t2.onnx t3.onnx --student student.py:build --data train/ "
    "--labels train_labels/ --eval val/ --eval-labels val_labels/ -o student.onnx"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teachers", nargs="+", help="teacher .onnx files (an ensemble if several)")
    parser.add_argument(
        "--student",
        required=True,
        help="FILE.py:FACTORY, module:FACTORY, or STUDENT.onnx (trained from its weights)",
    )
    parser.add_argument("--data", required=True, help="training data dir (.npz per feed)")
    parser.add_argument("-o", "--output", required=True, help="the student .onnx to write")
    parser.add_argument("--labels", help="dir with one .npz (key 'label') per data file")
    parser.add_argument(
        "--eval",
        dest="eval_data",
        help="eval data dir for early stopping (default: hold out --holdout of --data)",
    )
    parser.add_argument("--eval-labels", help="labels for --eval (metric: accuracy)")
    parser.add_argument("--temperature", type=float, default=4.0, help="softmax T (default 4)")
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.7,
        help="weight of the distillation loss; 1-alpha goes to --labels CE (default 0.7)",
    )
    parser.add_argument(
        "--epochs", type=int, help="at most N epochs (default: until early stopping)"
    )
    parser.add_argument(
        "--patience", type=int, default=10, help="epochs without improvement before stopping"
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        help="share of --data held out for early stopping when --eval is absent (default 0.1)",
    )
    parser.add_argument(
        "--time-budget", type=float, metavar="S", help="stop training after S seconds"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="default 64")
    parser.add_argument(
        "--lr", type=float, help="AdamW learning rate (default: a short range test picks it)"
    )
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    parser.add_argument(
        "--loss",
        choices=["kl", "mse", "cosine", "bce", "bce-dice", "kl-probs", "detection"],
        default="kl",
        help="kl for class logits",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of init, shuffling, dropout")
    parser.add_argument("--weights", help="comma-separated teacher weights (default equal)")
    parser.add_argument("--teacher-output", help="teacher output to learn (default: first)")
    parser.add_argument("--work-dir", help="teacher-output cache and checkpoint (OUT.distill/)")
    parser.add_argument(
        "--latency-runs", type=int, default=100, help="interleaved timing rounds (0: skip)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def run(args: argparse.Namespace) -> int:
    from onnxsmith.exporter import require_torch

    require_torch("distill")
    check_json_path("distill", args.json, [*args.teachers, args.student], args.output)
    from onnxsmith.exporter.distill import DistillConfig, distill

    weights = _weights(args.weights)
    config = DistillConfig(
        temperature=args.temperature,
        alpha=args.alpha,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        loss=args.loss,
        seed=args.seed,
        patience=args.patience,
        holdout=args.holdout,
        time_budget=args.time_budget,
    )
    columns = (
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        epochs = args.epochs or "?"
        task = progress.add_task("train", total=None, epoch=0, epochs=epochs, loss=0.0)

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            progress.update(task, total=steps, completed=step, epoch=epoch, loss=loss)

        def on_epoch(stats: EpochStats) -> None:
            progress.console.print(_epoch_line(stats, args.epochs))

        report = distill(
            args.teachers,
            args.student,
            args.data,
            args.output,
            labels=args.labels,
            eval_data=args.eval_data,
            eval_labels=args.eval_labels,
            config=config,
            weights=weights,
            teacher_output=args.teacher_output,
            work_dir=args.work_dir,
            latency_runs=args.latency_runs,
            on_step=on_step,
            on_epoch=on_epoch,
        )
    print_summary(report)
    console.print(f"wrote {escape(str(args.output))}")
    if args.json:
        save_json(report.as_dict(), args.json, inputs=[*args.teachers, args.student])
    return 0


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError as e:
        raise UsageError(f"distill: --weights {text!r} is not comma-separated numbers") from e


def _epoch_line(stats: EpochStats, epochs: int | None) -> str:
    best = "  [green]best[/green]" if stats.best else ""
    of = f"/{epochs}" if epochs else ""
    return (
        f"epoch {stats.epoch}{of}  loss {stats.loss:.4f}  watched {stats.metric:.4f}{best}  "
        f"lr {stats.lr:.2g}  ({stats.seconds:.1f} s)"
    )


def print_summary(report: DistillReport) -> None:
    """Training outcome, the export (exporter, parity), and teachers vs student."""
    training = report.training
    reused = " (teacher outputs reused from the cache)" if report.teachers_reused else ""
    best = "the starting weights" if training.best_epoch == 0 else f"epoch {training.best_epoch}"
    console.print(
        f"[bold]trained[/bold] {len(training.history)} epochs in {training.seconds:.0f} s "
        f"(lr {training.lr:.2g}, {training.lr_source}); kept {best}, best by "
        f"{training.metric}; stopped: {training.stop_reason}{reused}"
    )
    console.print(f"steps: {escape(training.step_mode)}")
    print_report(report.export, passes=False)
    table = Table(title=f"teachers vs student on {report.evaluated_on}", title_justify="left")
    for column in ("model", "accuracy", "agreement", "params", "weights", "latency ms"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in report.rows:
        table.add_row(
            escape(row.name),
            _percent(row.accuracy),
            _percent(row.agreement),
            f"{row.params:,}",
            megabytes(row.bytes),
            "-" if row.latency_ms is None else f"{row.latency_ms:.3f}",
        )
    console.print(table)
    if report.latency_ratio is not None:
        ratio, low, high = report.latency_ratio
        console.print(
            f"student / teachers latency: {ratio:.3f} (95% CI {low:.3f}–{high:.3f}), "
            "batch of one, measured interleaved"
        )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"
