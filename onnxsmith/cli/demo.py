"""`onnxsmith demo`: the whole pipeline on digits CNNs trained on the spot, offline."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.table import Table

from onnxsmith.cli.render import console
from onnxsmith.cli.verbs import run_verb
from onnxsmith.demo import MODELS, run_demo

HELP = "train digits CNNs, then export, optimize, prune, quantize, merge, distill, bench, serve"
EXAMPLE = "onnxsmith demo --out demo-out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-out", help="folder for every artifact")
    parser.add_argument("--quick", action="store_true", help="fewer epochs, shorter timings (CI)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    start = time.perf_counter()

    def say(message: str) -> None:
        console.print(f"[bold cyan]demo[/] {message}")

    result = run_demo(out, quick=args.quick, say=say, run_verb=run_verb)
    table = Table(title="onnxsmith demo — all measured in this run", title_justify="left")
    for column in ("model", "top-1 (held-out)", "p50 latency vs fp32", "95 % CI", "size MB"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for (label, _), entry in zip(result.shipped, result.bench["models"], strict=True):
        top1 = entry["metric"].get("labels", {}).get("top1")
        low, high = entry["ci95_ratio"]
        table.add_row(
            label,
            "-" if top1 is None else f"{top1:.1%}",
            f"{entry['ratio_p50_vs_first']:.2f}x",
            f"[{low:.2f}, {high:.2f}]",
            f"{entry['file_mb']:.3f}",
        )
    for label, name in MODELS:
        if name in result.refused:
            table.add_row(label, "-", "not shipped: int8 was slower than fp32 here", "", "")
    console.print(table)
    console.print(f"report: {out / 'report' / 'report.html'}  (also report.md, report.json)")
    console.print(
        f"Triton repository: {out / 'triton'}  ·  took {time.perf_counter() - start:.0f} s"
    )
    return 0
