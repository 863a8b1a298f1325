"""Which kernels ORT really runs: did it fuse Q/DQ into integer ops, or dequantize to float?"""

from __future__ import annotations

import collections
import dataclasses
import tempfile
import types
from collections.abc import Mapping
from pathlib import Path

import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnxsmith.runtime.session import create_session

from onnxsmith.summary import QUANTIZED_OPS

# Integer kernels ORT picks for quantized patterns (QDQ fusion, dynamic MatMul fusion): the ops
# `inspect` counts as quantized, less the conversions, plus two that only ORT's optimizer emits.
_CONVERSIONS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
INTEGER_OPS = (QUANTIZED_OPS - _CONVERSIONS) | {"QLinearConvTranspose", "NhwcQLinearConv"}
FLOAT_COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "FusedConv", "FusedGemm"})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclasses.dataclass(frozen=True)
class KernelReport:
    """Op counts of the graph ORT executes after its own optimizations."""

    integer_ops: Mapping[str, int]
    float_compute_ops: Mapping[str, int]
    qdq_nodes: int  # Q/DQ left as separate nodes: each one converts a whole tensor per run

    def __post_init__(self) -> None:
        object.__setattr__(self, "integer_ops", types.MappingProxyType(dict(self.integer_ops)))
        object.__setattr__(
            self, "float_compute_ops", types.MappingProxyType(dict(self.float_compute_ops))
        )

    @property
    def integer_kernels(self) -> int:
        return sum(self.integer_ops.values())

    def describe(self) -> str:
        ints = ", ".join(f"{op}×{n}" for op, n in sorted(self.integer_ops.items())) or "none"
        floats = ", ".join(f"{op}×{n}" for op, n in sorted(self.float_compute_ops.items()))
        floats = floats or "none"
        return f"integer kernels: {ints}; float compute: {floats}; Q/DQ left: {self.qdq_nodes}"


def runtime_kernels(
    model: ir.Model, *, threads: int | None = None
) -> tuple[KernelReport, ort.InferenceSession]:
    """Counts the ops in the graph ORT optimizes `model` into (level "all", CPU).

    Returns the report and the session (ready to time: it is the graph that was counted).
    """
    with tempfile.TemporaryDirectory(prefix="onnxsmith-kernels-") as folder:
        path = Path(folder) / "optimized.onnx"
        session = create_session(model, threads=threads, optimized_model_path=path)
        proto = onnx.load_model(str(path), load_external_data=False)
    counts = collections.Counter(node.op_type for node in proto.graph.node)
    report = KernelReport(
        integer_ops={op: n for op, n in counts.items() if op in INTEGER_OPS},
        float_compute_ops={op: n for op, n in counts.items() if op in FLOAT_COMPUTE_OPS},
        qdq_nodes=sum(n for op, n in counts.items() if op in QDQ_OPS),
    )
    return report, session
