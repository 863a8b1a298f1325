"""Entry point: parses the verb, runs it, and turns errors into one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from onnxsmith import __version__
from onnxsmith.cli import (
    bench,
    demo,
    distill,
    export,
    inspect,
    merge,
    optimize,
    prune,
    quantize,
    run,
    serve_export,
)
from onnxsmith.cli.render import printable
from onnxsmith.errors import OnnxsmithError, UsageError

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
    "run": run,
    "demo": demo,
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} — see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="onnxsmith",
        description="Deployment-oriented ONNX optimizer.",
        epilog="Add --debug anywhere to see tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"onnxsmith {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, module in VERBS.items():
        sub = verbs.add_parser(
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


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 failure, 2 usage)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    if debug:
        args_list.remove("--debug")
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR, format="%(message)s")
    try:
        with warnings.catch_warnings():
            # Library warnings (numpy overflow on a hostile weight, onnx deprecations) would
            # break the one-line contract; --debug shows them.
            warnings.simplefilter("default" if debug else "ignore")
            args = build_parser().parse_args(args_list)
            return int(VERBS[args.verb].run(args) or 0)
    except OnnxsmithError as e:
        if debug:
            traceback.print_exc()
        print(f"onnxsmith: error: {printable(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("onnxsmith: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            traceback.print_exc()
        reason = printable(str(e).strip().splitlines()[0]) if str(e).strip() else ""
        print(
            f"onnxsmith: internal error: {type(e).__name__}: {reason} — rerun with --debug and "
            "report it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
