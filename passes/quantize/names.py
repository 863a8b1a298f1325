"""Fresh node and value names that cannot collide with a model's existing ones."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


class NameScope:
    """Hands out names not yet used by any node or value of `model` (main graph and subgraphs)."""

    def __init__(self, model: ir.Model) -> None:
        self._nodes: set[str] = set()
        self._values: set[str] = set(model.graph.initializers)
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            if node.name:
                self._nodes.add(node.name)
            self._values.update(v.name for v in node.outputs if v.name)
        self._values.update(v.name for v in model.graph.inputs if v.name)

    def initializer(self, graph: ir.Graph, base: str, array: np.ndarray) -> ir.Value:
        """Registers `array` as a new initializer of `graph` under a fresh name."""
        name = self.value(base)
        # Not np.ascontiguousarray: it turns a 0-d array (a per-tensor scale) into shape (1,),
        # and a tensor of shape (1,) under a declared scalar fails the full checker.
        tensor = ir.tensor(np.asarray(array, order="C"), name=name)
        value = ir.Value(
            name=name,
            type=ir.TensorType(tensor.dtype),
            shape=ir.Shape(array.shape),
            const_value=tensor,
        )
        graph.register_initializer(value)
        return value

    def node(self, base: str) -> str:
        return self._fresh(base, self._nodes)

    def value(self, base: str) -> str:
        return self._fresh(base, self._values)

    @staticmethod
    def _fresh(base: str, used: set[str]) -> str:
        name, i = base, 1
        while name in used:
            name = f"{base}_{i}"
            i += 1
        used.add(name)
        return name


def set_constant_input(
    model: ir.Model, names: NameScope, node: ir.Node, index: int, array: np.ndarray, base: str
) -> None:
    """Gives `node` the constant `array` as input `index`: in place when no other node reads the
    old value, else as a new initializer (a shared weight must not change under its other users)."""
    old = node.inputs[index] if len(node.inputs) > index else None
    if old is not None and len(old.uses()) == 1 and not old.is_graph_output():
        old.const_value = ir.tensor(array, name=old.name)
        return
    value = names.initializer(model.graph, base, array)
    if len(node.inputs) <= index:
        node.resize_inputs(index + 1)
    node.replace_input_with(index, value)
