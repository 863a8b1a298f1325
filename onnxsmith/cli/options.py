"""Options that several verbs share, declared once so their flags and help never drift."""

from __future__ import annotations

import argparse

from onnxsmith.errors import UsageError
from onnxsmith.runtime.timer import LocalTimer, Timer


def add_model_output_options(parser: argparse.ArgumentParser) -> None:
    """`--external-data` and `--json` for the verbs that write a model and a report."""
    parser.add_argument(
        "--external-data",
        action="store_true",
        default=None,
        help="store weights in OUTPUT.data (automatic above 2 GB)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")


def add_target_options(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """`--target KEY=VALUE` (a Ray node label; repeatable with `several`) and `--cluster`."""
    what = "a Ray cluster node labelled so (e.g. hw=rpi5)"
    parser.add_argument(
        "--target",
        action="append" if several else "store",
        metavar="KEY=VALUE",
        help=f"measure on {what}"
        + ("; repeat for several targets side by side" if several else "")
        + " (needs the cluster extra)",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="Ray cluster address for --target, HOST:PORT (default: $RAY_ADDRESS)",
    )


def target_timer(args: argparse.Namespace, step: str) -> Timer:
    """Where `step` measures: this machine, or the `--target` node of the cluster."""
    if args.target is None:
        if args.cluster is not None:
            raise UsageError(f"{step}: --cluster is only used with --target KEY=VALUE")
        return LocalTimer()
    from onnxsmith.runtime.remote import timer_for

    return timer_for(args.target, args.cluster, step)
