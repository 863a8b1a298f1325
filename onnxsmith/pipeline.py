"""Runs passes over a model and collects what each one did."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

import onnx_ir as ir

from onnxsmith.errors import OnnxsmithError, PassError
from onnxsmith.opset_check import opset_mismatches


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

    After each pass, the nodes that fit the opset's schemas before still must: a pass that
    writes a newer operator form is stopped there, named, instead of ONNX Runtime refusing the
    finished model.

    Raises:
        PassError: a pass failed or broke the model; the message names it.
    """
    reports = []
    invalid = set(opset_mismatches(model))
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
        invalid = _check_opset_forms(model, invalid, name)
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


def _check_opset_forms(model: ir.Model, known: set[ir.Node], pass_name: str) -> set[ir.Node]:
    """The nodes that do not fit their schema; raises if `pass_name` added one."""
    found = opset_mismatches(model)
    new = [(node, problem) for node, problem in found.items() if node not in known]
    if new:
        node, problem = new[0]
        more = f" (and {len(new) - 1} more nodes)" if len(new) > 1 else ""
        raise PassError(
            f"the model after {pass_name} is invalid: node {node.name or node.op_type!r}: "
            f"{problem}{more} — an onnxsmith bug; report this line"
        )
    return set(found)
