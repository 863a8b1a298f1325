"""`onnxsmith demo`: an end-to-end run on a built-in model, offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxsmith.cli.render import console, megabytes, pipeline_table, plain, summary_table
from onnxsmith.io import load_model, save_model
from onnxsmith.optimize import optimize_file
from onnxsmith.samples import tiny_cnn
from onnxsmith.summary import summarize

HELP = "run the pipeline end to end on a built-in model (no network needed)"
EXAMPLE = "onnxsmith demo --out demo-out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="demo-out", help="folder for every artifact (default: demo-out)"
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = save_model(tiny_cnn(seed=0), out / "tiny_cnn.onnx")
    console.print("[bold]1. built[/bold]", plain(source))
    console.print(summary_table(summarize(load_model(source))))
    optimized = out / "tiny_cnn.opt.onnx"
    report = optimize_file(source, optimized)
    console.print("[bold]2. optimized[/bold] →", plain(optimized))
    console.print(pipeline_table(report.pipeline))
    (n0, n1), (b0, b1) = report.nodes, report.weight_bytes
    console.print(f"nodes {n0} → {n1}, weights {megabytes(b0)} → {megabytes(b1)}")
    console.print("parity:", plain(report.parity_note))
    console.print(summary_table(summarize(load_model(optimized))))
    return 0
