"""Options that several verbs share, declared once so their flags and help never drift."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from onnxsmith.errors import UsageError
from onnxsmith.io import check_output_path
from onnxsmith.runtime.fidelity import AUTO, metric_names
from onnxsmith.runtime.timer import LocalTimer, Timer


def check_json_path(step: str, json_path: str | None, inputs: Sequence[str], *outputs: str) -> None:
    """Refuses `--json FILE` before any work when it names an input, an output or a folder, so
    a bad report path never costs the run or overwrites what the user gave."""
    if json_path is None:
        return
    target = Path(json_path).resolve()
    if any(target == Path(out).resolve() for out in outputs):
        raise UsageError(f"{step}: --json and -o name the same file — pick two paths")
    check_output_path(Path(json_path), [str(i) for i in inputs])


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


def add_metric_option(parser: argparse.ArgumentParser, *, several: str | None = None) -> None:
    """`--metric` for every verb that judges a transformed model against the original.

    Args:
        several: for `bench`, which takes a comma-separated list: the extra names it accepts
            and its default, as help text (the option then defaults to None).
    """
    plugin = "your own path/to/file.py:fn(reference_outputs, outputs) -> fidelity in [0, 1]"
    if several is None:
        parser.add_argument(
            "--metric",
            default=AUTO,
            metavar="NAME",
            help=f"fidelity vs the original's outputs: {', '.join(metric_names())}, or {plugin} "
            "(default auto: chosen per output from its structure and printed)",
        )
        return
    parser.add_argument(
        "--metric",
        metavar="NAME,...",
        help=f"comma-separated: auto (the task metric chosen from the output), {several}, or "
        f"{plugin}",
    )
