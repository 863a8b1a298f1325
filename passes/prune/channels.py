"""Structured pruning: remove whole channel groups and rewrite every tensor they touch."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import onnx_ir as ir
from onnxsmith.passes.prune.groups import ChannelAnalysis, Consumer, analyze_channels
from onnxsmith.passes.prune.plan import ChannelPlan
from onnxsmith.passes.prune.refit import refit_columns

from onnxsmith.calibration import InputStats
from onnxsmith.errors import PassError, name_list
from onnxsmith.linear import (
    constant,
    from_matrix,
    to_matrix,
)
from onnxsmith.pipeline import StatsResult


@dataclasses.dataclass(frozen=True)
class _Bias:
    node: ir.Node
    index: int


class PruneChannelsPass(ir.passes.InPlacePass):
    """Removes the units a `ChannelPlan` drops, consistently across each channel group.

    Producers lose output channels (weight, bias), consumers lose input channels, and
    BatchNormalization parameters, elementwise constants, depthwise `group` attributes,
    Reshape/Resize literals and value shapes follow. With `stats`, each consumer whose inputs
    shrank is refit by least squares so its output matches the unpruned model's
    (see `refit.refit_columns`).

    `solved` (optional, shared between runs of the pass on copies of one model) keeps each
    refit's solution under its inputs (weights, statistics, kept columns): a sequential refit
    re-prunes the model once per layer level, and without it solved every layer's system
    again each time (3,600 solves for a 67-layer YOLO where 120 differ).
    """

    def __init__(
        self,
        plan: ChannelPlan,
        stats: InputStats | None = None,
        solved: dict[tuple, tuple[np.ndarray, np.ndarray | None]] | None = None,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.stats = stats
        self.solved = {} if solved is None else solved

    def call(self, model: ir.Model) -> StatsResult:
        analysis = analyze_channels(model, ops=self.plan.ops, exclude=self.plan.exclude)
        removed = self._removed_roots(analysis)
        if not removed:
            return StatsResult(model, modified=False, stats={"channels_removed": 0})
        masks = {id(s): analysis.kept_mask(s.source, removed) for s in analysis.slices}
        overrides, refit_done, refits = self._refit(analysis, removed)
        arrays = self._sliced_arrays(analysis, masks, overrides, refit_done)
        literals = [
            (r, int(analysis.kept_mask(r.source, removed).sum())) for r in analysis.literals
        ]
        groups = [(n, int(analysis.kept_mask(v, removed).sum())) for n, v in analysis.group_attrs]
        shapes = {
            v: (t.axis, int(analysis.kept_mask(v, removed).sum()))
            for v, t in analysis.tracks.items()
        }
        # Everything is computed; only now is the model touched.
        for (node, index), array in arrays.items():
            _replace_constant(model.graph, node, index, array)
        for rewrite, size in literals:
            target = constant(rewrite.node.inputs[rewrite.index])
            assert target is not None
            target = target.copy()
            target[rewrite.position] = size
            _replace_constant(model.graph, rewrite.node, rewrite.index, target)
        for node, size in groups:
            node.attributes["group"] = ir.AttrInt64("group", size)
        for value, (axis, size) in shapes.items():
            if value.shape is not None and value.shape.rank() >= -axis:
                dims = list(value.shape)
                dims[axis] = size
                value.shape = ir.Shape(dims)
        _drop_unused_initializers(model.graph)
        shrunk = [
            g
            for g in analysis.groups
            if g.name in self.plan.keep and len(self.plan.keep[g.name]) < g.units
        ]
        channels = sum(g.width * (g.units - len(self.plan.keep[g.name])) for g in shrunk)
        return StatsResult(
            model,
            modified=True,
            stats={
                "groups_pruned": len(shrunk),
                "channels_removed": channels,
                "consumers_refit": refits,
            },
        )

    def _removed_roots(self, analysis: ChannelAnalysis) -> set[int]:
        unknown = [name for name in self.plan.keep if analysis.group(name) is None]
        if unknown:
            raise PassError(
                f"prune: the plan names channel groups {name_list(unknown)} that this model "
                "does not have — make the plan from this model"
            )
        removed: set[int] = set()
        for name, kept in self.plan.keep.items():
            group = analysis.group(name)
            assert group is not None
            if group.units != self.plan.units.get(name):
                raise PassError(
                    f"prune: group {name!r} has {group.units} units, the plan was made for "
                    f"{self.plan.units.get(name)} — was the model pruned already? make the plan "
                    "from this model"
                )
            if len(kept) == group.units:
                continue
            if group.skipped:
                raise PassError(f"prune: group {name!r} cannot be pruned: {group.skipped}")
            if not kept or min(kept) < 0 or max(kept) >= group.units:
                raise PassError(
                    f"prune: the plan for group {name!r} keeps units {sorted(kept)[:5]} of "
                    f"{group.units} — keep at least one unit, with indices below {group.units}"
                )
            roots = analysis.unit_roots[name]
            removed.update(np.delete(roots, list(kept)).tolist())
        return removed

    def _refit(
        self, analysis: ChannelAnalysis, removed: set[int]
    ) -> tuple[dict[tuple[ir.Node, int], np.ndarray], set[ir.Node], int]:
        """Refit consumers whose inputs shrank; returns arrays to use instead of the originals."""
        overrides: dict[tuple[ir.Node, int], np.ndarray] = {}
        done: set[ir.Node] = set()
        if self.stats is None:
            return overrides, done, 0
        for consumer in analysis.consumers:
            name = consumer.node.name or ""
            gram = self.stats.grams.get(name)
            keep = analysis.kept_mask(consumer.act, removed)
            if gram is None or keep.all() or not _refittable(consumer):
                continue
            pair = None
            if name in self.stats.cross:
                pair = (self.stats.cross[name], self.stats.pruned_grams[name])
            weight = constant(consumer.node.inputs[consumer.spec.weight])
            assert weight is not None
            matrix = to_matrix(weight, consumer.spec)
            per_channel = matrix.shape[1] // len(keep)
            columns = np.repeat(keep, per_channel)
            if gram.shape[0] != matrix.shape[1] + 1:
                continue  # stats from another model version
            if pair is not None and pair[1].shape[0] != int(columns.sum()) + 1:
                pair = None  # measured under another plan
            bias_at = _bias_of(consumer)
            bias = None
            if bias_at is not None:
                bias = constant(bias_at.node.inputs[bias_at.index])
            elif consumer.node.op_type != "MatMul":
                bias = np.zeros(matrix.shape[0], matrix.dtype)
                bias_at = _Bias(consumer.node, 2)
            flat_bias = None if bias is None else bias.reshape(-1)
            key = _refit_key(name, matrix, flat_bias, gram, columns, pair)
            if key not in self.solved:
                self.solved[key] = refit_columns(matrix, flat_bias, gram, columns, pair)
            new_matrix, new_bias = self.solved[key]
            if new_bias is not None and _new_bias_needs_slicing(analysis, consumer, bias_at):
                # a bias created here has no slice recorded for the node's own pruned outputs
                new_bias = new_bias[analysis.kept_mask(consumer.node.outputs[0], removed)]
            overrides[(consumer.node, consumer.spec.weight)] = from_matrix(
                new_matrix, consumer.spec, weight, int(keep.sum())
            )
            if bias_at is not None and new_bias is not None and bias is not None:
                shape = (*bias.shape[:-1], -1)
                overrides[(bias_at.node, bias_at.index)] = new_bias.reshape(shape).astype(
                    weight.dtype
                )
            done.add(consumer.node)
        return overrides, done, len(done)

    def _sliced_arrays(
        self,
        analysis: ChannelAnalysis,
        masks: dict[int, np.ndarray],
        overrides: dict[tuple[ir.Node, int], np.ndarray],
        refit_done: set[ir.Node],
    ) -> dict[tuple[ir.Node, int], np.ndarray]:
        arrays: dict[tuple[ir.Node, int], np.ndarray] = dict(overrides)
        consumer_slices = {(c.node, c.spec.weight, c.spec.in_axis) for c in analysis.consumers}
        for s in analysis.slices:
            mask = masks[id(s)]
            if mask.all():
                continue
            key = (s.node, s.index)
            if s.node in refit_done and (s.node, s.index, s.axis) in consumer_slices:
                continue  # the refit already produced the kept input columns
            array = arrays.get(key)
            if array is None:
                array = constant(s.node.inputs[s.index])
                assert array is not None
            arrays[key] = np.compress(mask, array, axis=s.axis)
        return arrays


def _refit_key(
    name: str,
    matrix: np.ndarray,
    bias: np.ndarray | None,
    gram: np.ndarray,
    columns: np.ndarray,
    pair: tuple[np.ndarray, np.ndarray] | None,
) -> tuple:
    """What a refit's solution depends on: the weights by value, the statistics by identity
    (they are never modified, only replaced), and the kept columns."""
    digest = hashlib.sha1(matrix.tobytes())
    if bias is not None:
        digest.update(bias.tobytes())
    weights = digest.hexdigest()
    stats = (id(gram), None if pair is None else (id(pair[0]), id(pair[1])))
    return name, weights, stats, columns.tobytes()


def _new_bias_needs_slicing(
    analysis: ChannelAnalysis, consumer: Consumer, bias_at: _Bias | None
) -> bool:
    """True when the refit created a bias on a node whose output channels are pruned too."""
    node = consumer.node
    if bias_at is None or bias_at.node is not node or len(node.inputs) > 2:
        return False
    return any(
        s.node is node and s.index == consumer.spec.weight and s.axis == consumer.spec.out_axis
        for s in analysis.slices
    )


def _refittable(consumer: Consumer) -> bool:
    node = consumer.node
    if node.op_type == "Gemm":
        alpha = node.attributes.get_float("alpha", 1.0)
        beta = node.attributes.get_float("beta", 1.0)
        bias = constant(node.inputs[2]) if len(node.inputs) > 2 else None
        if (
            alpha != 1.0
            or beta != 1.0
            or (bias is not None and bias.ndim > 1 and bias.shape[0] > 1)
        ):
            return False
    return node.op_type in ("Conv", "Gemm", "MatMul")


def _bias_of(consumer: Consumer) -> _Bias | None:
    """Where the consumer's bias lives: its own input, or the constant of a following Add."""
    node = consumer.node
    if node.op_type in ("Conv", "Gemm"):
        if len(node.inputs) > 2 and constant(node.inputs[2]) is not None:
            bias = constant(node.inputs[2])
            assert bias is not None
            return _Bias(node, 2) if bias.size > 1 else None
        return None
    uses = list(node.outputs[0].uses())
    if len(uses) != 1 or uses[0][0].op_type != "Add":
        return None
    add = uses[0][0]
    outputs = constant(node.inputs[1]).shape[-1]  # type: ignore[union-attr]
    for index, value in enumerate(add.inputs):
        array = constant(value)
        if array is not None and array.size == outputs and array.shape[-1] == outputs:
            return _Bias(add, index)
    return None


def _replace_constant(graph: ir.Graph, node: ir.Node, index: int, array: np.ndarray) -> None:
    """Gives input `index` of `node` the new array: in place if no one else reads it."""
    old = node.inputs[index] if index < len(node.inputs) else None
    if old is not None and old.is_initializer() and len({n for n, _ in old.uses()}) == 1:
        old.const_value = ir.tensor(array, name=old.name)
        old.shape = ir.Shape(array.shape)
        return
    base = old.name if old is not None and old.name else f"{node.name}.input{index}"
    name = base
    suffix = 0
    while name in graph.initializers:
        suffix += 1
        name = f"{base}.pruned{suffix}"
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )
    graph.register_initializer(value)
    if index >= len(node.inputs):
        node.resize_inputs(index + 1)
    node.replace_input_with(index, value)


def _drop_unused_initializers(graph: ir.Graph) -> None:
    """Removes the weights (initializers or Constant nodes) that the rewrite replaced."""
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
            del graph.initializers[name]
    for node in list(graph):
        if node.op_type == "Constant" and not any(
            o.uses() or o.is_graph_output() for o in node.outputs
        ):
            graph.remove(node, safe=True)
