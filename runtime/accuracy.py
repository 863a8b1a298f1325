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
from onnxsmith.runtime.fidelity import (
    AUTO,
    METRICS,
    PluginMetric,
    choose_metric,
    is_plugin,
    load_plugin,
)
from onnxsmith.runtime.session import create_session, run

from onnxsmith.errors import UsageError, name_list
from onnxsmith.metrics import BUILTIN, Metric, resolve_builtin

ModelLike = ir.Model | str | os.PathLike[str]
# A scorer: a built-in of `onnxsmith.metrics`, the user's plug-in, or AUTO (the task metric
# `runtime.fidelity` chooses from the scored output; against the reference only).
Scorer = Metric | PluginMetric | str
DEFAULT_REFERENCE_METRICS: tuple[Scorer, ...] = (AUTO, BUILTIN["cosine"], BUILTIN["max_abs"])
DEFAULT_LABEL_METRICS: tuple[Scorer, ...] = (BUILTIN["top1"],)
LABEL_KEY = "label"  # a plug-in sees each label file as {"label": array}


def resolve_metric(spec: str) -> Scorer:
    """`auto`, a built-in of `onnxsmith.metrics` by name, or `path/to/file.py:fn` (the one
    plug-in type, see `runtime.fidelity.plugin`).

    Raises:
        UsageError: an unknown name, or a plug-in file or function that cannot be loaded.
    """
    if spec.strip() == AUTO:
        return AUTO
    return load_plugin(spec, "bench") if is_plugin(spec) else resolve_builtin(spec)


@dataclasses.dataclass(frozen=True)
class AccuracySpec:
    """What to score and against what.

    Attributes:
        data: eval feeds; iterated once per model, so a `DataDir` or a list (not a generator).
        reference: the model whose outputs are the targets (usually the fp32 original).
        labels: ground-truth targets, one array per eval feed (see `runtime.labels.read_labels`).
        metrics: scores to compute; empty: the task metric (AUTO), cosine and max_abs against
            the reference, top1 against labels.
        output: the output name to score (default: each model's first output).
    """

    data: Iterable[Feed]
    reference: ModelLike | None = None
    labels: Sequence[np.ndarray] | None = None
    metrics: tuple[Scorer, ...] = ()
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

    The reference runs once; its outputs stay in memory while the models run one after
    another (a plug-in sees every output; the built-ins the scored one).

    Raises:
        UsageError: the chosen output is missing from a model.
        DataError: outputs and targets do not match (shape, count).
    """

    def outputs_of(model: ModelLike) -> _Outputs:
        session = create_session(
            model, threads=threads, providers=providers, optimization=optimization
        )
        name = _output_name(session, spec.output, _label(model))
        total = len(spec.data) if isinstance(spec.data, Sized) else 0
        names = [o.name for o in session.get_outputs()]
        feeds = []
        for i, feed in enumerate(spec.data):
            feeds.append(dict(zip(names, run(session, feed, _label(model)), strict=True)))
            if progress is not None:
                progress(f"evaluating {_label(model)}", i + 1, total or i + 1)
        return _Outputs(name, feeds)

    reference = outputs_of(spec.reference) if spec.reference is not None else None
    labels = (
        _Outputs(LABEL_KEY, [{LABEL_KEY: np.asarray(y)} for y in spec.labels])
        if spec.labels is not None
        else None
    )
    on_reference = (spec.metrics or DEFAULT_REFERENCE_METRICS) if reference is not None else ()
    on_labels = [m for m in (spec.metrics or DEFAULT_LABEL_METRICS) if m != AUTO]
    results = []
    for model in models:
        found = outputs_of(model)
        scored = {
            "reference": [_score(m, found, reference) for m in on_reference if reference],
            "labels": [_score(m, found, labels) for m in on_labels if labels],
        }
        results.append(
            AccuracyResult(
                output=found.name,
                samples=len(found.feeds),
                reference={name: value for name, value, _ in scored["reference"]},
                labels={name: value for name, value, _ in scored["labels"]},
                higher_is_better={n: up for n, _, up in scored["reference"] + scored["labels"]},
            )
        )
    return results


@dataclasses.dataclass(frozen=True)
class _Outputs:
    """A model's outputs on every eval feed (by name), and the name of the scored one."""

    name: str
    feeds: list[dict[str, np.ndarray]]

    @property
    def scored(self) -> list[np.ndarray]:
        return [feed[self.name] for feed in self.feeds]


def _score(metric: Scorer, outputs: _Outputs, targets: _Outputs) -> tuple[str, float, bool]:
    """(name, value, higher is better) of one scorer; targets first for a plug-in."""
    if isinstance(metric, PluginMetric):
        return metric.name, metric(targets.feeds, outputs.feeds), True
    if isinstance(metric, Metric):
        return metric.name, metric(outputs.scored, targets.scored), metric.higher_is_better
    task = METRICS[choose_metric(targets.name, targets.scored).metric]
    return task.name, task(targets.scored, outputs.scored).value, task.name != "mse"


def _output_name(session: ort.InferenceSession, output: str | None, label: str) -> str:
    names = [o.name for o in session.get_outputs()]
    if output is None:
        return names[0]
    if output not in names:
        raise UsageError(
            f"bench: {label} has no output {output!r} — its outputs are {name_list(names)}"
        )
    return output


def _label(model: ModelLike) -> str:
    if isinstance(model, ir.Model):
        return model.graph.name or "model"
    return Path(model).name
