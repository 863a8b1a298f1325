"""`onnxsmith run`: a recipe file, end to end, resumable; with [cluster], fanned out on Ray."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from onnxsmith.cli.render import console
from onnxsmith.cli.verbs import run_verb, verb_parsers
from onnxsmith.recipe.chains import expand
from onnxsmith.recipe.runner import RUN_FILE, Planner, StepRecord, run_recipe, write_json
from onnxsmith.recipe.spec import load_recipe, parse_recipe

HELP = (
    "run a TOML recipe of steps (export, optimize, prune, quantize, merge, distill, bench, serve)"
)
EXAMPLE = "onnxsmith run recipes/edge_cnn.toml --set steps.2.sparsity=0.5"
SUMMARY_FILE = "summary.json"


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
    raw = load_recipe(args.recipe, args.set)
    recipe = parse_recipe(raw, Path(args.recipe))
    if recipe.cluster is not None:
        from onnxsmith.runtime.cluster import require_ray

        require_ray("run")  # [cluster] without Ray: fail before planning anything
        # absolute paths: a step's command line names its files unambiguously on every node
        recipe = parse_recipe(raw, Path(args.recipe).absolute())
    parsers = verb_parsers()
    plans = [(chain, Planner(chain.recipe, parsers).plan()) for chain in expand(recipe)]
    if args.dry_run:
        for chain, calls in plans:
            for call in calls:
                label = f"{chain.name}/{call.label}" if chain.name else call.label
                console.print(f"{label}: onnxsmith {' '.join(call.argv)}", markup=False)
        return 0

    if recipe.cluster is not None:
        from onnxsmith.recipe.fanout import run_on_cluster

        records = run_on_cluster(plans, recipe.cluster, run_verb)
    else:
        records = [run_recipe(chain.recipe, calls, run_verb) for chain, calls in plans]
    names = [chain.name for chain, _ in plans]
    _print(recipe.name, names, records)
    if len(plans) == 1:
        console.print(f"record: {recipe.output / RUN_FILE}")
        return 0
    summary = recipe.output / SUMMARY_FILE
    write_json(summary, _summary(names, records, plans))
    console.print(f"record: {summary} (and a {RUN_FILE} in each chain's folder)")
    return 0


def _print(name: str, chains: list[str], records: list[list[StepRecord]]) -> None:
    table = Table(title=f"recipe {name}", title_justify="left")
    several = len(chains) > 1
    fanned = any(r.node for chain_records in records for r in chain_records)
    columns = ["chain"] * several + ["step", "status", "seconds"] + ["node"] * fanned + ["output"]
    for column in columns:
        table.add_column(column)
    for chain, chain_records in zip(chains, records, strict=True):
        for r in chain_records:
            node = [(r.node or "-")[:12]] * fanned
            row = [r.label, r.status, f"{r.seconds:.1f}", *node, r.output or "-"]
            table.add_row(*([chain] * several + row))
    console.print(table)
    for chain, chain_records in zip(chains, records, strict=True):
        for r in chain_records:
            if r.verdict:
                label = f"{chain}/{r.label}" if chain else r.label
                console.print(f"{label} passed its input on: {r.verdict}", markup=False)


def _summary(names: list[str], records: list[list[StepRecord]], plans: list) -> dict:
    """The one report of a fanned-out run: every chain's steps, where they ran, and metrics
    (the verbs' JSON reports, read from each chain's run.json)."""
    chains = {}
    for name, chain_records, (chain, _) in zip(names, records, plans, strict=True):
        log = json.loads((chain.recipe.output / RUN_FILE).read_text())
        chains[name] = {
            "target": chain.target,
            "model": str(chain.recipe.model) if chain.recipe.model else None,
            "output": str(chain.recipe.output),
            "steps": {
                r.label: log["steps"].get(r.label, {}) | {"status": r.status} for r in chain_records
            },
        }
    return {"chains": chains}
