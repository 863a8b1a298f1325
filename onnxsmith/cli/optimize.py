"""`onnxsmith optimize`: the exact cleanup recipe, checked against the input with ORT."""

from __future__ import annotations

import argparse

from onnxsmith.cli.options import add_model_output_options, check_json_path
from onnxsmith.cli.render import console, megabytes, pipeline_table, plain
from onnxsmith.io import save_json
from onnxsmith.optimize import optimize_file

HELP = "clean up a model: constants, folding, BN fusion, dead code, dedup, opset, shapes"
EXAMPLE = "onnxsmith optimize model.onnx -o model.opt.onnx --opset 17"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the input .onnx file (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument("--opset", type=int, help="upgrade the ai.onnx opset to N first")
    parser.add_argument("--keep-dropout", action="store_true", help="keep Dropout nodes")
    parser.add_argument("--data", help="data dir of .npz feeds for the parity check")
    parser.add_argument(
        "--no-check", dest="check", action="store_false", help="skip the ORT parity check"
    )
    add_model_output_options(parser)


def run(args: argparse.Namespace) -> int:
    check_json_path("optimize", args.json, [args.model], args.output)
    report = optimize_file(
        args.model,
        args.output,
        opset=args.opset,
        keep_dropout=args.keep_dropout,
        check=args.check,
        data=args.data,
        external_data=args.external_data,
    )
    console.print(pipeline_table(report.pipeline))
    (n0, n1), (b0, b1) = report.nodes, report.weight_bytes
    console.print(f"nodes {n0} → {n1}, weights {megabytes(b0)} → {megabytes(b1)}")
    console.print("parity:", plain(report.parity_note))
    console.print("wrote", plain(args.output))
    if args.json:
        save_json(report.as_dict(), args.json, inputs=[args.model])
    return 0
