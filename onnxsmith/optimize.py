"""`optimize` as a function: cleanup recipe, provenance, parity against the input."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxsmith.compare import OutputDiff, nonfinite_note
from onnxsmith.errors import PassError, SessionError
from onnxsmith.io import load_model, save_model, weight_bytes
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.pipeline import PipelineReport, apply, count_nodes
from onnxsmith.provenance import record_step
from onnxsmith.runtime.data import DataDir
from onnxsmith.runtime.parity import compare_models, input_session, random_feeds
from onnxsmith.runtime.session import Session, create_session, ort_reason
from onnxsmith.signature import input_specs

# The cleanup recipe is exact up to float reassociation in folded constants and fused BN.
ATOL, RTOL = 1e-4, 1e-5
_MAX_CHECK_FEEDS = 8
_OPTIMIZED = "the optimized model"


@dataclasses.dataclass(frozen=True)
class OptimizeReport:
    """What `optimize` did and how close the result is to the input."""

    pipeline: PipelineReport
    nodes: tuple[int, int]
    weight_bytes: tuple[int, int]
    parity: list[OutputDiff] | None  # None: not checked
    parity_note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "passes": self.pipeline.as_dict(),
            "nodes": {"before": self.nodes[0], "after": self.nodes[1]},
            "weight_bytes": {"before": self.weight_bytes[0], "after": self.weight_bytes[1]},
            "parity": None if self.parity is None else [dataclasses.asdict(d) for d in self.parity],
            "parity_note": self.parity_note,
        }


def optimize_file(
    source: str | Path,
    output: str | Path,
    *,
    opset: int | None = None,
    keep_dropout: bool = False,
    check: bool = True,
    data: str | Path | None = None,
    external_data: bool | None = None,
) -> OptimizeReport:
    """Runs the cleanup recipe on `source`, checks parity with ORT and writes `output`.

    Raises:
        SessionError: ORT cannot load the input (checked first, unless `check` is False).
        PassError: a pass failed, or the result's outputs differ from the input's.
    """
    model = load_model(source)
    reference = input_session(model, "optimize") if check else None
    before = (count_nodes(model), weight_bytes(model))
    passes = functools.partial(cleanup_passes, opset=opset, keep_dropout=keep_dropout)
    model, pipeline = apply(passes(), model)
    record_step(model, "optimize", {"opset": opset, "keep_dropout": keep_dropout})
    if reference is None:
        parity, note = None, "skipped (--no-check)"
    else:
        parity, note = _check(reference, model, data, lambda: _breaking_pass(source, passes()))
    save_model(model, output, external_data=external_data, inputs=[source])
    return OptimizeReport(
        pipeline=pipeline,
        nodes=(before[0], count_nodes(model)),
        weight_bytes=(before[1], weight_bytes(model)),
        parity=parity,
        parity_note=note,
    )


def _breaking_pass(source: str | Path, passes: list[ir.passes.PassBase]) -> str:
    """The first pass after which ORT refuses to load the model (rerun pass by pass)."""
    model = load_model(source)
    for p in passes:
        model, _ = apply([p], model)
        try:
            create_session(model)
        except SessionError:
            return type(p).__name__
    return "the last pass"


def _check(
    reference: Session,
    model: ir.Model,
    data: str | Path | None,
    breaking_pass: Callable[[], str],
) -> tuple[list[OutputDiff] | None, str]:
    specs = input_specs(model)
    if data is not None:
        feeds = list(itertools.islice(DataDir(data, specs, step="optimize"), _MAX_CHECK_FEEDS))
        origin = f"{len(feeds)} feeds from {data}"
    else:
        feeds = random_feeds(specs)
        origin = "2 random feeds (batch 1 and 2)"
    try:
        candidate = create_session(model, label=_OPTIMIZED)
    except SessionError as e:
        raise PassError(
            f"optimize: the model after {breaking_pass()} does not load in onnxruntime "
            f"({ort_reason(e.__cause__ or e)}) — an onnxsmith bug, nothing written; report "
            "this line"
        ) from e
    try:
        diffs = compare_models(
            reference, candidate, feeds, atol=ATOL, rtol=RTOL, candidate_label=_OPTIMIZED
        )
    except SessionError as e:
        if _OPTIMIZED in str(e):
            raise PassError(f"optimize: {e} — nothing written; report this line") from e
        return None, f"skipped: the input does not run on {origin} ({e}); pass --data"
    bad = [d for d in diffs if not d.within()]
    if bad:
        worst = max(bad, key=lambda d: d.worst_excess)
        raise PassError(
            f"optimize: output {worst.name!r} differs from the input by {worst.max_abs:.3g} "
            f"(tolerance {ATOL} + {RTOL}×|x|) — nothing written; rerun with --debug and report it"
        )
    return diffs, f"ok on {origin} (atol {ATOL}, rtol {RTOL}){nonfinite_note(diffs)}"
