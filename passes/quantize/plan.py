"""What can be quantized, and how: candidates, modes and the per-node plan the passes apply."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping, Sequence

import onnx_ir as ir

from onnxsmith.errors import PassError, UsageError, name_list

STATIC = "static"  # activations and weights int8 with calibrated ranges (QDQ or QOperator)
DYNAMIC = "dynamic"  # weights int8, activations quantized per run (DynamicQuantizeLinear)
WEIGHT_ONLY = "weight-only"  # int8 table, float result: embedding Gathers (size, not speed)
FP32 = "fp32"
MODES = (STATIC, DYNAMIC, WEIGHT_ONLY, FP32)

COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
QUANTIZABLE_OPS = (*COMPUTE_OPS, "Gather")
_MIN_EMBEDDING = 4096  # elements; smaller tables (position ids, tiny lookups) stay fp32
# Ops that ORT runs on int8 data between quantized compute ops (QLinear* kernels or plain data
# movement); quantizing them keeps a chain of Convs in int8 instead of bouncing through float.
COMPANION_OPS = frozenset(
    {
        "Relu",
        "Clip",
        "LeakyRelu",
        "Sigmoid",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Add",
        "Mul",
        "Concat",
        "Resize",
        "Reshape",
        "Flatten",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Split",
        "Slice",
        "Pad",
    }
)


# Companions that compute (QLinearAdd / QLinearMul): each requantizes its result. On PP-OCRv4 det
# (VNNI Xeon, 2026-12-01) leaving them in float made the static model both more faithful (mask
# IoU 0.953 → 0.976) and faster (0.80x → 0.67x of fp32): the search tries both placements.
ARITHMETIC_OPS = frozenset({"Add", "Mul"})
COMPANIONS = ("all", "structural")  # structural: COMPANION_OPS less ARITHMETIC_OPS


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A node that can run in int8, with its int8 modes in order of preference."""

    node: str
    op_type: str
    group: str  # nodes timed together: the op type, "MatMul (two activations)" for A@B
    modes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class QuantPlan:
    """The mode of each quantized node (nodes not listed stay fp32)."""

    modes: Mapping[str, str]
    per_channel: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", types.MappingProxyType(dict(self.modes)))

    def nodes(self, mode: str) -> list[str]:
        return [n for n, m in self.modes.items() if m == mode]

    def with_modes(self, changes: Mapping[str, str]) -> QuantPlan:
        merged = {**self.modes, **changes}
        return QuantPlan({n: m for n, m in merged.items() if m != FP32}, self.per_channel)


def nodes_named(model: ir.Model, names: Sequence[str], step: str) -> list[ir.Node]:
    """The main-graph nodes called `names`, in that order; a PassError names any missing."""
    by_name = {node.name: node for node in model.graph}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise PassError(f"{step}: no node named {name_list(missing)} in the main graph")
    return [by_name[n] for n in names]


def weight_of(node: ir.Node) -> ir.Value | None:
    """The constant float32 weight of a compute node (input 1), or None when it is computed."""
    if len(node.inputs) < 2 or node.inputs[1] is None:
        return None
    weight = node.inputs[1]
    if weight.const_value is None or weight.dtype != ir.DataType.FLOAT:
        return None
    return weight


def activation_name(node: ir.Node) -> str:
    """The name of a compute node's first (activation) input ("" when it has none)."""
    first = node.inputs[0] if node.inputs else None
    return (first.name or "") if first is not None else ""


def _float_input(node: ir.Node) -> bool:
    first = node.inputs[0] if node.inputs else None
    return first is not None and first.dtype == ir.DataType.FLOAT


def dynamic_ok(node: ir.Node) -> bool:
    """MatMul/Gemm whose weight is a constant matrix, in a form MatMulInteger can express."""
    weight = weight_of(node)
    if weight is None or weight.shape is None or len(weight.shape) != 2:
        return False
    if node.op_type == "MatMul":
        return True
    if node.op_type != "Gemm":
        return False
    attrs = node.attributes
    return (
        attrs.get_int("transA", 0) == 0
        and attrs.get_float("alpha", 1.0) == 1.0
        and attrs.get_float("beta", 1.0) == 1.0
    )


def embedding_ok(node: ir.Node) -> bool:
    """A Gather along axis 0 from a constant float32 table of rows (an embedding lookup)."""
    if node.op_type != "Gather" or len(node.inputs) < 2 or node.inputs[0] is None:
        return False
    table = node.inputs[0]
    return (
        table.const_value is not None
        and table.dtype == ir.DataType.FLOAT
        and table.shape is not None
        and len(table.shape) == 2
        and table.const_value.size >= _MIN_EMBEDDING
        and node.attributes.get_int("axis", 0) == 0
    )


def find_candidates(
    model: ir.Model, ops: Sequence[str] | None = None, exclude: Sequence[str] = ()
) -> list[Candidate]:
    """Main-graph nodes that can use int8, in graph order: compute ops, embedding Gathers.

    Args:
        ops: op types to consider (default: all of QUANTIZABLE_OPS).
        exclude: node names to keep in fp32.

    Raises:
        UsageError: an unknown op type or node name.
    """
    ops = list(QUANTIZABLE_OPS if ops is None else ops)
    unknown = [op for op in ops if op not in QUANTIZABLE_OPS]
    if unknown:
        raise UsageError(
            f"quantize: --ops {name_list(unknown)} cannot be quantized — choose from "
            f"{name_list(QUANTIZABLE_OPS)}"
        )
    names = {node.name for node in model.graph}
    missing = [n for n in exclude if n not in names]
    if missing:
        raise UsageError(
            f"quantize: --exclude names {name_list(missing)} that are not nodes of the main graph "
            "— see the node names with 'onnxsmith inspect' or Netron"
        )
    skip = set(exclude)
    found = []
    for node in model.graph:
        if node.domain not in ("", "ai.onnx") or node.op_type not in ops or node.name in skip:
            continue
        if not node.name or not _float_input(node):
            continue
        if node.op_type == "Gather":
            if embedding_ok(node):
                found.append(Candidate(node.name, "Gather", "Gather (embedding)", (WEIGHT_ONLY,)))
            continue
        weighted = weight_of(node) is not None
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and not weighted:
            continue
        group = node.op_type if weighted else f"{node.op_type} (two activations)"
        modes = (STATIC, DYNAMIC) if dynamic_ok(node) else (STATIC,)
        found.append(Candidate(node.name, node.op_type, group, modes))
    return found


def companion_nodes(
    model: ir.Model, static_nodes: Sequence[str], companions: str = "all"
) -> list[str]:
    """Companion ops (COMPANION_OPS) fed only by statically quantized nodes or constants.

    Walks the graph in order, so a chain Conv → Relu → MaxPool → Conv stays int8 end to end.
    Elementwise Add/Mul with constants count too (HardSwish = x·clip(x+3)/6): measured on PP-OCR
    det (an earlier run, another CPU), leaving them in float made static Conv no faster (0.98x
    vs 0.84x); on a VNNI CPU the opposite held (ARITHMETIC_OPS), so with
    `companions="structural"` Add and Mul stay float and the search scores both placements.
    """
    allowed = COMPANION_OPS if companions == "all" else COMPANION_OPS - ARITHMETIC_OPS
    int8_values: set[ir.Value] = set()
    chosen = set(static_nodes)
    found = []
    for node in model.graph:
        if node.name in chosen:
            int8_values.update(node.outputs)
            continue
        if node.op_type not in allowed or node.domain not in ("", "ai.onnx"):
            continue
        floats = [v for v in node.inputs if v is not None and v.dtype == ir.DataType.FLOAT]
        activations = [v for v in floats if v.const_value is None]
        if activations and all(v in int8_values for v in activations) and node.name:
            found.append(node.name)
            int8_values.update(node.outputs)
    return found
