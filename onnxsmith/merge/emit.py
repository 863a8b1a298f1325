"""Appends the merge's own nodes (combiners, gates) to a graph, at the merged model's opset."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import PassError

# Opsets where an attribute became an input: Reduce* `axes` (ReduceSum at 13, the rest at 18).
_AXES_AS_INPUT = {"ReduceSum": 13, "ReduceMax": 18, "ReduceMin": 18}


class Emitter:
    """Builds nodes into `graph`; constants always go to the main graph's initializers.

    Every value it creates is named `merge/<op>_<n>`, numbered across all the graphs of one
    merge (branches included), so names stay unique model-wide.
    """

    def __init__(
        self, graph: ir.Graph, main: ir.Graph, opset: int, counter: Iterator[int] | None = None
    ) -> None:
        self.graph = graph
        self.main = main
        self.opset = opset
        self._counter = counter if counter is not None else itertools.count()

    def branch(self, graph: ir.Graph) -> Emitter:
        """An emitter for a subgraph that shares this one's numbering and main graph."""
        return Emitter(graph, self.main, self.opset, self._counter)

    def op(
        self,
        op_type: str,
        inputs: Sequence[ir.Value | None],
        attributes: Mapping[str, Any] | None = None,
    ) -> ir.Value:
        node = ir.node(
            op_type,
            inputs,
            attributes=dict(attributes or {}),
            name=f"merge/{op_type}_{next(self._counter)}",
        )
        node.outputs[0].name = f"{node.name}:0"
        self.graph.append(node)
        return node.outputs[0]

    def const(self, array: np.ndarray | float | int, *, name: str | None = None) -> ir.Value:
        """A main-graph initializer holding `array` (subgraphs read it from the outer scope)."""
        name = name or f"merge/const_{next(self._counter)}"
        value = ir.Value(name=name, const_value=ir.tensor(np.asarray(array), name=name))
        value.dtype = value.const_value.dtype  # type: ignore[union-attr]
        value.shape = ir.Shape(np.asarray(array).shape)
        self.main.register_initializer(value)
        return value

    def reduce(self, op_type: str, x: ir.Value, axes: Sequence[int], keepdims: bool) -> ir.Value:
        """ReduceMax/ReduceMin/ReduceSum over `axes`, with `axes` as attribute or input."""
        flag = {"keepdims": int(keepdims)}
        if self.opset >= _AXES_AS_INPUT[op_type]:
            return self.op(op_type, [x, self.const(np.asarray(axes, np.int64))], flag)
        return self.op(op_type, [x], {"axes": list(axes), **flag})

    def softmax(self, x: ir.Value, axis: int) -> ir.Value:
        """Softmax over one axis at any opset.

        Before opset 13 Softmax flattens everything from `axis` on, which equals a per-axis
        softmax only on the last axis; another axis is moved last and back.
        """
        if self.opset >= 13 or axis == -1:
            return self.op("Softmax", [x], {"axis": axis})
        rank = len(x.shape) if x.shape is not None else None
        if rank is None:
            raise PassError(
                f"merge: softmax over axis {axis} before opset 13 needs the output's rank, which "
                "the members do not declare — pass --opset 13 or --axis -1"
            )
        axis %= rank
        perm = [*(i for i in range(rank) if i != axis), axis]
        inverse = list(np.argsort(perm))
        moved = self.op("Transpose", [x], {"perm": perm})
        soft = self.op("Softmax", [moved], {"axis": -1})
        return self.op("Transpose", [soft], {"perm": [int(i) for i in inverse]})

    def batch_filled(self, like: ir.Value, value: int) -> ir.Value:
        """An int64 vector of `like`'s batch size (axis 0) filled with `value`."""
        batch = self.op("Gather", [self.op("Shape", [like]), self.const(np.array([0], np.int64))])
        filled = ir.tensor(np.array([value], np.int64))
        return self.op("ConstantOfShape", [batch], {"value": filled})
