"""`onnxsmith serve-export`: a Triton repository, a Ray Serve app, ORT format, or a package."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from onnxsmith.cli.render import console
from onnxsmith.errors import UsageError
from onnxsmith.io import load_model
from onnxsmith.runtime.ort_format import convert_to_ort
from onnxsmith.serve.package import write_package
from onnxsmith.serve.ray_serve import ServeOptions, require_ray, write_ray_serve_app
from onnxsmith.serve.triton import write_repository

HELP = "hand models to a serving stack: Triton repository, Ray Serve app, ORT format, package"
EXAMPLE = "onnxsmith serve-export model.int8.onnx --format ray-serve -o served"
FORMATS = ("triton", "ray-serve", "ort", "package")
# Which formats each option shapes; given with another format it is an error, not ignored.
APPLIES = {
    "name": ("triton", "ray-serve"),
    "max_batch_size": ("triton", "ray-serve"),
    "instances": ("triton", "ray-serve"),
    "threads": ("ray-serve",),
    "batch_wait_ms": ("ray-serve",),
    "ensemble": ("triton",),
    "report": ("package",),
}
DEFAULTS = {"max_batch_size": 32, "instances": 1, "threads": 1, "batch_wait_ms": 2.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".onnx files")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--name", action="append", help="model name in the repository (repeat)")
    parser.add_argument("--max-batch-size", type=int, metavar="N", help="default 32")
    parser.add_argument(
        "--instances", type=int, metavar="N", help="triton instances, ray-serve replicas (1)"
    )
    parser.add_argument("--threads", type=int, metavar="N", help="ray-serve ORT threads (1)")
    parser.add_argument(
        "--batch-wait-ms", type=float, metavar="MS", help="ray-serve batch wait (2)"
    )
    parser.add_argument("--ensemble", help="triton: also write an ensemble of all models, named so")
    parser.add_argument("--report", type=Path, help="package: a JSON report to embed as metrics")


def _check_options(args: argparse.Namespace) -> None:
    """Options that do not shape `--format` are refused; the others get their defaults."""
    stray = [
        "--" + option.replace("_", "-")
        for option, formats in APPLIES.items()
        if getattr(args, option) is not None and args.format not in formats
    ]
    if stray:
        raise UsageError(
            f"serve-export: {', '.join(stray)} does not apply to --format {args.format} — "
            "drop it, or see docs/serve-export.md for which format takes it"
        )
    for option, default in DEFAULTS.items():
        if getattr(args, option) is None:
            setattr(args, option, default)
    if args.max_batch_size < 1 or args.instances < 1:
        raise UsageError("serve-export: --max-batch-size and --instances must be at least 1")


def _export(args: argparse.Namespace, staging: Path) -> list[Path]:
    if args.format == "ray-serve":
        require_ray("serve-export")
    sources = [Path(m) for m in args.models]
    for source in sources:
        load_model(source)  # one-line errors for bad models before anything is written
    if args.format == "triton":
        return write_repository(
            sources,
            staging,
            names=args.name,
            max_batch_size=args.max_batch_size,
            instances=args.instances,
            ensemble=args.ensemble,
        )
    if args.format == "ray-serve":
        options = ServeOptions(
            args.instances, args.threads, args.max_batch_size, args.batch_wait_ms
        )
        return write_ray_serve_app(sources, staging, names=args.name, options=options)
    if len(sources) != 1:
        raise UsageError(f"serve-export: --format {args.format} takes one model")
    if args.format == "ort":
        return list(convert_to_ort(sources[0], staging))
    if args.report is not None:
        try:
            json.loads(args.report.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(
                f"serve-export: --report {args.report} is not a readable JSON file"
            ) from e
    return [write_package(sources[0], staging, report=args.report)]


def run(args: argparse.Namespace) -> int:
    _check_options(args)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        written = _export(args, staging)
        out.mkdir(exist_ok=True)
        for entry in sorted(staging.iterdir()):
            target = out / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            entry.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for path in written:
        console.print(f"wrote {out / path.relative_to(staging)}")
    return 0
