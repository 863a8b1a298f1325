"""Accuracy of several models on eval data: against a reference model and/or ground truth."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence, Sized
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import create_session, run

from onnxsmith.errors import UsageError, name_list
from onnxsmith.metrics import BUILTIN, Metric

ModelLike = ir.Model | str | os.PathLike[str]
DEFAULT_REFERENCE_METRICS = (BUILTIN["cosine"], BUILTIN["max_abs"])
DEFAULT_LABEL_METRICS = (BUILTIN["top1"],)


@dataclasses.dataclass(frozen=True)
class AccuracySpec:
    """What to score and against what.

    Attributes:
        data: eval feeds; iterated once per model, so a `DataDir` or a list (not a generator).
        reference: the model whose outputs are the targets (usually the fp32 original).
        labels: ground-truth targets, one array per eval feed (see `runtime.labels.read_labels`).
        metrics: scores to compute; empty: cosine and max_abs against the reference, top1
            against labels.
        output: the output name to score (default: each model's first output).
    """

    data: Iterable[Feed]
    reference: ModelLike | None = None
    labels: Sequence[np.ndarray] | None = None
    metrics: tuple[Metric, ...] = ()
    output: str | None = None

    def __post_init__(self) -> None:
        if self.reference is None and self.labels is None:
            raise UsageError("accuracy needs a reference model or labels — pass one of them")


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """One model's scores; `reference` and `labels` map metric name → value."""

    output: str
    samples: int
    reference: dict[str, float]
    labels: dict[str, float]
    higher_is_better: dict[str, bool]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def evaluate(
    models: Sequence[ModelLike],
    spec: AccuracySpec,
    *,
    threads: int | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    optimization: str = "all",
    progress: Callable[[str, float, float], None] | None = None,
) -> list[AccuracyResult]:
    """Scores every model's outputs on `spec.data` (see AccuracySpec).

    The reference runs once; its outputs (of the scored output only) stay in memory while the
    models run one after another.

    Raises:
        UsageError: the chosen output is missing from a model.
        DataError: outputs and targets do not match (shape, count).
    """

    def outputs_of(model: ModelLike) -> tuple[str, list[np.ndarray]]:
        session = create_session(
            model, threads=threads, providers=providers, optimization=optimization
        )
        index, name = _output_index(session, spec.output, _label(model))
        total = len(spec.data) if isinstance(spec.data, Sized) else 0
        values = []
        for i, feed in enumerate(spec.data):
            values.append(run(session, feed, _label(model))[index])
            if progress is not None:
                progress(f"evaluating {_label(model)}", i + 1, total or i + 1)
        return name, values

    reference = outputs_of(spec.reference)[1] if spec.reference is not None else None
    on_reference = (spec.metrics or DEFAULT_REFERENCE_METRICS) if reference is not None else ()
    on_labels = (spec.metrics or DEFAULT_LABEL_METRICS) if spec.labels is not None else ()
    results = []
    for model in models:
        name, values = outputs_of(model)
        results.append(
            AccuracyResult(
                output=name,
                samples=len(values),
                reference={m.name: m(values, reference or []) for m in on_reference},
                labels={m.name: m(values, spec.labels or []) for m in on_labels},
                higher_is_better={m.name: m.higher_is_better for m in (*on_reference, *on_labels)},
            )
        )
    return results


def _output_index(session: ort.InferenceSession, output: str | None, label: str) -> tuple[int, str]:
    names = [o.name for o in session.get_outputs()]
    if output is None:
        return 0, names[0]
    if output not in names:
        raise UsageError(
            f"bench: {label} has no output {output!r} — its outputs are {name_list(names)}"
        )
    return names.index(output), output


def _label(model: ModelLike) -> str:
    if isinstance(model, ir.Model):
        return model.graph.name or "model"
    return Path(model).name
