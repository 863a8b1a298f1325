"""Constant folding and exact algebraic rewrites, delegated to onnxscript's optimizer."""

from __future__ import annotations

import onnx_ir as ir
import onnxscript.optimizer
from onnxsmith.passes.cleanup.declared_shapes import (
    hidden_stale_output_shapes,
    stale_output_shapes,
)
from onnxsmith.passes.cleanup.opset_forms import hidden_from_optimizer, restore_opset_forms

from onnxsmith.pipeline import StatsResult, count_nodes

# onnxscript's defaults (8 Ki / 256 Ki elements) skip weight-sized folds such as
# Transpose(W) or Cast(W) that exporters emit; a few million elements keeps memory modest.
_SIZE_LIMIT = 1 << 22
# Folding f(W) while W itself stays in use stores W twice (silero-vad's LSTM weights grew the
# file by 45 % that way); below this many elements the copy does not matter.
_SHARED_WEIGHT_ELEMENTS = 4096
_MAX_ROUNDS = 4


def _keeps_weights_single(node: ir.Node) -> bool | None:
    """onnxscript `should_fold` hook: False vetoes a fold, None defers to its default rules."""
    for value in node.inputs:
        if value is None or value.const_value is None:
            continue
        if value.const_value.size > _SHARED_WEIGHT_ELEMENTS and len(value.uses()) > 1:
            return False
    return None


def _drop_stale_uses(model: ir.Model) -> None:
    """Detaches nodes that are no longer in the model from the values they read.

    Removing or folding an If detaches the If's own inputs but not those of the nodes in its
    branches: an outer value read only by a discarded branch still looks used, survives dead-code
    elimination, and goes only when the saved model is cleaned again (so `optimize` was not
    idempotent through files).
    """
    graphs = list(model.graphs())
    for function in model.functions.values():
        graphs += [function.graph, *function.subgraphs()]
    live = {node for graph in graphs for node in graph}
    values = {v for graph in graphs for v in [*graph.inputs, *graph.initializers.values()]}
    values.update(out for node in live for out in node.outputs)
    for value in values:
        for use in list(value.uses()):
            if use.node not in live:
                use.node.replace_input_with(use.idx, None)


def _structure(model: ir.Model) -> tuple:
    """Every node's op and wiring, and the initializers: what a simplification round changes."""
    nodes = tuple(
        (
            node.op_type,
            tuple(v.name if v else "" for v in node.inputs),
            tuple(o.name for o in node.outputs),
        )
        for graph in model.graphs()
        for node in graph
    )
    return nodes, tuple(name for graph in model.graphs() for name in graph.initializers)


def _register_orphan_constants(model: ir.Model) -> None:
    """Makes constants the optimizer left unattached into initializers of the graph using them.

    Found by `make fuzz`: with two Flatten of one input, onnxscript's rewrite to Reshape
    registered the first shape constant and left the second (`x2/shape_1`) as a value with
    data but no producer and no place in the graph — an invalid model.
    """
    for graph in model.graphs():
        for node in graph:
            for value in node.inputs:
                if (
                    value is not None
                    and value.const_value is not None
                    and value.producer() is None
                    and value.graph is None
                ):
                    graph.register_initializer(value)


def _name_new_nodes(model: ir.Model, existing: set[ir.Node]) -> None:
    """Names the nodes the optimizer created after what they compute (op and first output).

    onnxscript names a new node from a counter kept in the in-memory graph, so re-running the
    pass on the same model object numbered its re-created nodes on (`node_Identity_2` where a
    fresh load gave `node_Identity_1`): the same graph, other bytes. Output names are unique, so
    these names are too, and depend on the graph alone.
    """
    taken = {node.name for graph in model.graphs() for node in graph if node in existing}
    for graph in model.graphs():
        for node in graph:
            if node in existing or not node.outputs:
                continue
            name = base = f"{node.op_type}_{node.outputs[0].name}"
            suffix = 0
            while name in taken:
                suffix += 1
                name = f"{base}_{suffix}"
            node.name = name
            taken.add(name)


class SimplifyPass(ir.passes.InPlacePass):
    """Folds constant subexpressions (shape arithmetic included) and applies exact rewrites.

    Runs `onnxscript.optimizer.optimize_ir`: reference-evaluator folding with ONNX shape
    inference, onnxscript's default rewrite rules (no-op Cast/Expand/Transpose/Reshape removal,
    Pad→Conv, BN→Conv/Gemm, Min/Max→Clip, ...), common-subexpression elimination and function
    inlining, over every graph and subgraph. Never runs ORT. Folds that would store a second
    copy of a weight still used elsewhere are vetoed.

    onnxscript does not consult the model's opset when it builds a replacement (an opset-12
    `Reshape` came out with `allowzero`, an opset-11 `Unsqueeze` with its axes as an input);
    each round ends with `restore_opset_forms`, which maps those forms back to the model's opset,
    and folds it could not map back are kept from the optimizer (`hidden_from_optimizer`).
    Graph outputs whose declared shape the graph contradicts are hidden from it too
    (`declared_shapes`).
    """

    def call(self, model: ir.Model) -> StatsResult:
        before = count_nodes(model)
        existing = {node for graph in model.graphs() for node in graph}
        # optimize_ir stops after two rounds; repeat until a round changes nothing (ops and
        # wiring, not just the node count: Flatten → Reshape keeps the count) so the pass is
        # idempotent.
        initial = shape = _structure(model)
        stale = stale_output_shapes(model)
        for _ in range(_MAX_ROUNDS):
            with hidden_from_optimizer(model), hidden_stale_output_shapes(model, stale):
                onnxscript.optimizer.optimize_ir(
                    model,
                    onnx_shape_inference=True,
                    input_size_limit=_SIZE_LIMIT,
                    output_size_limit=_SIZE_LIMIT,
                    should_fold=_keeps_weights_single,
                )
            _drop_stale_uses(model)
            _register_orphan_constants(model)
            restore_opset_forms(model)
            previous, shape = shape, _structure(model)
            if shape == previous:
                break
        _name_new_nodes(model, existing)
        after = count_nodes(model)
        stats = {"nodes_removed": before - after}
        return StatsResult(model, modified=shape != initial, stats=stats)
