"""What each channel group costs: the model's output error with that group pruned alone.

One ratio for every group spends channels where the model needs them. At structured 30 % the
PP-OCRv4 text detector's early high-resolution layers took its mask IoU to 0.48, while its
wide deep layers carry channels that change nothing. So each group is pruned alone at the
target share and at twice it, its output error measured on the check feeds against the
original, and the compute it saves counted; `plan_channels` then takes the channels where
they cost the least (`--allocation sensitivity`; bench/RESULTS.md has the measurements).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.prune import (
    ChannelAnalysis,
    ChannelGroup,
    ChannelPlan,
    GroupCost,
    PruneChannelsPass,
    Sensitivity,
    plan_channels,
)
from onnxsmith.passes.prune.plan import MAX_GROUP_RATIO
from onnxsmith.progress import Reporter
from onnxsmith.runtime.compute import total_multiply_accumulates
from onnxsmith.runtime.metric import EvalSet


def pruned_alone(
    model: ir.Model, analysis: ChannelAnalysis, trial: ChannelPlan, skip: Sequence[str] = ()
) -> Iterator[tuple[ChannelGroup, ir.Model, int]]:
    """Each group that `trial` shrinks (and `skip` does not name), pruned alone in a copy of
    `model` that shares its weights, with the number of units it lost."""
    for group in analysis.groups:
        kept = trial.keep.get(group.name)
        if group.skipped or kept is None or len(kept) == group.units or group.name in skip:
            continue
        copy = model.clone()
        PruneChannelsPass(dataclasses.replace(trial, keep={group.name: kept}))(copy)
        yield group, copy, group.units - len(kept)


def measure_sensitivity(
    model: ir.Model,
    analysis: ChannelAnalysis,
    scores: dict[str, np.ndarray],
    sparsity: float,
    multiple: int,
    judge: EvalSet,
    skip: Sequence[str] = (),
    reporter: Reporter | None = None,
) -> Sensitivity:
    """Every prunable group's output error, pruned alone at `sparsity` and at twice it (at most
    `MAX_GROUP_RATIO`), on the judge's feeds; and the compute one of its units costs."""
    reporter = reporter or Reporter()
    feed = judge.feeds[0]
    total = total_multiply_accumulates(model, feed, "prune: the model")
    curves: dict[str, list[tuple[int, float]]] = {}
    saved: dict[str, float] = {}
    for ratio in sorted({sparsity, min(2 * sparsity, MAX_GROUP_RATIO)}):
        trial, _ = plan_channels(analysis, scores, ratio, multiple)
        reporter.phase(f"output error of each channel group pruned alone by {ratio:.0%}")
        for group, copy, removed in pruned_alone(model, analysis, trial, skip):
            points = curves.setdefault(group.name, [])
            if points and removed <= points[-1][0]:
                continue
            error = output_error(judge.reference, judge.outputs(copy, "pruned model"))
            points.append((removed, error))
            if group.name not in saved:
                left = total_multiply_accumulates(copy, feed, "prune: the pruned model")
                saved[group.name] = (total - left) / removed
    costs = {
        name: GroupCost(
            removed=tuple(r for r, _ in points),
            error=tuple(e for _, e in points),
            macs_per_unit=saved[name],
        )
        for name, points in curves.items()
    }
    return Sensitivity(costs=costs, total_macs=total)


def output_error(
    reference: Sequence[Sequence[np.ndarray]], outputs: Sequence[Sequence[np.ndarray]]
) -> float:
    """The mean, over outputs and their channels (axis 1), of the squared change over the
    channel's variance in the reference: every channel counts alike, so a detector's class
    scores weigh as much as its boxes in pixels."""
    errors = []
    for index in range(len(reference[0])):
        ref = _channels([feed[index] for feed in reference])
        new = _channels([feed[index] for feed in outputs])
        variance = ref.var(axis=1) + 1e-12
        errors.append(float(np.mean(np.mean((new - ref) ** 2, axis=1) / variance)))
    return float(np.mean(errors))


def _channels(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One output over all feeds as [channel, everything else] (feeds may differ in size)."""
    laid_out = [
        np.moveaxis(a, 1, 0).reshape(a.shape[1], -1) if a.ndim >= 2 else a.reshape(1, -1)
        for a in (np.asarray(a, dtype=np.float64) for a in arrays)
    ]
    return np.concatenate(laid_out, axis=1)
