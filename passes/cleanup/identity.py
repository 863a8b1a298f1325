"""Removes Identity nodes, keeping those that have to stay.

onnx_ir's IdentityEliminationPass (1.1) turns a subgraph output into a value of the outer
graph when an If branch ends in `Identity(outer_value)` (silero-vad does this) and then fails;
this pass keeps such identities instead.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.pipeline import StatsResult


def _removable(node: ir.Node) -> bool:
    source, result = node.inputs[0] if node.inputs else None, node.outputs[0]
    if source is None:
        return False
    if not result.is_graph_output():
        return True
    # The source must be able to become this graph's output under the output's name.
    producer = source.producer()
    return producer is not None and producer.graph is node.graph and not source.is_graph_output()


class RemoveIdentityPass(ir.passes.InPlacePass):
    """Replaces `y = Identity(x)` by `x` everywhere, subgraphs included."""

    def call(self, model: ir.Model) -> StatsResult:
        removed = kept = 0
        for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
            if node.op_type != "Identity" or node.domain not in ("", "ai.onnx"):
                continue
            if not _removable(node):
                kept += 1
                continue
            source, result = node.inputs[0], node.outputs[0]
            assert source is not None and node.graph is not None
            if source.type is None:
                source.type, source.shape = result.type, result.shape
            was_output = result.is_graph_output()
            ir.convenience.replace_all_uses_with(result, source, replace_graph_outputs=True)
            if was_output:
                source.name = result.name
            node.graph.remove(node, safe=True)
            removed += 1
        return StatsResult(model, modified=removed > 0, stats={"removed": removed, "kept": kept})
