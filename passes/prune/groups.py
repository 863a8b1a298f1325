"""Channel dependency groups on the ONNX graph: which channels must be pruned together.

Every weighted node that may be pruned (a *producer*: Conv, ConvTranspose, Gemm, MatMul with a
constant weight) gives each of its output channels a fresh *atom*. Atoms flow forward through the
graph with the tensors that carry them (a `Track`: an axis and one atom per index on it):
activations, BatchNormalization, pools and elementwise ops keep them; depthwise convolutions
repeat them; Concat concatenates them; Reshape/Flatten split or merge them (attention heads,
flattened feature maps); Transpose moves them. Where two tensors meet elementwise (a residual
Add, a squeeze-excitation Mul, Q·Kᵀ) their atoms are *tied* (union-find). Weighted nodes that
read a tracked tensor are *consumers*: their input-channel slices go with the atoms.

A group is the set of producers whose atoms got tied together; its units are the atom classes
(a channel, or a whole attention head). Anything the analysis does not understand freezes the
atoms it touches, and a group with a frozen atom is skipped with the reason — never broken.

The analysis also records every rewrite that removing atoms implies (weight and parameter
slices, Reshape/Resize literals, depthwise `group` attributes), so that `PruneChannelsPass`
only has to apply them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import onnx_ir as ir

from onnxsmith.linear import (
    DEFAULT_DOMAINS,
    PRUNABLE_OPS,
    LinearSpec,
    constant,
    depthwise_multiplier,
    linear_spec,
)

_PASS_THROUGH = frozenset(
    [
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Elu",
        "Selu",
        "Celu",
        "Gelu",
        "Erf",
        "Softplus",
        "Softsign",
        "Mish",
        "Neg",
        "Abs",
        "Sqrt",
        "Exp",
        "Log",
        "Reciprocal",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        "Identity",
        "Cast",
        "Clip",
        "ThresholdedRelu",
        "Swish",
    ]
)
_POOLS = frozenset(
    [
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "LpPool",
        "GlobalLpPool",
    ]
)
_ELEMENTWISE = frozenset(
    [
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Max",
        "Min",
        "Pow",
        "PRelu",
        "Sum",
        "Mean",
    ]
)
_RESHAPES = frozenset(
    [
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
    ]
)
_REDUCES = frozenset(
    [
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSumExp",
        "ReduceSumSquare",
    ]
)


@dataclasses.dataclass
class Track:
    """A tensor that carries channels: `axis` (negative, counted from the end) and its atoms."""

    axis: int
    atoms: np.ndarray


@dataclasses.dataclass(frozen=True)
class ParamSlice:
    """Slice constant input `index` of `node` along `axis` with the kept mask of `source`."""

    node: ir.Node
    index: int
    axis: int
    source: ir.Value


@dataclasses.dataclass(frozen=True)
class LiteralRewrite:
    """Set entry `position` of constant input `index` (a shape) to the kept size of `source`."""

    node: ir.Node
    index: int
    position: int
    source: ir.Value


@dataclasses.dataclass(frozen=True)
class Consumer:
    """A weighted node that contracts channels of `act` with its weight's `spec.in_axis`."""

    node: ir.Node
    spec: LinearSpec
    act: ir.Value


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Producers whose output channels are pruned together, and what reads them.

    Attributes:
        name: the first producer's node name (stable for a given model).
        producers: node names whose output channels are the group's units.
        consumers: node names whose input channels shrink with the group.
        units: how many prunable units (channels, or attention heads) the group has.
        width: tensor channels per unit in the first producer (1, or the head size).
        skipped: why the group cannot be pruned, or None.
    """

    name: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    units: int
    width: int
    skipped: str | None = None

    @property
    def channels(self) -> int:
        return self.units * self.width


class _Atoms:
    """Union-find over integer atom ids; the first reason an atom was frozen is kept."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.frozen: dict[int, str] = {}

    def new(self, count: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count)

    def find(self, atom: int) -> int:
        root = atom
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[atom] != root:
            self.parent[atom], atom = root, self.parent[atom]
        return root

    def roots(self, atoms: np.ndarray) -> np.ndarray:
        return np.fromiter((self.find(int(a)) for a in atoms), dtype=np.int64, count=len(atoms))

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def freeze(self, atoms: Iterable[int], reason: str) -> None:
        for atom in atoms:
            self.frozen.setdefault(int(atom), reason)


class ChannelAnalysis:
    """The channel groups of a model plus every rewrite that pruning them implies.

    Build it with `analyze_channels`; it refers to the model's own nodes and values, so it is
    valid until the model changes.
    """

    def __init__(self, model: ir.Model, ops: Iterable[str], exclude: Iterable[str]) -> None:
        self.model = model
        self.ops = frozenset(ops)
        self.exclude = frozenset(exclude)
        self.atoms = _Atoms()
        self.tracks: dict[ir.Value, Track] = {}
        self.slices: list[ParamSlice] = []
        self.literals: list[LiteralRewrite] = []
        self.group_attrs: list[tuple[ir.Node, ir.Value]] = []  # depthwise Conv, its input
        self.consumers: list[Consumer] = []
        self.producers: list[tuple[ir.Node, LinearSpec, np.ndarray]] = []
        self.groups: list[ChannelGroup] = []
        self.unit_roots: dict[str, np.ndarray] = {}  # group name -> root atom of each unit
        self._handlers: dict[str, Callable[[ir.Node, list[tuple[int, ir.Value]]], str | None]]
        self._handlers = {op: self._pass_through for op in _PASS_THROUGH - {"PRelu", "Clip"}}
        self._handlers.update({op: self._pool for op in _POOLS})
        self._handlers.update({op: self._elementwise for op in _ELEMENTWISE | {"Clip"}})
        self._handlers.update({op: self._reshape for op in _RESHAPES})
        self._handlers.update({op: self._reduce for op in _REDUCES})
        self._handlers.update(
            {
                "Dropout": self._pass_through,
                "BatchNormalization": self._batchnorm,
                "InstanceNormalization": self._batchnorm,
                "LayerNormalization": self._layernorm,
                "Softmax": self._softmax,
                "LogSoftmax": self._softmax,
                "Transpose": self._transpose,
                "Concat": self._concat,
                "MatMul": self._matmul,
                "Resize": self._resize,
                "Upsample": self._resize,
            }
        )

    # -- building ---------------------------------------------------------------------------

    def run(self) -> ChannelAnalysis:
        graph = self.model.graph
        for node in graph:
            self._visit(node)
        for value in graph.outputs:
            if value in self.tracks:
                self._freeze(value, f"its channels reach graph output {value.name!r}")
        for value, _ in list(self.tracks.items()):
            outside = [n for n, _ in value.uses() if n.graph is not graph]
            if outside:
                self._freeze(value, f"{value.name!r} is read inside a subgraph")
        self._build_groups()
        return self

    def _visit(self, node: ir.Node) -> None:
        tracked = [(i, v) for i, v in enumerate(node.inputs) if v is not None and v in self.tracks]
        spec = linear_spec(node)
        if spec is not None:
            self._linear(node, spec, tracked)
            return
        if not tracked:
            return
        if node.domain not in DEFAULT_DOMAINS:
            reason: str | None = (
                f"{node.domain}::{node.op_type} node {node.name!r} is not understood"
            )
        elif depthwise_multiplier(node) is not None:
            reason = self._depthwise(node, tracked)
        elif node.op_type in self._handlers:
            reason = self._handlers[node.op_type](node, tracked)
        else:
            reason = f"{node.op_type} node {node.name!r} is not understood"
        if reason is None and any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
            reason = f"{node.op_type} node {node.name!r} has a second output in use (indices, mask)"
        if reason is not None:
            for _, value in tracked:
                self._freeze(value, reason)
            for out in node.outputs:
                self.tracks.pop(out, None)

    def _freeze(self, value: ir.Value, reason: str) -> None:
        self.atoms.freeze(self.tracks[value].atoms, reason)

    def _set(self, value: ir.Value, axis: int, atoms: np.ndarray) -> None:
        self.tracks[value] = Track(axis, atoms)

    # -- weighted nodes ---------------------------------------------------------------------

    def _linear(self, node: ir.Node, spec: LinearSpec, tracked: list[tuple[int, ir.Value]]) -> None:
        weight = node.inputs[spec.weight]
        assert weight is not None
        shared = len({n for n, _ in weight.uses()}) > 1
        act = node.inputs[0]
        for index, value in tracked:
            if index != 0:
                self._freeze(value, f"{value.name!r} is a weight of {node.name!r}")
                continue
            axis = self.tracks[value].axis
            rank = _linear_rank(node, value)
            wanted = spec.act_axis if spec.act_axis < 0 else spec.act_axis - (rank or 0)
            if rank is None and spec.act_axis >= 0:
                self._freeze(value, f"the rank of {value.name!r} is unknown")
            elif axis != wanted:
                self._freeze(value, f"{node.op_type} {node.name!r} reads channels on another axis")
            elif shared:
                self._freeze(value, f"weight {weight.name!r} is shared by several nodes")
            else:
                assert act is not None
                self.consumers.append(Consumer(node, spec, act))
                self.slices.append(ParamSlice(node, spec.weight, spec.in_axis, act))
        out = node.outputs[0]
        channels = constant(weight).shape[spec.out_axis]  # type: ignore[union-attr]
        atoms = self.atoms.new(channels)
        out_rank = _linear_rank(node, out)
        out_axis = -1 if spec.act_axis < 0 else spec.act_axis - (out_rank or 0)
        if spec.act_axis >= 0 and out_rank is None:
            self.atoms.freeze(atoms, f"the rank of {out.name!r} is unknown")
        self._set(out, out_axis, atoms)
        self.producers.append((node, spec, atoms))
        reason = self._producer_blocker(node, shared)
        if reason is not None:
            self.atoms.freeze(atoms, reason)
            return
        self.slices.append(ParamSlice(node, spec.weight, spec.out_axis, out))
        bias = node.inputs[spec.bias] if spec.bias is not None and len(node.inputs) > 2 else None
        bias_array = constant(bias)
        if bias is not None and bias_array is None:
            self.atoms.freeze(atoms, f"the bias of {node.name!r} is not a constant")
        elif bias_array is not None and bias_array.ndim and bias_array.shape[-1] == channels:
            self.slices.append(ParamSlice(node, spec.bias, bias_array.ndim - 1, out))  # type: ignore[arg-type]

    def _producer_blocker(self, node: ir.Node, shared: bool) -> str | None:
        if node.op_type not in self.ops:
            return f"{node.op_type} is not in --ops"
        if node.name in self.exclude:
            return f"{node.name!r} is excluded"
        if shared:
            return f"the weight of {node.name!r} is shared by several nodes"
        return None

    def _depthwise(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        value = node.inputs[0]
        if [i for i, _ in tracked] != [0] or value is None:
            return f"depthwise Conv {node.name!r} has channels in its weight or bias"
        if self.tracks[value].axis != -(_rank(value) or 0) + 1:
            return f"depthwise Conv {node.name!r} reads channels on another axis"
        weight = node.inputs[1]
        assert weight is not None
        if len({n for n, _ in weight.uses()}) > 1:
            return f"weight {weight.name!r} is shared by several nodes"
        multiplier = depthwise_multiplier(node)
        assert multiplier is not None
        out = node.outputs[0]
        self._set(out, self.tracks[value].axis, np.repeat(self.tracks[value].atoms, multiplier))
        self.slices.append(ParamSlice(node, 1, 0, out))
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            if constant(node.inputs[2]) is None:
                return f"the bias of {node.name!r} is not a constant"
            self.slices.append(ParamSlice(node, 2, 0, out))
        self.group_attrs.append((node, value))
        return None

    def _matmul(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        """MatMul of two activations (attention): batch axes tie, contracted axes tie."""
        a, b = node.inputs[0], node.inputs[1]
        ra, rb = _rank(a), _rank(b)
        if a is None or b is None or ra is None or rb is None or ra < 2 or rb < 2:
            return f"MatMul {node.name!r} has inputs of unknown or low rank"
        ta, tb = self.tracks.get(a), self.tracks.get(b)
        out = node.outputs[0]
        if ta is not None and tb is not None and ta.axis == tb.axis and ta.axis < -2:
            if len(ta.atoms) != len(tb.atoms):
                return f"MatMul {node.name!r} ties batch axes of different sizes"
            self.atoms.union(ta.atoms, tb.atoms)
            self._set(out, ta.axis, ta.atoms)
            return None
        if ta is not None and tb is not None and ta.axis == -1 and tb.axis == -2:
            self.atoms.union(ta.atoms, tb.atoms)
            return None
        if tb is None and ta is not None and ta.axis == -2:
            self._set(out, -2, ta.atoms)
            return None
        if ta is None and tb is not None and tb.axis == -1:
            self._set(out, -1, tb.atoms)
            return None
        if ta is not None and ta.axis < -2 and _dim(b, ta.axis) == 1 and tb is None:
            self._set(out, ta.axis, ta.atoms)
            return None
        return f"MatMul {node.name!r} mixes channels in a way pruning cannot follow"

    # -- shape-preserving ops ---------------------------------------------------------------

    def _pass_through(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        if [i for i, _ in tracked] != [0]:
            return f"{node.op_type} {node.name!r} has channels in a parameter"
        track = self.tracks[tracked[0][1]]
        self._set(node.outputs[0], track.axis, track.atoms)
        return None

    def _pool(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        value = tracked[0][1]
        if self.tracks[value].axis != 1 - (_rank(value) or 0):
            return f"{node.op_type} {node.name!r} pools over the channel axis"
        return self._pass_through(node, tracked)

    def _batchnorm(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        value = tracked[0][1]
        if node.attributes.get_int("training_mode", 0):
            return f"BatchNormalization {node.name!r} is in training mode"
        if self.tracks[value].axis != 1 - (_rank(value) or 0) or [i for i, _ in tracked] != [0]:
            return f"{node.op_type} {node.name!r} normalizes another axis"
        for index in range(1, len(node.inputs)):
            if constant(node.inputs[index]) is None:
                return f"{node.op_type} {node.name!r} has non-constant parameters"
            self.slices.append(ParamSlice(node, index, 0, node.outputs[0]))
        return self._pass_through(node, tracked)

    def _layernorm(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        value = tracked[0][1]
        axis = node.attributes.get_int("axis", -1)
        rank = _rank(value)
        if rank is None or [i for i, _ in tracked] != [0]:
            return f"LayerNormalization {node.name!r} has unknown rank"
        if self.tracks[value].axis >= (axis if axis < 0 else axis - rank):
            return f"LayerNormalization {node.name!r} normalizes over the channels"
        return self._pass_through(node, tracked)

    def _softmax(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        value = tracked[0][1]
        rank = _rank(value)
        opset = self.model.opset_imports.get("", self.model.opset_imports.get("ai.onnx", 13))
        axis = node.attributes.get_int("axis", -1 if opset >= 13 else 1)
        if rank is None:
            return f"{node.op_type} {node.name!r} has unknown rank"
        axis = axis if axis < 0 else axis - rank
        track_axis = self.tracks[value].axis
        if track_axis == axis or (opset < 13 and track_axis >= axis):
            return f"{node.op_type} {node.name!r} normalizes over the channels"
        return self._pass_through(node, tracked)

    def _reduce(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        value = tracked[0][1]
        rank = _rank(value)
        axes_value = node.inputs[1] if len(node.inputs) > 1 else None
        axes_array = constant(axes_value)
        axes = (
            node.attributes.get_ints("axes", None)
            if axes_value is None
            else (None if axes_array is None else axes_array.tolist())
        )
        if rank is None or not axes or [i for i, _ in tracked] != [0]:
            return f"{node.op_type} {node.name!r} reduces over unknown axes"
        position = self.tracks[value].axis + rank
        reduced = {a % rank for a in axes}
        if position in reduced:
            return f"{node.op_type} {node.name!r} reduces over the channels"
        if node.attributes.get_int("keepdims", 1):
            return self._pass_through(node, tracked)
        new_rank = rank - len(reduced)
        new_position = position - sum(1 for a in reduced if a < position)
        self._set(node.outputs[0], new_position - new_rank, self.tracks[value].atoms)
        return None

    def _transpose(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        value = tracked[0][1]
        perm = node.attributes.get_ints("perm", None)
        rank = len(perm) if perm else _rank(value)
        if rank is None:
            return f"Transpose {node.name!r} has unknown rank"
        perm = list(perm) if perm else list(reversed(range(rank)))
        track = self.tracks[value]
        self._set(node.outputs[0], perm.index(track.axis + rank) - rank, track.atoms)
        return None

    def _elementwise(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        """Broadcasting ops: tracked inputs tie; constants along the channel axis are sliced."""
        axis = self.tracks[tracked[0][1]].axis
        atoms = self.tracks[tracked[0][1]].atoms
        out = node.outputs[0]
        for index, value in enumerate(node.inputs):
            if value is None:
                continue
            track = self.tracks.get(value)
            if track is not None:
                if track.axis != axis or len(track.atoms) != len(atoms):
                    return f"{node.op_type} {node.name!r} meets channels on different axes"
                self.atoms.union(atoms, track.atoms)
                continue
            size = _dim(value, axis)
            if size == 1:
                continue
            array = constant(value)
            if size == len(atoms) and array is not None:
                self.slices.append(ParamSlice(node, index, array.ndim + axis, out))
                continue
            return (
                f"{node.op_type} {node.name!r} combines the channels with {value.name!r}, "
                "which is not pruned with them"
            )
        self._set(out, axis, atoms)
        return None

    # -- ops that move channels between axes ------------------------------------------------

    def _concat(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        out = node.outputs[0]
        rank = _rank(out) or _rank(tracked[0][1])
        if rank is None:
            return f"Concat {node.name!r} has unknown rank"
        axis = node.attributes.get_int("axis", 0)
        axis = axis if axis < 0 else axis - rank
        track_axis = self.tracks[tracked[0][1]].axis
        if any(self.tracks[v].axis != track_axis for _, v in tracked):
            return f"Concat {node.name!r} meets channels on different axes"
        if axis != track_axis:
            return self._elementwise(node, tracked)
        pieces = []
        for value in node.inputs:
            assert value is not None
            if value in self.tracks:
                pieces.append(self.tracks[value].atoms)
                continue
            size = _dim(value, axis)
            if size is None:
                return f"Concat {node.name!r} has an input of unknown size"
            fresh = self.atoms.new(size)
            self.atoms.freeze(fresh, f"{value.name!r} is concatenated with pruned channels")
            pieces.append(fresh)
        self._set(out, axis, np.concatenate(pieces))
        return None

    def _reshape(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        """Reshape/Flatten/Squeeze/Unsqueeze: find where the channel axis lands by strides."""
        value = tracked[0][1]
        if [i for i, _ in tracked] != [0]:
            return f"{node.op_type} {node.name!r} takes its shape from pruned channels"
        out = node.outputs[0]
        in_shape, out_shape = _ints(value.shape), _ints(out.shape)
        track = self.tracks[value]
        if in_shape is None or out_shape is None:
            return f"{node.op_type} {node.name!r} has shapes that are not known"
        placed = _place_axis(in_shape, len(in_shape) + track.axis, out_shape)
        if placed is None:
            return f"{node.op_type} {node.name!r} splits the channels irregularly"
        position, blocks, repeat, tile = placed
        atoms = track.atoms
        if blocks > 1:  # a split such as hidden -> (heads, head_size): a head is one unit
            per_block = atoms.reshape(blocks, -1)
            for column in range(1, per_block.shape[1]):
                self.atoms.union(per_block[:, 0], per_block[:, column])
            atoms = per_block[:, 0]
        atoms = np.tile(np.repeat(atoms, repeat), tile)
        self._set(out, position - len(out_shape), atoms)
        if node.op_type == "Reshape":
            target = constant(node.inputs[1])
            if target is None:
                return f"Reshape {node.name!r} computes its target shape at run time"
            if target[position] > 0:
                self.literals.append(LiteralRewrite(node, 1, position, out))
        return None

    def _resize(self, node: ir.Node, tracked: list[tuple[int, ir.Value]]) -> str | None:
        value = tracked[0][1]
        if [i for i, _ in tracked] != [0]:
            return f"{node.op_type} {node.name!r} takes sizes from pruned channels"
        rank = _rank(value)
        if rank is None:
            return f"{node.op_type} {node.name!r} has unknown rank"
        position = self.tracks[value].axis + rank
        scales_index = 1 if node.op_type == "Upsample" else 2
        scales = constant(node.inputs[scales_index]) if len(node.inputs) > scales_index else None
        sizes = constant(node.inputs[3]) if len(node.inputs) > 3 else None
        if sizes is not None and sizes.size == rank:
            self.literals.append(LiteralRewrite(node, 3, position, node.outputs[0]))
        elif scales is None or scales.size != rank or scales[position] != 1:
            return f"{node.op_type} {node.name!r} resizes the channel axis"
        return self._pass_through(node, tracked)

    # -- groups -----------------------------------------------------------------------------

    def _build_groups(self) -> None:
        parent = list(range(len(self.producers)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        roots_of = [self.atoms.roots(atoms) for _, _, atoms in self.producers]
        first: dict[int, int] = {}  # root atom -> first producer that reached it
        for index, roots in enumerate(roots_of):
            for root in np.unique(roots).tolist():
                other = first.setdefault(root, index)
                if find(other) != find(index):
                    parent[max(find(other), find(index))] = min(find(other), find(index))
        frozen_roots: dict[int, str] = {}
        for atom, reason in self.atoms.frozen.items():
            frozen_roots.setdefault(self.atoms.find(atom), reason)
        members: dict[int, list[int]] = {}
        for index in range(len(self.producers)):
            members.setdefault(find(index), []).append(index)
        consumer_roots = [
            (c.node.name, set(self.atoms.roots(self.tracks[c.act].atoms).tolist()))
            for c in self.consumers
            if c.act in self.tracks
        ]
        for indices in sorted(members.values()):
            lead = self.producers[indices[0]][0].name or ""
            all_roots = np.concatenate([roots_of[i] for i in indices])
            units = np.unique(all_roots)
            lead_roots = roots_of[indices[0]]
            counts = np.unique(lead_roots, return_counts=True)[1]
            width = int(counts[0])
            skipped = next((frozen_roots[r] for r in units.tolist() if r in frozen_roots), None)
            if skipped is None and (len(counts) != len(units) or (counts != width).any()):
                skipped = "its channels are tied irregularly (not one-to-one across layers)"
            unit_set = set(units.tolist())
            consumers = tuple(name or "" for name, roots in consumer_roots if roots & unit_set)
            if skipped is None and not consumers:
                skipped = "no weighted layer reads its channels"
            # units in the order of the lead producer's channels
            order = np.unique(lead_roots, return_index=True)
            ordered = order[0][np.argsort(order[1])] if len(counts) == len(units) else units
            self.groups.append(
                ChannelGroup(
                    name=lead,
                    producers=tuple(self.producers[i][0].name or "" for i in indices),
                    consumers=consumers,
                    units=len(units),
                    width=width,
                    skipped=skipped,
                )
            )
            self.unit_roots[lead] = ordered

    # -- queries used by the pass -----------------------------------------------------------

    def kept_mask(self, value: ir.Value, removed: set[int]) -> np.ndarray:
        """True for each index on `value`'s channel axis that survives removing `removed` roots."""
        roots = self.atoms.roots(self.tracks[value].atoms)
        return ~np.isin(roots, list(removed))

    def group(self, name: str) -> ChannelGroup | None:
        return next((g for g in self.groups if g.name == name), None)


def analyze_channels(
    model: ir.Model, *, ops: Iterable[str] = PRUNABLE_OPS, exclude: Iterable[str] = ()
) -> ChannelAnalysis:
    """Finds the channel groups of `model` (main graph; subgraph users freeze what they read).

    Args:
        model: a model whose weights are initializers (lift Constant nodes first) and whose
            value shapes are inferred (Reshape/Flatten need them).
        ops: producer op types that may be pruned; others are kept whole.
        exclude: node names never pruned (their groups are skipped).
    """
    return ChannelAnalysis(model, ops, exclude).run()


def _rank(value: ir.Value | None) -> int | None:
    if value is None:
        return None
    array = constant(value)
    if array is not None:
        return array.ndim
    return None if value.shape is None else value.shape.rank()


def _linear_rank(node: ir.Node, value: ir.Value) -> int | None:
    """Rank of a Conv's input or output: its weight's rank, whatever shape inference knows."""
    if node.op_type in ("Conv", "ConvTranspose"):
        weight = constant(node.inputs[1])
        if weight is not None:
            return weight.ndim
    return _rank(value)


def _dim(value: ir.Value, axis: int) -> int | None:
    """Size of `value` on negative `axis` (1 where broadcasting adds it), None if unknown."""
    array = constant(value)
    shape: tuple | None = array.shape if array is not None else None
    if shape is None and value.shape is not None:
        shape = tuple(value.shape)
    if shape is None:
        return None
    if -axis > len(shape):
        return 1
    dim = shape[axis]
    return dim if isinstance(dim, int) and dim >= 0 else None


def _ints(shape: ir.Shape | None) -> list[int | None] | None:
    if shape is None:
        return None
    # PaddlePaddle exports write -1 for a dynamic dim: unknown, like a symbolic one
    return [d if isinstance(d, int) and d >= 0 else None for d in shape]


def _product(dims: list[int | None]) -> int | None:
    total = 1
    for d in dims:
        if d is None:
            return None
        total *= d
    return total


def _place_axis(
    in_shape: list[int | None], axis: int, out_shape: list[int | None]
) -> tuple[int, int, int, int] | None:
    """Where input `axis` lands after a reshape: (output axis, blocks, repeat, tile).

    Compares element strides: channel c of the input spans `stride_in` elements. The output
    axis whose span equals the channel axis's span and whose size divides the channel count
    holds `blocks` = that size of whole-unit blocks (a split into heads, or the same axis);
    an output axis whose stride divides the input stride and whose span is a multiple of the
    input span holds each channel `repeat` times, the whole pattern `tile` times (a merge, as
    Flatten of C×H×W).
    """
    channels = in_shape[axis]
    stride_in = _product(in_shape[axis + 1 :])
    if channels is None or stride_in is None:
        return None
    span_in = channels * stride_in
    for position in range(len(out_shape)):
        stride_out = _product(out_shape[position + 1 :])
        size = out_shape[position]
        if stride_out is None or size is None or stride_out == 0:
            continue
        span_out = size * stride_out
        if span_out == span_in and channels % size == 0 and size > 1:
            return position, size if size != channels else 1, 1, 1
        if stride_in % stride_out == 0 and span_out % span_in == 0 and size >= channels:
            return position, 1, stride_in // stride_out, span_out // span_in
    return None
