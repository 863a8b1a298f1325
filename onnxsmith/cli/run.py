"""`onnxsmith run`: a recipe file, end to end, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from onnxsmith.cli.render import console
from onnxsmith.cli.verbs import run_verb, verb_parsers
from onnxsmith.recipe.runner import RUN_FILE, Planner, run_recipe
from onnxsmith.recipe.spec import load_recipe, parse_recipe

HELP = (
    "run a TOML recipe of steps (export, optimize, prune, quantize, merge, distill, bench, serve)"
)
EXAMPLE = "onnxsmith run recipes/edge_cnn.toml --set steps.2.sparsity=0.5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="the .toml recipe")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. steps.1.sparsity=0.5 or data.calib=other/dir",
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and print the plan only")


def run(args: argparse.Namespace) -> int:
    recipe = parse_recipe(load_recipe(args.recipe, args.set), Path(args.recipe))
    calls = Planner(recipe, verb_parsers()).plan()
    if args.dry_run:
        for call in calls:
            console.print(f"{call.label}: onnxsmith {' '.join(call.argv)}")
        return 0

    records = run_recipe(recipe, calls, run_verb)
    table = Table(title=f"recipe {recipe.name}", title_justify="left")
    for column in ("step", "status", "seconds", "output"):
        table.add_column(column)
    for r in records:
        table.add_row(r.label, r.status, f"{r.seconds:.1f}", r.output or "-")
    console.print(table)
    for r in records:
        if r.verdict:
            console.print(f"{r.label} passed its input on: {r.verdict}", markup=False)
    console.print(f"record: {recipe.output / RUN_FILE}")
    return 0
