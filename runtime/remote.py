"""Measurements on a cluster node: a `Timer` that runs there, and `bench` on several targets.

What travels is data only: model files as bytes (with their external data over 2 GB), feeds
as arrays, results as dataclasses. The functions that run on the node are onnxsmith's own,
imported by name from the onnxsmith installed there (install the same version); nothing in a
model file is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import importlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
from onnxsmith.runtime.benchmark import BenchmarkResult, BenchOptions, benchmark
from onnxsmith.runtime.cluster import (
    Node,
    Target,
    call,
    connect,
    here,
    parse_target,
    require_ray,
    resolve,
)
from onnxsmith.runtime.cpu import CpuFacts
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.kernels import KernelReport
from onnxsmith.runtime.machine import MachineInfo
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timer import BucketJob, LocalTimer, TimedModel, Timer, TimingJob
from onnxsmith.runtime.timing import BucketTiming

from onnxsmith.errors import ClusterError, UsageError, name_list
from onnxsmith.io import load_model, save_model

ModelFiles = dict[str, bytes]  # file name → content; "model.onnx" is the model


def timer_for(target: str, address: str | None, step: str) -> Timer:
    """A timer measuring on a `target` node (this process, if it already runs there)."""
    wanted = parse_target(target, step)
    require_ray(step)
    node = here(wanted, step)
    if node is not None:
        return LocalTimer(str(wanted), node.node_id)
    connect(address, step)
    return NodeTimer(resolve(wanted, step), wanted, step)


# -- models as bytes ------------------------------------------------------------------------


def pack(model: TimedModel) -> ModelFiles:
    """The files of `model` (its .onnx, and its external data over 2 GB) as bytes."""
    loaded = model if isinstance(model, ir.Model) else load_model(model)
    with tempfile.TemporaryDirectory(prefix="onnxsmith-pack-") as folder:
        save_model(loaded, Path(folder) / "model.onnx")
        return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def unpack(files: ModelFiles, folder: Path) -> Path:
    """Writes `files` into `folder`; returns the model's path. Names are plain file names."""
    for name, data in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise ClusterError(f"cluster: refusing model file name {name!r} (not a plain name)")
        (folder / name).write_bytes(data)
    return folder / "model.onnx"


class _Packer:
    """Packs each distinct model once per call and ships it through the object store."""

    def __init__(self) -> None:
        self.refs: dict[int, Any] = {}
        self.kept: list[TimedModel] = []  # holds the models so their ids stay unique

    def __call__(self, model: TimedModel) -> Any:
        key = id(model)
        if key not in self.refs:
            self.refs[key] = require_ray("cluster").put(pack(model))
            self.kept.append(model)
        return self.refs[key]


# -- what runs on the node (module-level: Ray imports them by name there) --------------------


def _node_facts() -> tuple[CpuFacts, MachineInfo, str]:
    ray = importlib.import_module("ray")
    return LocalTimer().cpu(), LocalTimer().machine(), ray.get_runtime_context().get_node_id()


def _time_on_node(jobs: Sequence[tuple[Sequence[Any], TimingJob]]) -> list[list[np.ndarray]]:
    with tempfile.TemporaryDirectory(prefix="onnxsmith-node-") as folder:
        unpacked = _Unpacker(Path(folder))
        local = [dataclasses.replace(job, models=unpacked(refs)) for refs, job in jobs]
        return LocalTimer().time(local)


def _time_buckets_on_node(refs: Sequence[Any], job: BucketJob) -> BucketTiming:
    with tempfile.TemporaryDirectory(prefix="onnxsmith-node-") as folder:
        local = dataclasses.replace(job, models=_Unpacker(Path(folder))(refs))
        return LocalTimer().time_buckets(local)


class _Unpacker:
    """Writes shipped models into `folder` once each (the same model in several jobs is the
    same ref object) and returns their paths."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: dict[int, Path] = {}

    def __call__(self, refs: Sequence[Any]) -> tuple[Path, ...]:
        ray = importlib.import_module("ray")
        for ref in refs:
            if id(ref) not in self.paths:
                sub = self.folder / str(len(self.paths))
                sub.mkdir()
                self.paths[id(ref)] = unpack(ray.get(ref), sub)
        return tuple(self.paths[id(ref)] for ref in refs)


def _kernels_on_node(files: ModelFiles, threads: int | None) -> tuple[dict, dict, int]:
    with tempfile.TemporaryDirectory(prefix="onnxsmith-node-") as folder:
        report = LocalTimer().kernels(load_model(unpack(files, Path(folder))), threads)
    # MappingProxyType does not pickle: plain dicts travel back
    return dict(report.integer_ops), dict(report.float_compute_ops), report.qdq_nodes


def _benchmark_on_node(
    files: Sequence[ModelFiles],
    feeds: list[Feed],
    options: BenchOptions,
    names: list[str],
    context: dict[str, Any],
    target: str,
) -> BenchmarkResult:
    ray = importlib.import_module("ray")
    with tempfile.TemporaryDirectory(prefix="onnxsmith-node-") as folder:
        paths = []
        for i, model in enumerate(files):
            sub = Path(folder) / str(i)
            sub.mkdir()
            paths.append(unpack(model, sub))
        result = benchmark(paths, feeds, options=options, names=names, context=context)
    node_id = ray.get_runtime_context().get_node_id()
    machine = dataclasses.replace(result.machine, target=target, node_id=node_id)
    return dataclasses.replace(result, machine=machine)


# -- the host's side ------------------------------------------------------------------------


class NodeTimer:
    """A `Timer` whose measurements run on one cluster node (see `runtime.timer`)."""

    def __init__(self, node: Node, target: Target, step: str) -> None:
        self.node = node
        self._target = str(target)
        self.step = step
        self._facts: tuple[CpuFacts, MachineInfo, str] | None = None

    @property
    def where(self) -> str:
        return f"target {self._target} (node {self.node.node_id[:12]})"

    @property
    def target(self) -> str | None:
        return self._target

    def _node_facts(self) -> tuple[CpuFacts, MachineInfo, str]:
        if self._facts is None:
            self._facts = call(self.node, _node_facts, timing=False, step=self.step)
        return self._facts

    def cpu(self) -> CpuFacts:
        return self._node_facts()[0]

    def machine(self) -> MachineInfo:
        _, machine, node_id = self._node_facts()
        return dataclasses.replace(machine, target=self._target, node_id=node_id)

    def time(self, jobs: Sequence[TimingJob]) -> list[list[np.ndarray]]:
        packer = _Packer()
        shipped = [([packer(m) for m in job.models], _without_models(job)) for job in jobs]
        return call(self.node, _time_on_node, shipped, timing=True, step=self.step)

    def time_buckets(self, job: BucketJob) -> BucketTiming:
        packer = _Packer()
        refs = [packer(m) for m in job.models]
        shipped = dataclasses.replace(job, models=())
        return call(self.node, _time_buckets_on_node, refs, shipped, timing=True, step=self.step)

    def load(self, model: ir.Model, threads: int | None) -> None:
        create_session(model, threads=threads)  # checked here: a round trip per model costs more

    def kernels(self, model: ir.Model, threads: int | None) -> KernelReport:
        integer, floats, qdq = call(
            self.node, _kernels_on_node, pack(model), threads, timing=True, step=self.step
        )
        return KernelReport(integer, floats, qdq)


def _without_models(job: TimingJob) -> TimingJob:
    return dataclasses.replace(job, models=())


def benchmark_targets(
    targets: Sequence[str],
    address: str | None,
    models: Sequence[str | Path],
    feeds: Sequence[Feed],
    *,
    options: BenchOptions,
    context: Mapping[str, Any],
    step: str = "bench",
) -> list[BenchmarkResult]:
    """`benchmark` (timing and memory; accuracy stays with the caller) on each target's node.

    Every target is resolved before anything is timed, so a missing label fails at once.
    """
    wanted = [parse_target(t, step) for t in targets]
    repeated = sorted({str(t) for t in wanted if wanted.count(t) > 1})
    if repeated:
        raise UsageError(f"{step}: --target {name_list(repeated)} given twice — give each once")
    require_ray(step)
    local = {t: here(t, step) for t in wanted}
    if not all(local.values()):
        connect(address, step)
    nodes = {t: local[t] or resolve(t, step) for t in wanted}
    results = []
    for target in wanted:
        args = ([pack(m) for m in models], list(feeds), options, [str(m) for m in models])
        node = nodes[target]
        if local[target] is not None:  # a fan-out task already placed on the target's node
            results.append(_benchmark_on_node(*args, dict(context), str(target)))
            continue
        results.append(
            call(
                node, _benchmark_on_node, *args, dict(context), str(target), timing=True, step=step
            )
        )
    return results
