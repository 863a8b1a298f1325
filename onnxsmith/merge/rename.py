"""Per-member prefixes, so members' names never collide inside the merged model."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir


def prefix_names(model: ir.Model, prefix: str) -> None:
    """Prefixes every value, node, graph and function name of `model`, in place.

    Unnamed nodes are named after their op type and position. Subgraphs (If/Loop/Scan bodies)
    and function bodies are included; nodes that call a renamed function are pointed at its
    new name, so the model stays valid on its own.
    """
    seen: set[int] = set()
    for graph in _all_graphs(model):
        scope = "" if graph is model.graph else f"{graph.name or 'graph'}/"
        graph.name = f"{prefix}{graph.name or 'graph'}"
        values = [*graph.inputs, *graph.initializers.values()]
        for i, node in enumerate(graph):
            node.name = prefix + (node.name or f"{scope}{node.op_type}_{i}")
            values += node.outputs
        for value in values:
            if id(value) not in seen and value.name:
                seen.add(id(value))
                value.name = prefix + value.name
    _prefix_functions(model, prefix)


def _all_graphs(model: ir.Model) -> Iterator[ir.Graph]:
    yield from model.graphs()
    for function in model.functions.values():
        yield function.graph
        yield from function.subgraphs()


def _prefix_functions(model: ir.Model, prefix: str) -> None:
    functions = list(model.functions.values())
    if not functions:
        return
    renamed = {f.identifier(): prefix + f.name for f in functions}
    for graph in _all_graphs(model):
        for node in graph:
            new = renamed.get((node.domain, node.op_type, node.overload))
            if new is not None:
                node.op_type = new
    model.functions.clear()
    for function in functions:
        function.name = prefix + function.name
        model.functions[function.identifier()] = function
