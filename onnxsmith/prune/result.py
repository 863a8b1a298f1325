"""What `prune` is told (`PruneOptions`) and what it reports (`PruneReport`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import onnx_ir as ir

from onnxsmith.errors import UsageError, name_list
from onnxsmith.passes.prune import CRITERIA, PRUNABLE_OPS, SCOPES, GroupDecision
from onnxsmith.prune.speed import GroupSpeed
from onnxsmith.runtime.fidelity import AUTO, Score, is_plugin, load_plugin, metric_names

DEFAULT_OPS = ("Conv", "Gemm", "MatMul")
# The default criterion: `activation` for structured pruning with calibration data, else `l1`.
# With data, ranking channels by what the next layers read kept more of the models' decisions
# (structured 30 %, LS refit, bench/RESULTS.md): PP-OCR cls top-1 0.77 → 0.85, NudeNet
# YOLOv8n F1 0.58 → 0.66, PP-OCRv4 det mask IoU 0.476 → 0.477.
AUTO_CRITERION = "auto"
# How structured pruning spreads the channels over the groups: one ratio for all (`uniform`),
# or where the measured output error grows least (`sensitivity`, the `auto` choice with
# calibration data). At 30 % with the least-squares refit (bench/RESULTS.md): PP-OCR cls top-1
# 0.87 → 0.96, PP-OCRv4 det mask IoU 0.476 → 0.967, NudeNet YOLOv8n F1 0.654 → 0.840.
ALLOCATIONS = ("uniform", "sensitivity")
AUTO_ALLOCATION = "auto"
# (original, pruned) -> (recovered, summary): trains the pruned model back towards the original.
# The CLI passes `exporter.recover.recover_pruned` (torch), so this verb never imports torch.
Recover = Callable[[ir.Model, ir.Model], tuple[ir.Model, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    """Everything `prune` can be told; `validate()` turns nonsense into a UsageError.

    Attributes:
        sparsity: fraction of weights (unstructured) or of prunable channels (structured) to
            remove, strictly between 0 and 1.
        structured: remove whole channels instead of zeroing weights.
        ops: op types to prune (Conv, ConvTranspose, Gemm, MatMul).
        exclude: node names to leave whole.
        criterion: l1, l2, taylor or activation (the last two need calibration data), or
            auto (`AUTO_CRITERION`).
        allocation: structured only: how the channels are spread over the groups, `uniform`
            or `sensitivity` (needs calibration data), or auto (`AUTO_ALLOCATION`).
        scope: unstructured only: "global" ranks all weights together (the default), "layer"
            prunes each layer to `sparsity`.
        channel_multiple: kept channel counts are multiples of this (None: the SIMD block).
        compensate: refit by least squares when calibration data is given.
        measure: time each group on the target machine and leave alone those that gain nothing.
        threads: intra-op threads for timing (None: ORT's default).
        seconds: time budget of the final interleaved latency measurement (each sweep point
            gets a quarter of it, each group region a fifth).
        metric: how outputs are judged against the original's: `auto`, a built-in name or
            `file.py:fn` (see `onnxsmith.runtime.fidelity`).
    """

    sparsity: float
    structured: bool = False
    ops: tuple[str, ...] = DEFAULT_OPS
    exclude: tuple[str, ...] = ()
    criterion: str = AUTO_CRITERION
    allocation: str = AUTO_ALLOCATION
    scope: str = "global"
    channel_multiple: int | None = None
    compensate: bool = True
    measure: bool = True
    threads: int | None = None
    seconds: float = 2.0
    metric: str = AUTO

    def validate(self, has_calib: bool) -> None:
        if not 0.0 < self.sparsity < 1.0:
            raise UsageError(
                f"prune: --sparsity {self.sparsity} is outside (0, 1) — pass a fraction such as 0.3"
            )
        unknown = [op for op in self.ops if op not in PRUNABLE_OPS]
        if unknown or not self.ops:
            raise UsageError(
                f"prune: --ops {name_list(unknown) or 'is empty'} — prunable ops are "
                f"{', '.join(PRUNABLE_OPS)}"
            )
        if self.criterion not in (AUTO_CRITERION, *CRITERIA):
            raise UsageError(
                f"prune: unknown --criterion {self.criterion!r} — choose from "
                f"{', '.join((AUTO_CRITERION, *CRITERIA))}"
            )
        if self.allocation not in (AUTO_ALLOCATION, *ALLOCATIONS):
            raise UsageError(
                f"prune: unknown --allocation {self.allocation!r} — choose from "
                f"{', '.join((AUTO_ALLOCATION, *ALLOCATIONS))}"
            )
        if self.allocation == "sensitivity" and not (self.structured and has_calib):
            raise UsageError(
                "prune: --allocation sensitivity measures each channel group's error on data — "
                "pass --structured and --calib DIR, or use --allocation uniform"
            )
        if self.scope not in SCOPES:
            raise UsageError(
                f"prune: unknown --scope {self.scope!r} — choose from {', '.join(SCOPES)}"
            )
        if self.criterion in ("taylor", "activation") and not has_calib:
            raise UsageError(
                f"prune: --criterion {self.criterion} ranks by activations — pass --calib DIR "
                "or use l1/l2"
            )
        if is_plugin(self.metric):
            load_plugin(self.metric, "prune")  # a missing file or function fails before any work
        elif self.metric not in metric_names():
            raise UsageError(
                f"prune: unknown --metric {self.metric!r} — choose from "
                f"{name_list(metric_names())} or give your own as path/to/file.py:function"
            )
        if self.seconds <= 0:
            raise UsageError(f"prune: --timing-seconds {self.seconds} must be positive")
        if self.channel_multiple is not None and self.channel_multiple < 1:
            raise UsageError(f"prune: --channel-multiple {self.channel_multiple} must be 1 or more")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved(self, has_calib: bool) -> PruneOptions:
        """These options with `auto` made concrete (`AUTO_CRITERION`, `AUTO_ALLOCATION`)."""
        measured = self.structured and has_calib
        criterion = self.criterion
        if criterion == AUTO_CRITERION:
            criterion = "activation" if measured else "l1"
        allocation = self.allocation
        if allocation == AUTO_ALLOCATION:
            allocation = "sensitivity" if measured else "uniform"
        return dataclasses.replace(self, criterion=criterion, allocation=allocation)


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How close the pruned model's outputs are to the original's on the check feeds."""

    rel_error: float  # ‖pruned − original‖ / ‖original‖ over all outputs and feeds
    cosine: float  # cosine similarity of the flattened outputs
    fidelity: Score  # in the task's terms, per output (see onnxsmith.runtime.fidelity)


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One sparsity of the report's sweep."""

    sparsity: float
    achieved: float
    agreement: Agreement
    latency_ratio: float


@dataclasses.dataclass(frozen=True)
class Recovery:
    """`--recover`: the pruned model's fidelity before training, and the training summary."""

    before: Agreement
    latency_before: tuple[float, float, float]
    training: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class PruneReport:
    """What `prune` did, measured."""

    options: PruneOptions
    mode: str  # "unstructured" or "structured"
    achieved_sparsity: float
    per_layer: dict[str, float]  # unstructured: zero fraction per layer
    groups: list[GroupDecision]  # structured: one entry per channel group
    group_speed: dict[str, GroupSpeed]
    channel_multiple: int
    multiple_source: str
    compensated: int  # layers refit by least squares
    calib_feeds: int
    agreement: Agreement
    metric_lines: tuple[str, ...]  # which metric judges each output, and why
    check_feeds: str
    latency: tuple[float, float, float]  # pruned/original median ratio, 95 % CI
    latency_ms: tuple[float, float]  # original, pruned medians
    timing_feed: str
    sizes: dict[str, dict[str, int]]  # "original"/"pruned" -> compressed_sizes
    weights: tuple[int, int]
    sweep: list[SweepPoint]
    notes: list[str]
    target: str | None = None  # the cluster label it was tuned for; None: the machine it ran on
    timed_on: str = "this machine"
    recovery: Recovery | None = None  # --recover: fidelity before it and how training went

    def as_dict(self) -> dict[str, Any]:
        found = dataclasses.asdict(self)
        found["agreement"]["fidelity"] = self.agreement.fidelity.as_dict()
        return found
