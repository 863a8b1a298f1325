"""Confidence-gated cascades: later members run inside `If` branches, only on the samples the
earlier ones were unsure about.

Per-sample semantics for any batch size: a sample escalates from stage k to k+1 when stage k's
confidence for it (its max softmax probability; for outputs with more than batch and class
axes, the least confident position) is below the threshold. Only the escalated samples are
gathered into a sub-batch for the next stage, and its answers are scattered back in place; the
`If` skips the next stage entirely when no sample escalates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import PassError, name_list
from onnxsmith.merge.emit import Emitter
from onnxsmith.merge.members import Member

THRESHOLD_NAME = "merge/cascade_threshold"
STAGE_SUFFIX = "_stage"
# ScatterND (11) scatters the escalated answers back.
MIN_OPSET = 11
# Ops whose output holds the same probabilities as their input.
_SHAPE_ONLY = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Cast"}


def is_probability(value: ir.Value) -> bool:
    """Whether `value` comes out of a Softmax, through shape-only ops."""
    node = value.producer()
    while node is not None and node.op_type in _SHAPE_ONLY and node.inputs and node.inputs[0]:
        node = node.inputs[0].producer()
    return node is not None and node.op_type == "Softmax"


def check_cascade(members: Sequence[Member], score: str, shared: Mapping[str, ir.Value]) -> None:
    """Batch on axis 0 everywhere and a known rank of at least 2 on the score output."""
    for m in members:
        value = m.outputs[score]
        if value.shape is None or len(value.shape) < 2:
            raise PassError(
                f"merge: cascade needs output {score!r} of {m.label} to be [batch, ..., classes]"
                f" with a known rank, it is {value.shape} — run 'onnxsmith optimize' to infer "
                "shapes or pick another --output"
            )
    unbatched = [
        name
        for name, value in shared.items()
        if value.shape is not None
        and (len(value.shape) == 0 or (isinstance(value.shape[0], int) and value.shape[0] > 1))
    ]
    if unbatched:
        raise PassError(
            f"merge: cascade gathers escalated samples along axis 0, but input(s) "
            f"{name_list(unbatched)} have no dynamic batch axis — re-export the members with "
            "a dynamic batch (axis 0)"
        )


@dataclasses.dataclass(frozen=True)
class Cascade:
    """The members in order and how each decides to pass a sample on.

    Attributes:
        members: stage k is members[k].
        score: the interface output that is gated on and returned.
        threshold: the value holding the confidence threshold.
        softmax: per stage, whether its output is softmaxed to get probabilities.
        axis: the class axis.
    """

    members: Sequence[Member]
    score: str
    threshold: ir.Value
    softmax: Sequence[bool]
    axis: int

    def build(self, em: Emitter, feeds: Mapping[str, ir.Value]) -> tuple[ir.Value, ir.Value]:
        """Emits the cascade; returns the score output and the int64 stage that answered each
        sample."""
        return self._stage(em, 0, feeds)

    def _stage(
        self, em: Emitter, k: int, feeds: Mapping[str, ir.Value]
    ) -> tuple[ir.Value, ir.Value]:
        member = self.members[k]
        member.move_into(em.graph, em.main, feeds)
        out = member.outputs[self.score]
        stage = em.batch_filled(out, k)
        stage.dtype = ir.DataType.INT64
        stage.shape = ir.Shape([out.shape[0]]) if out.shape is not None else None
        if k == len(self.members) - 1:
            return out, stage
        confidence = _confidence(em, out, self.softmax[k], self.axis)
        rows = em.op("NonZero", [em.op("Less", [confidence, self.threshold])])  # [1, n]
        escalate = em.op("Greater", [em.op("Size", [rows]), em.const(np.array(0, np.int64))])

        then = ir.Graph([], [], nodes=[], name=f"merge/escalate_{k + 1}")
        t = em.branch(then)
        picked = t.op("Reshape", [rows, t.const(np.array([-1], np.int64))])
        sub_feeds = {name: t.op("Gather", [v, picked], {"axis": 0}) for name, v in feeds.items()}
        sub_out, sub_stage = self._stage(t, k + 1, sub_feeds)
        index = t.op("Transpose", [rows])  # [n, 1]: ScatterND row indices
        then.outputs.extend(
            [t.op("ScatterND", [out, index, sub_out]), t.op("ScatterND", [stage, index, sub_stage])]
        )

        keep = ir.Graph([], [], nodes=[], name=f"merge/keep_{k}")
        e = em.branch(keep)
        keep.outputs.extend([e.op("Identity", [out]), e.op("Identity", [stage])])

        node = ir.node(
            "If",
            [escalate],
            {"then_branch": then, "else_branch": keep},
            num_outputs=2,
            name=f"merge/If_escalate_{k + 1}",
        )
        em.graph.append(node)
        result, answered = node.outputs
        for branch in (then, keep):
            _set_type(branch.outputs[0], out)
            _set_type(branch.outputs[1], stage)
        _set_type(result, out)
        _set_type(answered, stage)
        result.name, answered.name = f"{node.name}:0", f"{node.name}:1"
        return result, answered


def _confidence(em: Emitter, out: ir.Value, softmax: bool, axis: int) -> ir.Value:
    probs = em.softmax(out, axis) if softmax else out
    best = em.reduce("ReduceMax", probs, [axis], keepdims=False)
    rank = len(out.shape) if out.shape is not None else 2
    if rank > 2:  # e.g. [batch, positions, classes]: the least confident position decides
        best = em.reduce("ReduceMin", best, list(range(1, rank - 1)), keepdims=False)
    return best


def _set_type(value: ir.Value, like: ir.Value) -> None:
    value.type = like.type
    value.shape = like.shape


def set_threshold(model: ir.Model, threshold: float) -> None:
    """Changes a merged cascade's threshold in place (what a threshold sweep needs)."""
    value = model.graph.initializers.get(THRESHOLD_NAME)
    if value is None or value.const_value is None:
        raise PassError(
            f"merge: the model has no {THRESHOLD_NAME!r} initializer — it is not a cascade "
            "written by onnxsmith merge"
        )
    dtype = value.const_value.numpy().dtype
    value.const_value = ir.tensor(np.asarray(threshold, dtype), name=THRESHOLD_NAME)
