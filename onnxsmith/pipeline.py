"""Runs passes over a model and collects what each one did."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

import onnx_ir as ir

from onnxsmith.errors import OnnxsmithError, PassError


@dataclasses.dataclass
class StatsResult(ir.passes.PassResult):
    """A pass result that also says what the pass did, e.g. `{"folded": 3}`."""

    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PassReport:
    """One pass's outcome inside a pipeline."""

    name: str
    modified: bool
    seconds: float
    nodes_before: int
    nodes_after: int
    stats: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class PipelineReport:
    """The passes a pipeline ran, in order."""

    passes: tuple[PassReport, ...]

    def as_dict(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(p) for p in self.passes]


def count_nodes(model: ir.Model) -> int:
    """Nodes in the main graph and every subgraph."""
    return sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))


def apply(passes: Iterable[ir.passes.PassBase], model: ir.Model) -> tuple[ir.Model, PipelineReport]:
    """Runs `passes` in order, each on the previous one's output.

    Raises:
        PassError: a pass failed; the message names it.
    """
    reports = []
    for p in passes:
        name = type(p).__name__
        before = count_nodes(model)
        start = time.perf_counter()
        try:
            result = p(model)
        except OnnxsmithError:
            raise
        except Exception as e:
            raise PassError(f"{name}: {e}") from e
        model = result.model
        stats = result.stats if isinstance(result, StatsResult) else {}
        reports.append(
            PassReport(
                name=name,
                modified=result.modified,
                seconds=time.perf_counter() - start,
                nodes_before=before,
                nodes_after=count_nodes(model),
                stats=stats,
            )
        )
    return model, PipelineReport(tuple(reports))
