"""Runs a recipe: plans each verb call, validates all of them, then runs them with resume.

Every intermediate model stays in the output folder; `run.json` records each step's command,
input fingerprints, timing, output hash and the metrics its report holds. A step whose command
and inputs are unchanged, and whose output is still the one recorded, is skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from onnxsmith.errors import NotFasterError, OnnxsmithError, UsageError, name_list
from onnxsmith.io import load_model, save_model
from onnxsmith.recipe.spec import Recipe, allowed_options, to_argv, writes_output

RUN_FILE = "run.json"
_MAX_METRICS_BYTES = 200_000


@dataclasses.dataclass(frozen=True)
class Invocation:
    """One planned verb call."""

    label: str  # "02-prune", used for output names and messages
    verb: str
    argv: tuple[str, ...]  # the full command line after `onnxsmith`
    inputs: tuple[Path, ...]  # files and folders whose content decides the result
    output: Path | None
    reports: tuple[Path, ...]  # where the verb writes JSON metrics, if it does
    source: Path | None = None  # the model this step transforms (the previous step's output)


def _fingerprint(path: Path) -> str:
    """sha256 of a file (with its external data) or of a folder's names, sizes and mtimes."""
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file():
                stat = child.stat()
                digest.update(
                    f"{child.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
                )
        return digest.hexdigest()
    for part in (path, path.with_name(path.name + ".data")):
        if part.is_file():
            with part.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _relative_to_recipe(value: Any, folder: Path) -> Any:
    """A string naming a file or folder that exists next to the recipe, as that path (a
    `file.py:factory` target too); anything else (numbers, module targets) as it is."""
    if not isinstance(value, str):
        return value
    file, colon, rest = value.partition(":")
    if colon and not file.endswith(".py"):
        return value
    candidate = folder / file
    return f"{candidate}{colon}{rest}" if candidate.exists() else value


class Planner:
    """Turns a recipe into invocations, each validated by its verb's own parser."""

    def __init__(self, recipe: Recipe, parsers: dict[str, argparse.ArgumentParser]):
        self.recipe = recipe
        self.parsers = parsers
        self.out = recipe.output

    def _parser(self, verb: str, where: str) -> argparse.ArgumentParser:
        if verb not in self.parsers:
            raise UsageError(f"run: {where}: verb {verb!r} is not available in this installation")
        return self.parsers[verb]

    def _call(
        self, label: str, verb: str, positional: list[str], options: dict[str, Any], where: str
    ) -> Invocation:
        parser = self._parser(verb, where)
        allowed = allowed_options(parser)
        unknown = sorted(k for k in options if k not in allowed)
        if unknown:
            raise UsageError(
                f"run: {self.recipe.path}: {where} ({verb}) has unknown option "
                f"{name_list(unknown)} — allowed: {name_list(allowed, 40)}"
            )
        options = {k: _relative_to_recipe(v, self.recipe.path.parent) for k, v in options.items()}
        for key, path in self.recipe.data.items():
            if key in allowed and key not in options:
                options[key] = str(path)
        output = None
        if writes_output(parser):
            suffix = "" if verb == "serve-export" else ".onnx"
            output = self.out / f"{label}{suffix}"
        reports = []
        if "report" in allowed and "report" not in options and verb != "serve-export":
            options["report"] = str(self.out / f"{label}-report")
            reports.append(self.out / f"{label}-report" / "report.json")
        if "json" in allowed and "json" not in options:
            options["json"] = str(self.out / f"{label}.json")
            reports.append(self.out / f"{label}.json")
        argv = [verb, *positional]
        if output is not None:
            argv += ["-o", str(output)]
        argv += to_argv(options, parser)
        try:
            parser.parse_args(argv[1:])
        except UsageError as e:
            raise UsageError(f"run: {self.recipe.path}: {where} ({verb}): {e}") from e
        # Earlier steps' outputs do not exist yet at plan time; sources (export targets) do.
        inputs = [Path(p) for p in positional if p.endswith(".onnx") or Path(p).exists()]
        inputs += [Path(v) for k, v in options.items() if k in self.recipe.data]
        source = Path(positional[0]) if positional and positional[0].endswith(".onnx") else None
        return Invocation(label, verb, tuple(argv), tuple(inputs), output, tuple(reports), source)

    def plan(self) -> list[Invocation]:
        r = self.recipe
        calls: list[Invocation] = []
        current: Path | None = r.model
        if r.export is not None:
            options = dict(r.export)
            target = options.pop("target", None)
            if target is None:
                raise UsageError(f'run: {r.path}: [export] needs `target = "file.py:factory"`')
            target_arg = _relative_to_recipe(str(target), r.path.parent)
            calls.append(self._call("00-export", "export", [target_arg], options, "[export]"))
            current = calls[-1].output
        first = current
        for i, step in enumerate(r.steps, start=1):
            members = [str(m) for m in step.inputs]
            positional = ([str(current)] if current else []) + members
            call = self._call(
                f"{i:02d}-{step.verb}", step.verb, positional, step.options, f"[[steps]] #{i}"
            )
            calls.append(call)
            current = call.output
            first = first or current
        if r.bench is not None and current is not None:
            models = [str(m) for m in dict.fromkeys([first, current]) if m is not None]
            calls.append(self._call("90-bench", "bench", models, r.bench, "[bench]"))
        if r.serve is not None and current is not None:
            calls.append(self._call("99-serve", "serve-export", [str(current)], r.serve, "[serve]"))
        return calls


@dataclasses.dataclass(frozen=True)
class StepRecord:
    label: str
    status: str  # "ran", "cached", or "passed input on" (the verb found no gain here)
    seconds: float
    output: str | None
    verdict: str | None = None  # why the input was passed on
    node: str | None = None  # the cluster node it ran on (fan-out), None: here


def _fingerprints(call: Invocation) -> dict[str, str]:
    return {str(p): _fingerprint(p) for p in call.inputs}


def _metrics(call: Invocation) -> dict[str, Any]:
    metrics = {}
    for report in call.reports:
        if report.is_file() and report.stat().st_size <= _MAX_METRICS_BYTES:
            metrics[report.name] = json.loads(report.read_text())
    return metrics


def write_json(path: Path, data: Any) -> None:
    """Writes JSON atomically (a temp file, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


class RunLog:
    """One chain's run.json: the steps recorded last time (to resume) and this run's."""

    def __init__(self, recipe: Recipe) -> None:
        recipe.output.mkdir(parents=True, exist_ok=True)
        self.path = recipe.output / RUN_FILE
        self.previous = (
            json.loads(self.path.read_text()).get("steps", {}) if self.path.exists() else {}
        )
        self.state: dict[str, Any] = {"recipe": str(recipe.path), "name": recipe.name, "steps": {}}

    def cached(self, call: Invocation) -> StepRecord | None:
        """The record of `call` if its command, inputs and output are unchanged since."""
        before = self.previous.get(call.label, {})
        if (
            before.get("argv") == list(call.argv)
            and before.get("inputs") == _fingerprints(call)
            and call.output is not None
            and call.output.exists()
            and before.get("output_sha256") == _fingerprint(call.output)
        ):
            self.state["steps"][call.label] = before
            return StepRecord(call.label, "cached", 0.0, str(call.output))
        return None

    def record(
        self,
        call: Invocation,
        status: str,
        verdict: str | None,
        seconds: float,
        node: str | None = None,
    ) -> StepRecord:
        """Records a finished step (its output is in place) and saves run.json."""
        self.state["steps"][call.label] = {
            "argv": list(call.argv),
            "status": status,
            "verdict": verdict,
            "inputs": _fingerprints(call),
            "seconds": round(seconds, 3),
            "output": str(call.output) if call.output else None,
            "output_sha256": _fingerprint(call.output) if call.output else None,
            "metrics": _metrics(call),
            "node": node,
        }
        self.save()
        output = str(call.output) if call.output else None
        return StepRecord(call.label, status, seconds, output, verdict, node)

    def save(self) -> None:
        write_json(self.path, self.state)


def pass_input_on(call: Invocation, error: NotFasterError) -> str:
    """A step slower than its input here hands its input on as its output; returns why."""
    if call.output is None or call.source is None:
        raise type(error)(f"run: step {call.label} failed: {error}") from error
    save_model(load_model(call.source), call.output, inputs=[call.source])
    return str(error)


def run_recipe(recipe: Recipe, calls: list[Invocation], execute) -> list[StepRecord]:
    """Runs `calls` in order with `execute(argv)`; skips unchanged steps recorded in run.json."""
    log = RunLog(recipe)
    records = []
    for call in calls:
        cached = log.cached(call)
        if cached is not None:
            records.append(cached)
            continue
        start = time.perf_counter()
        status, verdict = "ran", None
        try:
            execute(list(call.argv))
        except NotFasterError as e:
            status, verdict = "passed input on", pass_input_on(call, e)
        except OnnxsmithError as e:
            raise type(e)(f"run: step {call.label} failed: {e}") from e
        records.append(log.record(call, status, verdict, time.perf_counter() - start))
    log.save()
    return records
