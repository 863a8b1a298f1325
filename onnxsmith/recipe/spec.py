"""Reading and validating a recipe file before anything runs.

A step's options are the CLI options of its verb (`max_loss = 0.01` is `--max-loss 0.01`), so
every verb's own parser validates them and recipes never drift from the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from onnxsmith.errors import UsageError, name_list

TOP_LEVEL_KEYS = (
    "name", "output", "model", "models", "data", "export", "steps", "bench", "serve", "cluster"
)  # fmt: skip
CLUSTER_KEYS = ("address", "targets")
# Verbs a [[steps]] entry may name (in the order a pipeline usually uses them).
STEP_VERBS = ("optimize", "prune", "quantize", "merge", "distill")


@dataclasses.dataclass(frozen=True)
class Step:
    """One verb invocation: its name, its options as written, and extra positional inputs."""

    verb: str
    options: dict[str, Any]
    inputs: tuple[Path, ...] = ()  # models given in the recipe (merge members), besides the chain
    sweep: dict[str, list[Any]] = dataclasses.field(default_factory=dict)  # option → values


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """`[cluster]`: where the chains run as Ray tasks, and the targets each chain is tuned for."""

    address: str | None
    targets: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A validated recipe with paths resolved against the recipe's folder."""

    path: Path
    name: str
    output: Path
    model: Path | None
    data: dict[str, Path]
    export: dict[str, Any] | None
    steps: tuple[Step, ...]
    bench: dict[str, Any] | None
    serve: dict[str, Any] | None
    models: tuple[Path, ...] = ()  # `models = [...]` or a folder: one chain per model
    cluster: ClusterSpec | None = None


def option_flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def to_argv(options: dict[str, Any], parser: argparse.ArgumentParser) -> list[str]:
    """CLI arguments for `options`; True is a bare flag, lists are comma-joined or repeated."""
    append = {a.dest for a in parser._actions if isinstance(a, argparse._AppendAction)}
    argv: list[str] = []
    for key, value in options.items():
        flag = option_flag(key)
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list) and key in append:
            for item in value:
                argv += [flag, str(item)]
        elif isinstance(value, list):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def writes_output(parser: argparse.ArgumentParser) -> bool:
    """Whether the verb takes `-o OUTPUT` (the runner chooses that path itself)."""
    return any("-o" in action.option_strings for action in parser._actions)


def allowed_options(parser: argparse.ArgumentParser) -> list[str]:
    keys = []
    owned = {"--help", "--output"} if writes_output(parser) else {"--help"}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in owned:
                keys.append(flag[2:].replace("-", "_"))
    return sorted(set(keys))


def _apply_override(raw: dict[str, Any], assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise UsageError(f"run: --set expects key=value, got {assignment!r}")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word: take it as a string
    *parents, last = key.split(".")
    node: Any = raw
    for part in parents:
        node = node[_position(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[_position(last)] = value
    else:
        node[last] = value


def _position(part: str) -> int:
    """List positions in --set count from 1, as `[[steps]] #1` does in messages."""
    index = int(part) - 1
    if index < 0:
        raise IndexError(part)
    return index


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The recipe as a dict, with `--set` overrides (`steps.2.sparsity=0.5`: the second
    [[steps]] entry) applied."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise UsageError(f"run: recipe {path} does not exist") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"run: {path} is not valid TOML ({e})") from e
    for assignment in overrides:
        try:
            _apply_override(raw, assignment)
        except (IndexError, ValueError, TypeError) as e:
            raise UsageError(f"run: --set {assignment!r} does not address a recipe value") from e
    return raw


def _table(raw: dict[str, Any], key: str, path: Path) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, dict):
        raise UsageError(f"run: {path}: [{key}] must be a table")
    return dict(value) if value is not None else None


def parse_recipe(raw: dict[str, Any], path: Path) -> Recipe:
    """Checks keys and shapes (not verb options: `validate` does that with the verbs' parsers)."""
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise UsageError(
            f"run: {path}: unknown key {name_list(unknown)} — allowed: "
            f"{name_list(TOP_LEVEL_KEYS, 10)}"
        )
    folder = path.parent
    export = _table(raw, "export", path)
    steps = []
    for i, entry in enumerate(raw.get("steps", [])):
        if not isinstance(entry, dict) or "step" not in entry:
            raise UsageError(f'run: {path}: [[steps]] #{i + 1} needs `step = "VERB"`')
        options = dict(entry)
        verb = options.pop("step")
        if verb not in STEP_VERBS:
            raise UsageError(
                f"run: {path}: [[steps]] #{i + 1} has unknown step {verb!r} — allowed: "
                f"{name_list(STEP_VERBS)}"
            )
        members = tuple(folder / m for m in options.pop("models", []))
        steps.append(Step(verb, options, members, _sweep(options.pop("sweep", {}), path, i + 1)))
    models = _models(raw.get("models"), folder, path)
    if models and (raw.get("model") is not None or export is not None):
        raise UsageError(f"run: {path}: give `model` (or [export]) or `models`, not both")
    if (
        raw.get("model") is None
        and export is None
        and not models
        and not (steps and steps[0].inputs)
    ):
        raise UsageError(
            f'run: {path}: give a starting `model = "file.onnx"`, `models = [...]` or a folder, '
            "an [export] table, or a first step with `models = [...]`"
        )
    data = {key: folder / value for key, value in (_table(raw, "data", path) or {}).items()}
    return Recipe(
        path=path,
        name=str(raw.get("name", path.stem)),
        output=folder / raw.get("output", f"{path.stem}-out"),
        model=folder / raw["model"] if raw.get("model") else None,
        data=data,
        export=export,
        steps=tuple(steps),
        bench=_table(raw, "bench", path),
        serve=_table(raw, "serve", path),
        models=models,
        cluster=_cluster(_table(raw, "cluster", path), path),
    )


def _sweep(raw: Any, path: Path, index: int) -> dict[str, list[Any]]:
    """`sweep = {sparsity = [0.3, 0.5]}`: one chain per value (per combination)."""
    if not isinstance(raw, dict) or any(not isinstance(v, list) or not v for v in raw.values()):
        raise UsageError(
            f"run: {path}: [[steps]] #{index} sweep must be a table of non-empty lists, e.g. "
            "sweep = {sparsity = [0.3, 0.5]}"
        )
    return {key: list(values) for key, values in raw.items()}


def _models(raw: Any, folder: Path, path: Path) -> tuple[Path, ...]:
    """`models = ["a.onnx", ...]`, or `models = "folder"` for every .onnx in it, sorted."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        found = tuple(sorted((folder / raw).glob("*.onnx")))
        if not found:
            raise UsageError(f"run: {path}: models = {raw!r} is not a folder with .onnx files")
        return found
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
        raise UsageError(
            f'run: {path}: models must be a list of files or a folder, e.g. ["a.onnx"]'
        )
    return tuple(folder / m for m in raw)


def _cluster(raw: dict[str, Any] | None, path: Path) -> ClusterSpec | None:
    if raw is None:
        return None
    unknown = sorted(set(raw) - set(CLUSTER_KEYS))
    if unknown:
        raise UsageError(
            f"run: {path}: [cluster] has unknown key {name_list(unknown)} — allowed: "
            f"{name_list(CLUSTER_KEYS)}"
        )
    targets = raw.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise UsageError(f'run: {path}: [cluster] targets must be a list like ["hw=rpi5"]')
    address = raw.get("address")
    if address is not None and not isinstance(address, str):
        raise UsageError(f'run: {path}: [cluster] address must be a string like "HOST:6379"')
    return ClusterSpec(address, tuple(targets))
