"""The one table of verbs a recipe, the demo and `main` run, and the parser built from it.

`run` and `demo` chain these verbs, so they are added on top by `main` (keeping them out of
this table keeps the imports one-way: main → run/demo → verbs).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import NoReturn

from onnxsmith.cli import (
    bench,
    distill,
    export,
    inspect,
    merge,
    optimize,
    prune,
    quantize,
    serve,
    serve_export,
)
from onnxsmith.errors import OnnxsmithError, UsageError
from onnxsmith.version import __version__

# One module per verb, each with HELP, EXAMPLE, add_arguments(parser) and run(args) -> int.
VERBS: dict[str, ModuleType] = {
    "export": export,
    "inspect": inspect,
    "optimize": optimize,
    "prune": prune,
    "quantize": quantize,
    "merge": merge,
    "distill": distill,
    "bench": bench,
    "serve-export": serve_export,
    "serve": serve,
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} — see '{self.prog} --help'")


def build_parser(verbs: Mapping[str, ModuleType] = VERBS) -> argparse.ArgumentParser:
    """The `onnxsmith` parser with one subcommand per entry of `verbs`."""
    parser = _Parser(
        prog="onnxsmith",
        description="Deployment-oriented ONNX optimizer.",
        epilog="Add --debug anywhere to see tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"onnxsmith {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, module in verbs.items():
        sub = subparsers.add_parser(
            name,
            help=module.HELP.replace("%", "%%"),  # argparse %-formats a help string
            description=module.HELP,
            epilog=f"example:\n  {module.EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
    return parser


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each verb's own parser, e.g. to validate a recipe step's options."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def run_verb(argv: Sequence[str]) -> None:
    """Runs `onnxsmith ARGV...` in this process (recipes and the demo chain verbs this way)."""
    args = verb_parsers()[argv[0]].parse_args(list(argv[1:]))
    code = VERBS[argv[0]].run(args)
    if code:
        raise OnnxsmithError(f"onnxsmith {argv[0]} exited with code {code}")
