"""`optimize` as a function: cleanup recipe, provenance, parity against the input."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxsmith.compare import OutputDiff
from onnxsmith.errors import PassError, SessionError
from onnxsmith.io import load_model, save_model, weight_bytes
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.pipeline import PipelineReport, apply, count_nodes
from onnxsmith.provenance import record_step
from onnxsmith.runtime.data import DataDir
from onnxsmith.runtime.parity import compare_models, random_feeds
from onnxsmith.signature import input_specs

# The cleanup recipe is exact up to float reassociation in folded constants and fused BN.
ATOL, RTOL = 1e-4, 1e-5
_MAX_CHECK_FEEDS = 8


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
        PassError: a pass failed, or the result's outputs differ from the input's.
    """
    model = load_model(source)
    before = (count_nodes(model), weight_bytes(model))
    model, pipeline = apply(cleanup_passes(opset=opset, keep_dropout=keep_dropout), model)
    record_step(model, "optimize", {"opset": opset, "keep_dropout": keep_dropout})
    parity, note = _check(source, model, data) if check else (None, "skipped (--no-check)")
    save_model(model, output, external_data=external_data, inputs=[source])
    return OptimizeReport(
        pipeline=pipeline,
        nodes=(before[0], count_nodes(model)),
        weight_bytes=(before[1], weight_bytes(model)),
        parity=parity,
        parity_note=note,
    )


def _check(
    source: str | Path, model: ir.Model, data: str | Path | None
) -> tuple[list[OutputDiff] | None, str]:
    specs = input_specs(model)
    if data is not None:
        feeds = list(itertools.islice(DataDir(data, specs, step="optimize"), _MAX_CHECK_FEEDS))
        origin = f"{len(feeds)} feeds from {data}"
    else:
        feeds = random_feeds(specs)
        origin = "2 random feeds (batch 1 and 2)"
    try:
        diffs = compare_models(source, model, feeds, atol=ATOL, rtol=RTOL)
    except SessionError as e:
        if "the transformed model" in str(e):
            raise PassError(f"optimize: the optimized model no longer runs ({e})") from e
        return None, f"skipped: the input does not run on {origin} ({e}); pass --data"
    bad = [d for d in diffs if not d.within()]
    if bad:
        worst = max(bad, key=lambda d: d.worst_excess)
        raise PassError(
            f"optimize: output {worst.name!r} differs from the input by {worst.max_abs:.3g} "
            f"(tolerance {ATOL} + {RTOL}×|x|) — nothing written; rerun with --debug and report it"
        )
    return diffs, f"ok on {origin} (atol {ATOL}, rtol {RTOL})"
