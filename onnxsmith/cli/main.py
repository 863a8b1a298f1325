"""Entry point: parses the verb, runs it, and turns errors into one line and an exit code."""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from collections.abc import Sequence
from types import ModuleType

from onnxsmith.cli import demo, run
from onnxsmith.cli.render import printable
from onnxsmith.cli.verbs import VERBS, build_parser
from onnxsmith.errors import OnnxsmithError
from onnxsmith.runtime.session import ort_reason

# The verbs a recipe can run, then the two that chain them.
COMMANDS: dict[str, ModuleType] = {**VERBS, "run": run, "demo": demo}


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
            args = build_parser(COMMANDS).parse_args(args_list)
            return int(COMMANDS[args.verb].run(args) or 0)
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
        # An exception nothing caught may still be ORT's, with C++ paths over several lines.
        reason = printable(ort_reason(e)) if str(e).strip() else ""
        print(
            f"onnxsmith: internal error: {type(e).__name__}: {reason} — rerun with --debug and "
            "report it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
