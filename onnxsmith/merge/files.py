"""`merge` on files: load, fit (stack/weighted), merge, check against separate sessions, save."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxsmith.compare import OutputDiff, nonfinite_note
from onnxsmith.errors import PassError, SessionError, UsageError
from onnxsmith.io import load_model, save_model
from onnxsmith.merge.ensemble import merge_models, merge_record
from onnxsmith.merge.evaluate import MergeEval, evaluate_merge
from onnxsmith.merge.fit import StackFit
from onnxsmith.merge.sessions import MERGED_LABEL, check_merge
from onnxsmith.merge.stacking import fit_stack
from onnxsmith.provenance import record_step
from onnxsmith.runtime.fidelity import AUTO
from onnxsmith.runtime.parity import random_feeds
from onnxsmith.signature import input_specs

# Members run the same kernels merged or not; differences come from float reassociation in
# the combiner (Mean/Sum vs numpy) and, in cascades, from running a sub-batch.
ATOL, RTOL = 1e-5, 1e-5


@dataclasses.dataclass(frozen=True)
class MergeReport:
    """What `merge_files` did."""

    output: Path
    record: dict[str, Any]
    member_bytes: int
    merged_bytes: int
    fit: StackFit | None
    parity: list[OutputDiff] | None
    parity_note: str
    evaluation: MergeEval | None

    def as_dict(self) -> dict[str, Any]:
        fit = None
        if self.fit is not None:
            fit = {
                "method": self.fit.method,
                "weights": list(self.fit.weights),
                "samples": self.fit.samples,
                "member_accuracy": self.fit.member_accuracy,
                "accuracy": self.fit.accuracy,
            }
        return {
            "output": str(self.output),
            "merge": self.record,
            "member_bytes": self.member_bytes,
            "merged_bytes": self.merged_bytes,
            "fit": fit,
            "parity": None if self.parity is None else [dataclasses.asdict(d) for d in self.parity],
            "parity_note": self.parity_note,
            "eval": None if self.evaluation is None else self.evaluation.as_dict(),
        }


def merge_files(
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    mode: str,
    *,
    weights: Sequence[float] | None = None,
    output_name: str | None = None,
    softmax: bool | None = None,
    threshold: float | None = None,
    fit: str | Path | None = None,
    labels: str | Path | None = None,
    teacher: str | os.PathLike[str] | None = None,
    stacker: str = "nnls",
    mapping: Sequence[str] = (),
    axis: int = -1,
    opset: int | None = None,
    check: bool = True,
    evaluate: str | Path | None = None,
    eval_labels: str | Path | None = None,
    thresholds: Sequence[float] = (),
    seconds: float = 5.0,
    metric: str = AUTO,
    external_data: bool | None = None,
) -> MergeReport:
    """Merges the model files `paths` into `output` (see `merge_models` for the modes).

    `fit` (with `labels` or `teacher`) fits the weights of `weighted` (NNLS, then normalized)
    or `stack` (`stacker`: nnls or logistic). Unless `check` is False, the merged model is run
    against the members as separate sessions on two random feeds and nothing is written when
    they differ. `evaluate` scores and times the result on a data dir (with `eval_labels`),
    `seconds` per interleaved timing run; cascades also sweep `thresholds`; `metric` judges
    the merged outputs against the members run separately (recorded in the metadata).
    """
    _check_options(mode, weights, fit, labels, teacher, evaluate, eval_labels, thresholds)
    if metric != AUTO and evaluate is None:
        raise UsageError("merge: --metric judges the --eval results — pass --eval DIR too")
    models = [load_model(p) for p in paths]
    fitted = None
    if fit is not None:
        fitted = fit_stack(
            models,
            fit,
            method=stacker if mode == "stack" else "nnls",
            labels=labels,
            teacher=teacher,
            output=output_name,
            softmax_scores=bool(softmax),
            mapping=mapping,
            axis=axis,
        )
        if mode == "weighted":
            weights = fitted.weights
    merged = merge_models(
        models,
        mode,
        weights=weights,
        output=output_name,
        softmax=softmax,
        threshold=threshold,
        stack=fitted if mode == "stack" else None,
        mapping=mapping,
        axis=axis,
        opset=opset,
    )
    parity, note = _check(models, merged) if check else (None, "skipped (--no-check)")
    evaluation = None
    if evaluate is not None:
        sweep = sorted({*thresholds, *([threshold] if threshold is not None else [])})
        evaluation = evaluate_merge(
            models,
            merged,
            evaluate,
            labels=eval_labels,
            thresholds=sweep if mode == "cascade" else (),
            seconds=seconds,
            metric=metric,
        )
    options: dict[str, Any] = {
        "mode": mode,
        "weights": weights,
        "output": output_name,
        "softmax": softmax,
        "threshold": threshold,
        "stacker": stacker if mode == "stack" else None,
        "map": list(mapping),
        "axis": axis,
        "opset": opset,
    }
    if evaluation is not None and evaluation.fidelity is not None:
        options["fidelity"] = evaluation.fidelity.as_dict()
    record_step(merged, "merge", options)
    written = save_model(merged, output, external_data=external_data, inputs=paths)
    return MergeReport(
        output=written,
        record=merge_record(merged),
        member_bytes=sum(_stored_bytes(p, m) for p, m in zip(paths, models, strict=True)),
        merged_bytes=written.stat().st_size,
        fit=fitted,
        parity=parity,
        parity_note=note,
        evaluation=evaluation,
    )


def _stored_bytes(path: str | os.PathLike[str], model: ir.Model) -> int:
    """The model file plus the external data files its weights live in."""
    files = {
        Path(value.const_value.base_dir) / value.const_value.location
        for graph in model.graphs()
        for value in graph.initializers.values()
        if isinstance(value.const_value, ir.ExternalTensor)
    }
    return Path(path).stat().st_size + sum(f.stat().st_size for f in files)


def _check(models: list[ir.Model], merged: ir.Model) -> tuple[list[OutputDiff] | None, str]:
    feeds = random_feeds(input_specs(merged))
    origin = "2 random feeds (batch 1 and 2)"
    try:
        diffs = check_merge(models, merged, feeds, atol=ATOL, rtol=RTOL)
    except SessionError as e:
        if MERGED_LABEL in str(e):
            raise PassError(
                f"merge: the merged graph does not run ({e}) — nothing written; rerun with "
                "--debug and report it"
            ) from e
        return None, f"skipped: the members do not run on {origin} ({e})"
    bad = [d for d in diffs if not d.within()]
    if bad:
        worst = max(bad, key=lambda d: d.worst_excess)
        raise PassError(
            f"merge: output {worst.name!r} of the merged graph differs from the members run "
            f"separately by {worst.max_abs:.3g} (tolerance {ATOL} + {RTOL}×|x|) — nothing "
            "written; rerun with --debug and report it"
        )
    worst_abs = max(d.max_abs for d in diffs)
    note = f"ok vs {len(models)} separate sessions on {origin}, max abs {worst_abs:.2g}"
    return diffs, note + nonfinite_note(diffs)


def _check_options(
    mode: str,
    weights: Sequence[float] | None,
    fit: object,
    labels: object,
    teacher: object,
    evaluate: object,
    eval_labels: object,
    thresholds: Sequence[float],
) -> None:
    if fit is not None and mode not in ("weighted", "stack"):
        raise UsageError(f"merge: --fit applies to --mode weighted or stack, not {mode}")
    if fit is None and (labels is not None or teacher is not None):
        raise UsageError("merge: --labels and --teacher go with --fit DIR")
    if mode == "stack" and fit is None:
        raise UsageError(
            "merge: --mode stack learns its weights: pass --fit DIR with --labels DIR or "
            "--teacher MODEL"
        )
    if mode == "weighted" and (weights is None) == (fit is None):
        raise UsageError("merge: --mode weighted needs either --weights W1,W2,... or --fit DIR")
    if eval_labels is not None and evaluate is None:
        raise UsageError("merge: --eval-labels goes with --eval DIR")
    if thresholds and (mode != "cascade" or evaluate is None):
        raise UsageError("merge: --thresholds sweeps a cascade on --eval DIR")
