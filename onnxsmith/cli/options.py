"""Options that several verbs share, declared once so their flags and help never drift."""

from __future__ import annotations

import argparse


def add_model_output_options(parser: argparse.ArgumentParser) -> None:
    """`--external-data` and `--json` for the verbs that write a model and a report."""
    parser.add_argument(
        "--external-data",
        action="store_true",
        default=None,
        help="store weights in OUTPUT.data (automatic above 2 GB)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
