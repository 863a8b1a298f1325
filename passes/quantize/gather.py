"""Weight-only int8 for embedding lookups: the table is stored in int8, rows dequantized after
the Gather (so only the looked-up rows are ever converted, never the whole table).

    Gather(table_q, ids) -> Cast(float) -> Mul(Gather(row_scales, ids))

One scale per row (per token), symmetric: rows of an embedding table differ in norm, and a
per-tensor scale would flatten rare tokens' rows. ORT's quantize_dynamic stores the table the
same way but with one scale for the whole table.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnxsmith.passes.quantize.names import NameScope
from onnxsmith.passes.quantize.plan import embedding_ok
from onnxsmith.passes.quantize.weights import drop_unused, quantize_weight

from onnxsmith.errors import PassError, name_list
from onnxsmith.pipeline import StatsResult


class QuantizeGatherPass(ir.passes.InPlacePass):
    """Stores the tables of the named embedding Gathers in int8 with per-row scales."""

    def __init__(self, nodes: Sequence[str]) -> None:
        super().__init__()
        self.nodes = list(nodes)

    def call(self, model: ir.Model) -> StatsResult:
        graph = model.graph
        wanted = set(self.nodes)
        targets = [node for node in graph if node.name in wanted]
        missing = sorted(wanted - {node.name or "" for node in targets})
        unfit = [node.name or "" for node in targets if not embedding_ok(node)]
        if missing or unfit:
            raise PassError(
                f"weight-only int8: {name_list(missing + unfit)} are not Gathers from a constant "
                "2-D float table in the main graph"
            )
        names = NameScope(model)
        tables: dict[ir.Value, tuple[ir.Value, ir.Value]] = {}
        for node in targets:
            table, ids = node.inputs[0], node.inputs[1]
            assert table is not None and table.const_value is not None and ids is not None
            if table not in tables:
                q, scale = quantize_weight(table.const_value.numpy(), axis=0)
                tables[table] = (
                    names.initializer(graph, f"{table.name}_quantized", q),
                    names.initializer(graph, f"{table.name}_row_scale", scale[:, None]),
                )
            q_table, row_scale = tables[table]
            base = node.name
            rows = ir.node("Gather", [q_table, ids], {"axis": 0}, name=names.node(f"{base}_int8"))
            scales = ir.node("Gather", [row_scale, ids], {"axis": 0}, name=names.node(f"{base}_s"))
            as_float = ir.node(
                "Cast", rows.outputs, {"to": ir.DataType.FLOAT}, name=names.node(f"{base}_cast")
            )
            result = ir.node(
                "Mul", [as_float.outputs[0], scales.outputs[0]], name=names.node(f"{base}_dq")
            )
            new_nodes = [rows, scales, as_float, result]
            for new in new_nodes:
                new.outputs[0].name = names.value(f"{new.name}_out")
            ir.convenience.replace_nodes_and_values(
                graph, node, [node], new_nodes, [node.outputs[0]], [result.outputs[0]]
            )
        drop_unused(graph, tables)
        return StatsResult(model, modified=bool(targets), stats={"weight_only_int8": len(targets)})
