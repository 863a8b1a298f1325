"""Where latencies are measured: `LocalTimer` here, `remote.NodeTimer` on a Ray cluster node.

quantize and prune ask a `Timer` for every latency they decide on (the probe, the per-group
timing, the final not-slower check), for the kernels ORT picks and for the CPU's facts, so
one search runs unchanged whether the numbers come from this machine or from the device the
model is for. Example:

    timer = LocalTimer()
    (before, after), = timer.time([TimingJob((original, pruned), (feed,), Rounds(seconds=1))])
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import onnx_ir as ir
from onnxsmith.runtime.cpu import CpuFacts
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.kernels import KernelReport, runtime_kernels
from onnxsmith.runtime.machine import MachineInfo, machine_info
from onnxsmith.runtime.session import Session, create_session
from onnxsmith.runtime.timing import BucketTiming, ShapeBucket, time_buckets, time_interleaved

TimedModel = ir.Model | str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class Rounds:
    """How long to time: exactly `runs` rounds, or `seconds` of wall time (within `min_runs`
    and `max_runs` rounds), after `warmup` untimed rounds."""

    warmup: int = 3
    runs: int | None = None
    seconds: float | None = None
    min_runs: int = 3
    max_runs: int | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class TimingJob:
    """Models timed interleaved (round-robin, rotating order) on the same feeds."""

    models: tuple[TimedModel, ...]
    feeds: tuple[Feed, ...]
    rounds: Rounds
    threads: int | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class BucketJob:
    """Models timed interleaved over shape buckets until each (candidate, baseline) pair of
    `decide` has a 95 % interval that excludes 1, or `max_seconds` (see `timing.time_buckets`).
    """

    models: tuple[TimedModel, ...]
    buckets: tuple[ShapeBucket, ...]
    decide: tuple[tuple[int, int], ...]
    seconds: float
    max_seconds: float
    threads: int | None = None
    warmup: int = 2
    min_rounds: int = 10


class Timer(Protocol):
    """Measures on one machine; `where` says which, for reports and messages."""

    @property
    def where(self) -> str: ...

    @property
    def target(self) -> str | None: ...

    def cpu(self) -> CpuFacts: ...

    def machine(self) -> MachineInfo: ...

    def time(self, jobs: Sequence[TimingJob]) -> list[list[np.ndarray]]:
        """Milliseconds per run of every model of every job (jobs run one after another)."""
        ...

    def time_buckets(self, job: BucketJob) -> BucketTiming:
        """Milliseconds per round of every model on every bucket of `job`."""
        ...

    def load(self, model: ir.Model, threads: int | None) -> None:
        """Checks that ORT loads `model` (raises SessionError) before it is timed."""
        ...

    def kernels(self, model: ir.Model, threads: int | None) -> KernelReport:
        """The ops of the graph ORT optimizes `model` into, on the timer's machine."""
        ...


class LocalTimer:
    """Times in this process. On a cluster node that already is the target (a fan-out task
    placed there), `target` and `node_id` name it so reports say what the model was tuned for.
    """

    def __init__(self, target: str | None = None, node_id: str | None = None) -> None:
        self._target = target
        self._node_id = node_id
        self._loaded: dict[int, tuple[ir.Model, Session]] = {}

    @property
    def where(self) -> str:
        if self._target is None:
            return "this machine"
        return f"target {self._target} (node {(self._node_id or '?')[:12]})"

    @property
    def target(self) -> str | None:
        return self._target

    def cpu(self) -> CpuFacts:
        return CpuFacts.here()

    def machine(self) -> MachineInfo:
        return dataclasses.replace(machine_info(), target=self._target, node_id=self._node_id)

    def load(self, model: ir.Model, threads: int | None) -> None:
        self._loaded[id(model)] = (model, create_session(model, threads=threads))

    def kernels(self, model: ir.Model, threads: int | None) -> KernelReport:
        report, session = runtime_kernels(model, threads=threads)
        self._loaded[id(model)] = (model, session)  # timing it next reuses the counted graph
        return report

    def time(self, jobs: Sequence[TimingJob]) -> list[list[np.ndarray]]:
        return [self._time(job) for job in jobs]

    def _time(self, job: TimingJob) -> list[np.ndarray]:
        sessions = [self._session(model, job.threads) for model in job.models]
        rounds = job.rounds
        return time_interleaved(
            sessions,
            list(job.feeds),
            warmup=rounds.warmup,
            runs=rounds.runs,
            seconds=rounds.seconds,
            min_runs=rounds.min_runs,
            max_runs=rounds.max_runs,
        )

    def time_buckets(self, job: BucketJob) -> BucketTiming:
        sessions = [self._session(model, job.threads) for model in job.models]
        return time_buckets(
            sessions,
            job.buckets,
            decide=job.decide,
            seconds=job.seconds,
            max_seconds=job.max_seconds,
            warmup=job.warmup,
            min_rounds=job.min_rounds,
        )

    def _session(self, model: TimedModel, threads: int | None) -> Session:
        loaded = self._loaded.pop(id(model), None)  # sessions are reused once, then freed
        if loaded is not None and loaded[0] is model:
            return loaded[1]
        return create_session(model, threads=threads)
