"""`onnxsmith inspect`: what a model is made of, without running it."""

from __future__ import annotations

import argparse

from onnxsmith.cli.render import console, print_json, summary_table
from onnxsmith.io import load_model
from onnxsmith.summary import summarize

HELP = "show a model's interface, ops, weights, sparsity, quantization and metadata"
EXAMPLE = "onnxsmith inspect model.onnx --json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    summary = summarize(load_model(args.model))
    if args.json:
        print_json(summary.as_dict())
    else:
        console.print(summary_table(summary))
    return 0
