"""Choosing what to prune: unit importance per group and hardware-aware amounts per group.

Pure numpy on the analysis and (optional) calibration statistics; measuring which groups
gain nothing on this machine happens in `onnxsmith.prune.speed`, and its verdicts come
in here as `leave_alone`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np
from onnxsmith.passes.prune.groups import ChannelAnalysis, ChannelGroup

from onnxsmith.calibration import InputStats
from onnxsmith.linear import PRUNABLE_OPS, constant, to_matrix

# No group loses more than this share of its units, whatever the others give up.
MAX_GROUP_RATIO = 0.9


@dataclasses.dataclass(frozen=True)
class ChannelPlan:
    """Which units of which channel groups to keep, frozen before any rewrite.

    Attributes:
        keep: group name -> indices of the units to keep (in the group's unit order).
        units: group name -> how many units the group had when the plan was made.
        ops: producer op types the analysis was run with.
        exclude: node names the analysis was told to leave alone.
    """

    keep: Mapping[str, tuple[int, ...]]
    units: Mapping[str, int]
    ops: tuple[str, ...] = PRUNABLE_OPS
    exclude: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class GroupDecision:
    """What the planner decided for one group, for the report."""

    name: str
    producers: tuple[str, ...]
    channels: int  # tensor channels of the first producer before pruning
    kept: int  # ... and after
    multiple: int  # kept channel counts are multiples of this
    status: str  # "pruned", "unchanged", "left alone" or "skipped"
    reason: str = ""


def unit_scores(
    analysis: ChannelAnalysis, criterion: str, stats: InputStats | None = None
) -> dict[str, np.ndarray]:
    """Importance of each unit of each prunable group (higher: keep).

    `l1`/`l2`: the norm of each unit's output weights in every producer, each producer's
    norms divided by their mean so that layers of different scale count alike. `activation`:
    the RMS of the unit's channels where the consumers read them. `taylor`: the expected
    squared change of the consumers' outputs when the unit is removed,
    E[x_c²]·‖W[:, c]‖² (first order in the removed signal). Groups whose consumers were not
    measured fall back to `l1`.
    """
    scores = {}
    for group in analysis.groups:
        if group.skipped:
            continue
        measured = None
        if criterion in ("activation", "taylor") and stats is not None:
            measured = _measured_scores(analysis, group, criterion, stats)
        scores[group.name] = (
            measured
            if measured is not None
            else _weight_scores(analysis, group, 2 if criterion == "l2" else 1)
        )
    return scores


def plan_channels(
    analysis: ChannelAnalysis,
    scores: Mapping[str, np.ndarray],
    sparsity: float,
    multiple: int,
    leave_alone: Mapping[str, str] | None = None,
) -> tuple[ChannelPlan, list[GroupDecision]]:
    """Keeps the best units of each group so that `sparsity` of all prunable channels go.

    Every group's kept channel count is a multiple of `multiple` (the SIMD block), one ratio
    is searched for all groups that may shrink so that the total removed is as close to the
    target as rounding allows, and groups in `leave_alone` keep everything while their
    channels still count in the total (the others make up for them, up to
    `MAX_GROUP_RATIO` each).
    """
    leave_alone = dict(leave_alone or {})
    eligible = [g for g in analysis.groups if not g.skipped]
    steps = {g.name: multiple // math.gcd(g.width, multiple) for g in eligible}
    for g in eligible:
        if g.units <= steps[g.name] and g.name not in leave_alone:
            leave_alone[g.name] = (
                f"{g.channels} channels cannot be rounded down to a multiple of {multiple}"
            )
    active = [g for g in eligible if g.name not in leave_alone]
    target = round(sparsity * sum(g.channels for g in eligible))

    def kept_units(group: ChannelGroup, ratio: float) -> int:
        step = steps[group.name]
        floor = step * math.ceil(group.units * (1 - MAX_GROUP_RATIO) / step)
        kept = step * round(group.units * (1 - ratio) / step)
        kept = max(kept, floor, step)
        return group.units if kept >= group.units else kept

    def removed(ratio: float) -> int:
        return sum(g.width * (g.units - kept_units(g, ratio)) for g in active)

    ratio = _search_ratio(removed, target)
    keep: dict[str, tuple[int, ...]] = {}
    decisions = []
    for group in analysis.groups:
        if group.skipped:
            decisions.append(_decision(group, group.units, 1, "skipped", group.skipped))
            continue
        step_channels = steps[group.name] * group.width
        if group.name in leave_alone:
            keep[group.name] = tuple(range(group.units))
            decisions.append(
                _decision(group, group.units, step_channels, "left alone", leave_alone[group.name])
            )
            continue
        count = kept_units(group, ratio)
        best = np.argsort(-scores[group.name], kind="stable")[:count]
        keep[group.name] = tuple(sorted(int(i) for i in best))
        status = "pruned" if count < group.units else "unchanged"
        decisions.append(_decision(group, count, step_channels, status))
    plan = ChannelPlan(
        keep=keep,
        units={g.name: g.units for g in analysis.groups},
        ops=tuple(sorted(analysis.ops)),
        exclude=tuple(sorted(analysis.exclude)),
    )
    return plan, decisions


def _search_ratio(removed: Callable[[float], int], target: int) -> float:
    """The ratio whose rounded removal count is closest to `target` (bisection, monotone)."""
    if target <= 0:
        return 0.0
    low, high = 0.0, MAX_GROUP_RATIO
    for _ in range(40):
        middle = (low + high) / 2
        if removed(middle) >= target:
            high = middle
        else:
            low = middle
    return high if abs(removed(high) - target) <= abs(target - removed(low)) else low


def _decision(
    group: ChannelGroup, kept_units: int, multiple: int, status: str, reason: str = ""
) -> GroupDecision:
    return GroupDecision(
        name=group.name,
        producers=group.producers,
        channels=group.channels,
        kept=kept_units * group.width,
        multiple=multiple,
        status=status,
        reason=reason,
    )


def _unit_index(analysis: ChannelAnalysis, group: ChannelGroup, atoms: np.ndarray) -> np.ndarray:
    """For each atom, the index of its unit in `group` (-1 if it belongs to another group)."""
    roots = analysis.atoms.roots(atoms)
    order = analysis.unit_roots[group.name]
    position = {int(r): i for i, r in enumerate(order)}
    return np.array([position.get(int(r), -1) for r in roots])


def _weight_scores(analysis: ChannelAnalysis, group: ChannelGroup, order: int) -> np.ndarray:
    total = np.zeros(group.units)
    names = set(group.producers)
    for node, spec, atoms in analysis.producers:
        if node.name not in names:
            continue
        weight = constant(node.inputs[spec.weight])
        assert weight is not None
        norms = np.linalg.norm(to_matrix(weight, spec).astype(np.float64), ord=order, axis=1)
        norms = norms / max(float(norms.mean()), 1e-12)
        index = _unit_index(analysis, group, atoms)
        np.add.at(total, index[index >= 0], norms[index >= 0])
    return total


def _measured_scores(
    analysis: ChannelAnalysis, group: ChannelGroup, criterion: str, stats: InputStats
) -> np.ndarray | None:
    total = np.zeros(group.units)
    found = False
    for consumer in analysis.consumers:
        name = consumer.node.name or ""
        if name not in group.consumers or name not in stats.means_sq:
            continue
        atoms = analysis.tracks[consumer.act].atoms
        weight = constant(consumer.node.inputs[consumer.spec.weight])
        assert weight is not None
        matrix = to_matrix(weight, consumer.spec).astype(np.float64)
        energy = stats.means_sq[name]
        if energy.size != matrix.shape[1]:
            continue
        if criterion == "taylor":
            energy = energy * np.sum(matrix**2, axis=0)
        per_channel = energy.reshape(len(atoms), -1).sum(axis=1)
        index = _unit_index(analysis, group, atoms)
        np.add.at(total, index[index >= 0], per_channel[index >= 0])
        found = True
    return np.sqrt(total) if found else None
