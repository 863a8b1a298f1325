"""Choosing what to prune: unit importance per group and hardware-aware amounts per group.

Pure numpy on the analysis and (optional) calibration statistics; measuring which groups
gain nothing on this machine happens in `onnxsmith.prune.speed`, and its verdicts come
in here as `leave_alone`; what each group costs in accuracy (`onnxsmith.prune.sensitivity`)
comes in as `Sensitivity`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

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
class GroupCost:
    """What removing units of one group costs, measured with the group pruned alone.

    Attributes:
        removed: the unit counts removed in the measurements, increasing.
        error: the model's output error at each of them.
        macs_per_unit: the multiply-accumulates one removed unit saves.
    """

    removed: tuple[int, ...]
    error: tuple[float, ...]
    macs_per_unit: float

    def error_at(self, units: int) -> float:
        """The error after removing `units`: the measured curve from (0, 0), made monotone,
        linear between the measurements and beyond the last one."""
        xs = np.array((0, *self.removed), dtype=np.float64)
        ys = np.maximum.accumulate(np.array((0.0, *self.error)))
        if units <= xs[-1]:
            return float(np.interp(units, xs, ys))
        slope = (ys[-1] - ys[-2]) / max(xs[-1] - xs[-2], 1.0)
        return float(ys[-1] + slope * (units - xs[-1]))


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """Measured costs of the groups (`GroupCost` by group name) and the model's compute."""

    costs: Mapping[str, GroupCost]
    total_macs: float


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
    sensitivity: Sensitivity | None = None,
) -> tuple[ChannelPlan, list[GroupDecision]]:
    """Keeps the best units of each group so that `sparsity` of all prunable channels go.

    Every group's kept channel count is a multiple of `multiple` (the SIMD block), and groups
    in `leave_alone` keep everything while their channels still count in the total (the
    others make up for them, up to `MAX_GROUP_RATIO` each). How much each group gives:
    - without `sensitivity`, one ratio for all, searched so that the total removed is as close
      to the target as rounding allows;
    - with it, the channels go where they cost the least measured error (`_allocate`), until
      `sparsity` of the channels and `sparsity` of the model's multiply-accumulates are gone
      (or as many as the one ratio removes, if fewer).
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
    counts = {g.name: kept_units(g, ratio) for g in active}
    if sensitivity is not None:
        limits = {g.name: g.units - kept_units(g, MAX_GROUP_RATIO) for g in active}
        counts = _allocate(active, steps, limits, counts, target, sparsity, sensitivity)
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
        count = counts[group.name]
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


def _allocate(
    active: Sequence[ChannelGroup],
    steps: Mapping[str, int],
    limits: Mapping[str, int],
    uniform: Mapping[str, int],
    target: int,
    sparsity: float,
    sensitivity: Sensitivity,
) -> dict[str, int]:
    """Kept units per group, removed a step at a time where the measured error grows least
    per unit of what is still missing: channels (towards `target`) and multiply-accumulates
    (towards `sparsity` of the model's, capped at what the `uniform` counts remove).

    Greedy on the measured curves, which assumes that the groups' errors add up: what each
    group costs is measured with it pruned alone. No group goes beyond its largest measured
    removal unless the targets need it (a curve flat up to there says nothing past it).
    Groups without a measured cost keep everything.
    """
    costs = sensitivity.costs
    groups = [g for g in active if g.name in costs]
    macs_target = min(
        sparsity * sensitivity.total_macs,
        sum(costs[g.name].macs_per_unit * (g.units - uniform[g.name]) for g in groups),
    )
    cut = {g.name: 0 for g in groups}
    channels = macs = 0.0
    measured = {g.name: min(limits[g.name], costs[g.name].removed[-1]) for g in groups}
    for caps in (measured, limits):
        while channels < target or macs < macs_target:
            best, best_key = None, (math.inf, 0.0)
            for g in groups:
                step, cost = steps[g.name], costs[g.name]
                if cut[g.name] + step > caps[g.name]:
                    continue
                gain = 0.0
                if channels < target:
                    gain += step * g.width / max(target, 1)
                if macs < macs_target:
                    gain += step * cost.macs_per_unit / macs_target
                if gain <= 0:
                    continue
                grows = cost.error_at(cut[g.name] + step) - cost.error_at(cut[g.name])
                key = (grows / gain, -gain)
                if key < best_key:
                    best, best_key = g, key
            if best is None:
                break
            cut[best.name] += steps[best.name]
            channels += steps[best.name] * best.width
            macs += steps[best.name] * costs[best.name].macs_per_unit
    return {g.name: g.units - cut.get(g.name, 0) for g in active}


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
