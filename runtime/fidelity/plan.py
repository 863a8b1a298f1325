"""How a model's outputs are judged: a metric per output (chosen or named), or one plug-in."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from onnxsmith.runtime.fidelity.choose import Choice, choose_metric
from onnxsmith.runtime.fidelity.detection import RULE as DETECTION_RULE
from onnxsmith.runtime.fidelity.labelled import LABELLED, labelled_fidelity
from onnxsmith.runtime.fidelity.plugin import PluginMetric, is_plugin, load_plugin
from onnxsmith.runtime.fidelity.registry import METRICS
from onnxsmith.runtime.fidelity.result import Fidelity, Score

from onnxsmith.errors import DataError, UsageError, name_list

AUTO = "auto"
ALL_OUTPUTS = "all outputs"  # the key of a plug-in's one Fidelity in a Score
PLUGIN_TOLERANCE = 0.01
FeedOutputs = Sequence[np.ndarray]  # one feed's outputs, in the model's output order


@dataclasses.dataclass(frozen=True)
class MetricPlan:
    """The metric of each output (or a plug-in over all of them) and the tolerance override.

    Attributes:
        names: the model's output names, in order.
        choices: per output, the built-in metric and why (empty with a plug-in).
        plugin: the user's `file.py:fn`, when given.
        tolerance: the user's tolerance for every output (None: each metric's default).
        requested: what was asked for (`auto`, a metric name or `file.py:fn`).
        labels: the user's labels, one array per eval feed (empty: none).
        labelled: the output they judge (its loss is then the accuracy lost against them).
    """

    names: tuple[str, ...]
    choices: Mapping[str, Choice]
    plugin: PluginMetric | None
    tolerance: float | None
    requested: str
    labels: tuple[np.ndarray, ...] = ()
    labelled: str | None = None

    def score(self, reference: Sequence[FeedOutputs], outputs: Sequence[FeedOutputs]) -> Score:
        """Judges a candidate's outputs (per feed) against the reference's."""
        if self.plugin is not None:
            value = self.plugin(self._named(reference), self._named(outputs))
            limit = PLUGIN_TOLERANCE if self.tolerance is None else self.tolerance
            return Score({ALL_OUTPUTS: Fidelity(self.plugin.name, value, 1.0 - value, limit)})
        judged = {}
        for i, name in enumerate(self.names):
            metric = METRICS[self.choices[name].metric]
            ours, theirs = [r[i] for r in reference], [o[i] for o in outputs]
            if name == self.labelled:
                limit = metric.tolerance if self.tolerance is None else self.tolerance
                judged[name] = labelled_fidelity(metric.name, ours, theirs, self.labels, limit)
            else:
                judged[name] = metric(ours, theirs, self.tolerance)
        return Score(judged)

    @property
    def labels_would_judge(self) -> bool:
        """Without labels, exactly one output's metric (top1, ctc) could be judged by them."""
        found = [c for c in self.choices.values() if c.metric in LABELLED]
        return self.labelled is None and self.plugin is None and len(found) == 1

    def describe(self) -> list[str]:
        """One line per output: `fidelity metric for 'logits': top1 — [1, 10]: ...`."""
        if self.plugin is not None:
            return [
                f"fidelity metric for {ALL_OUTPUTS}: {self.plugin.name} (your metric; loss = 1 - "
                "its value)"
            ]
        how = "chosen from the outputs" if self.requested == AUTO else "--metric"
        lines = [
            f"fidelity metric for {name!r}: {choice.metric} — {choice.reason} ({how})"
            for name, choice in self.choices.items()
        ]
        if self.labelled is not None:
            lines.append(
                f"judged against --labels on {self.labelled!r}: loss = fp32's accuracy minus the "
                "candidate's"
            )
        if any(c.metric == "detection_f1" for c in self.choices.values()):
            lines.append(DETECTION_RULE)
        return lines

    def as_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "outputs": {n: dataclasses.asdict(c) for n, c in self.choices.items()},
            "plugin": self.plugin.name if self.plugin else None,
            "tolerance": self.tolerance,
            "labels": self.labelled,
        }

    def _named(self, outputs: Sequence[FeedOutputs]) -> list[dict[str, np.ndarray]]:
        return [dict(zip(self.names, feed, strict=True)) for feed in outputs]


def metric_names() -> tuple[str, ...]:
    """What `--metric` accepts besides `file.py:fn`."""
    return (AUTO, *METRICS)


def plan_metrics(
    names: Sequence[str],
    reference: Sequence[FeedOutputs],
    metric: str = AUTO,
    *,
    tolerance: float | None = None,
    labels: Sequence[np.ndarray] = (),
    step: str = "quantize",
) -> MetricPlan:
    """Chooses (or checks) the metric of every output from the reference's eval outputs.

    Args:
        names: the model's output names.
        reference: the reference model's outputs on each eval feed.
        metric: `auto`, a built-in name (for every float output), or `file.py:fn`.
        tolerance: the largest loss that passes, for every output (None: each metric's own).
        labels: the user's labels, one per eval feed, for the one output judged by `top1` or
            `ctc` (`labelled.py`); empty: judged against the reference alone.
        step: the verb, for messages.

    Raises:
        UsageError: an unknown metric, a bad tolerance, a metric that does not fit an output,
            a plug-in that cannot be loaded, or labels with no single output to judge.
        DataError: labels that do not fit the outputs.
    """
    if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
        raise UsageError(f"{step}: --max-loss {tolerance} must be a number >= 0, e.g. 0.01")
    if not reference:
        raise UsageError(f"{step}: the eval set is empty — pass eval data with .npz feeds")
    if is_plugin(metric):
        if labels:
            raise UsageError(
                f"{step}: --labels judges the built-in top1 and ctc metrics; your metric {metric}"
                " can read its labels itself — drop --labels"
            )
        plugin = load_plugin(metric, step)
        plan = MetricPlan(tuple(names), {}, plugin, tolerance, metric)
        plan.score(reference, reference)  # a broken plug-in fails now, not after calibration
        return plan
    if metric != AUTO and metric not in METRICS:
        raise UsageError(
            f"{step}: unknown --metric {metric!r} — choose from {name_list(metric_names())} or "
            "give your own as path/to/file.py:function"
        )
    choices = {}
    for i, name in enumerate(names):
        outputs = [np.asarray(feed[i]) for feed in reference]
        chosen = choose_metric(name, outputs)
        if metric != AUTO and chosen.metric != "exact":
            chosen = Choice(metric, METRICS[metric].loss)
        choices[name] = chosen
        _check_fits(step, name, chosen.metric, outputs)
    if not labels:
        return MetricPlan(tuple(names), choices, None, tolerance, metric)
    plan = MetricPlan(
        tuple(names), choices, None, tolerance, metric, tuple(labels), _labelled(step, choices)
    )
    try:  # labels that do not fit fail now, not after calibration
        plan.score(reference, reference)
    except DataError as e:
        raise DataError(f"{step}: --labels: {e}") from e
    return plan


def _labelled(step: str, choices: Mapping[str, Choice]) -> str:
    """The one output whose metric labels can judge."""
    found = [name for name, choice in choices.items() if choice.metric in LABELLED]
    if len(found) != 1:
        judged = ", ".join(f"{n!r}: {c.metric}" for n, c in choices.items())
        raise UsageError(
            f"{step}: --labels needs exactly one output judged by {' or '.join(LABELLED)}; the "
            f"outputs are judged by {judged} — drop --labels, or judge with your own --metric "
            "file.py:fn"
        )
    return found[0]


def _check_fits(step: str, name: str, metric: str, outputs: list[np.ndarray]) -> None:
    try:
        METRICS[metric](outputs, outputs)
    except DataError as e:
        raise UsageError(f"{step}: --metric {metric} does not fit output {name!r}: {e}") from e
