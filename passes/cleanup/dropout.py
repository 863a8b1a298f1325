"""Removes Dropout nodes that are identities at inference time."""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.pipeline import StatsResult


def _is_inference_dropout(node: ir.Node) -> bool:
    """True when the Dropout cannot drop anything: no training_mode, or a constant False."""
    if len(node.outputs) > 1:
        mask = node.outputs[1]
        if mask.uses() or mask.is_graph_output():
            return False  # someone reads the mask
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return True
    training = node.inputs[2].const_value
    return training is not None and not bool(training.numpy())


class RemoveDropoutPass(ir.passes.InPlacePass):
    """Replaces inference-mode Dropout with its input, in every graph and subgraph."""

    def call(self, model: ir.Model) -> StatsResult:
        removed = kept = 0
        for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
            if node.op_type != "Dropout" or node.domain not in ("", "ai.onnx"):
                continue
            if not _is_inference_dropout(node):
                kept += 1
                continue
            graph = node.graph
            assert graph is not None
            identity = ir.node("Identity", inputs=[node.inputs[0]], name=node.name)
            ir.convenience.replace_nodes_and_values(
                graph, node, [node], [identity], [node.outputs[0]], [identity.outputs[0]]
            )
            removed += 1
        stats = {"removed": removed, "kept_training_mode": kept}
        return StatsResult(model, modified=removed > 0, stats=stats)
