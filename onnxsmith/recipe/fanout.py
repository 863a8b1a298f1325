"""Runs a recipe's chains as Ray tasks: chains in parallel, each chain's steps in order.

Each step is one task on a node chosen here: a timing step (`chains.TIMING_VERBS`) on a node of
its chain's target with its one `timing` resource free, any other step on any node with a CPU
free. The task gets its input files as bytes (models, data dirs), runs the verb in a scratch
folder on the node and returns the files it wrote; only then are they written here, step by
step, with run.json updated after each. A failed task or a lost node stops the run with the
step and node named; what finished stays recorded, so the rerun resumes there.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from onnxsmith.errors import ClusterError, NotFasterError, OnnxsmithError, UsageError
from onnxsmith.recipe.chains import TIMING_VERBS, Chain
from onnxsmith.recipe.runner import Invocation, RunLog, StepRecord, pass_input_on
from onnxsmith.recipe.spec import ClusterSpec
from onnxsmith.runtime import cluster

WORK = "{work}"  # stands for the task's scratch folder in a shipped command line
Execute = Callable[[list[str]], None]


@dataclasses.dataclass
class _Chain:
    chain: Chain
    calls: list[Invocation]
    log: RunLog
    records: list[StepRecord] = dataclasses.field(default_factory=list)
    running: bool = False

    def next_call(self) -> Invocation | None:
        """The first call not done yet, after recording the cached ones in front of it."""
        while len(self.records) < len(self.calls):
            call = self.calls[len(self.records)]
            cached = self.log.cached(call)
            if cached is None:
                return call
            self.records.append(cached)
        return None


@dataclasses.dataclass(frozen=True)
class _Task:
    chain: _Chain
    call: Invocation
    node: cluster.Node
    timing: bool
    started: float

    @property
    def label(self) -> str:
        name = self.chain.chain.name
        return f"{name}/{self.call.label}" if name else self.call.label


def run_on_cluster(
    plans: Sequence[tuple[Chain, list[Invocation]]], spec: ClusterSpec, execute: Execute
) -> list[list[StepRecord]]:
    """Runs every chain's calls on the cluster of `spec`; returns each chain's records."""
    cluster.connect(spec.address, "run")
    nodes = cluster.alive_nodes("run")
    for target in spec.targets:
        cluster.resolve(cluster.parse_target(target, "run"), "run")  # fails at once if missing
    if not any(n.timing_slots for n in nodes):
        raise ClusterError(
            "run: no node of the cluster has a 'timing' resource — start nodes with "
            "--resources '{\"timing\": 1}'"
        )
    chains = [_Chain(chain, calls, RunLog(chain.recipe)) for chain, calls in plans]
    tasks: dict[Any, _Task] = {}
    try:
        while True:
            _submit_ready(chains, tasks, nodes, execute)
            if not tasks:
                break
            where = {ref: (task.node, f"run: step {task.label}") for ref, task in tasks.items()}
            for ref in cluster.wait_any(list(tasks), where):
                _finish(tasks.pop(ref), ref)
    finally:
        for ref in tasks:  # an error elsewhere: stop the rest, write nothing of theirs
            cluster.require_ray("run").cancel(ref, force=True)
        for state in chains:
            state.log.save()
    return [state.records for state in chains]


def _submit_ready(
    chains: list[_Chain], tasks: dict[Any, _Task], nodes: list[cluster.Node], execute: Execute
) -> None:
    busy = collections.Counter(t.node.node_id for t in tasks.values())
    timing = collections.Counter(t.node.node_id for t in tasks.values() if t.timing)
    for state in chains:
        if state.running:
            continue
        call = state.next_call()
        if call is None:
            continue
        is_timing = call.verb in TIMING_VERBS
        target = cluster.parse_target(state.chain.target, "run") if state.chain.target else None
        free = [
            n
            for n in nodes
            if busy[n.node_id] < max(n.cpus, 1)
            and (not is_timing or (n.matches(target) and timing[n.node_id] < n.timing_slots))
        ]
        if not free:
            continue
        node = min(free, key=lambda n: busy[n.node_id])
        files, argv = _ship(call, state.chain.recipe.output)
        ref = cluster.submit(node, run_step, files, argv, execute, timing=is_timing)
        tasks[ref] = _Task(state, call, node, is_timing, time.perf_counter())
        state.running = True
        busy[node.node_id] += 1
        timing[node.node_id] += is_timing


def _finish(task: _Task, ref: Any) -> None:
    state, call, label = task.chain, task.call, task.label
    status, verdict = "ran", None
    try:
        written = cluster.result(ref, task.node, f"run: step {label}")
        _write_back(written, state.chain.recipe.output)
    except NotFasterError as e:
        status, verdict = "passed input on", pass_input_on(call, e)
    except ClusterError:
        raise  # it names the step and the node already
    except OnnxsmithError as e:  # the verb's own error, raised on the node (which it names)
        raise type(e)(f"run: step {label} failed: {e}") from e
    seconds = time.perf_counter() - task.started
    state.records.append(state.log.record(call, status, verdict, seconds, task.node.node_id))
    state.running = False


def _ship(call: Invocation, output: Path) -> tuple[dict[str, bytes], list[str]]:
    """The files `call` reads, as bytes, and its command line with paths in the scratch folder.

    The recipe's paths are absolute (see `cli/run.py`). An absolute path naming an existing
    file or folder (or `file.py:name`) is shipped, unless it lies in the chain's output folder
    and is not one of the step's inputs: that is something the step writes.
    """
    files: dict[str, bytes] = {}
    argv = []
    read = {p.absolute() for p in (*call.inputs, call.source) if p is not None}
    for i, value in enumerate(call.argv):
        path_text, colon, rest = value.partition(":")
        code = bool(colon) and path_text.endswith(".py")  # file.py:factory
        path = Path(path_text if code else value)
        if not path.is_absolute():
            argv.append(value)
        elif path not in read and path.is_relative_to(output.absolute()):
            argv.append(f"{WORK}/out/{path.relative_to(output.absolute())}")
        elif path.exists():
            shipped = f"in/{i}/{path.name}"
            files.update(_read(path, shipped))
            argv.append(f"{WORK}/{shipped}" + (f":{rest}" if code else ""))
        else:
            argv.append(value)
    return files, argv


def _read(path: Path, name: str) -> dict[str, bytes]:
    if path.is_dir():
        return {
            f"{name}/{child.relative_to(path)}": child.read_bytes()
            for child in sorted(path.rglob("*"))
            if child.is_file()
        }
    found = {name: path.read_bytes()}
    data = path.with_name(path.name + ".data")  # external data written beside the model
    if data.is_file():
        found[name + ".data"] = data.read_bytes()
    return found


def run_step(files: dict[str, bytes], argv: list[str], execute: Execute) -> dict[str, bytes]:
    """On the node: writes the inputs, runs the verb, returns every file it wrote."""
    with tempfile.TemporaryDirectory(prefix="onnxsmith-step-") as folder:
        work = Path(folder)
        for name, data in files.items():
            target = (work / name).resolve()
            if not target.is_relative_to(work.resolve()):
                raise UsageError(f"run: refusing shipped file name {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (work / "out").mkdir()
        execute([a.replace(WORK, folder) for a in argv])
        out = work / "out"
        return {
            str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
        }


def _write_back(written: dict[str, bytes], output: Path) -> None:
    """Writes a finished step's files into the chain's folder, each atomically."""
    for name, data in written.items():
        path = (output / name).resolve()
        if not path.is_relative_to(output.resolve()):
            raise ClusterError(f"run: a step returned file {name!r} outside {output}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
