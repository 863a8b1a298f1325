"""What `onnxsmith inspect` reports about a model, computed without running it."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.io import SOURCE_KEY
from onnxsmith.signature import input_specs, output_specs

QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "QLinearAdd",
        "QLinearMul",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "QLinearConcat",
        "QLinearSoftmax",
        "QAttention",
        "QGemm",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
    }
)


@dataclasses.dataclass(frozen=True)
class WeightStats:
    """Parameters grouped by where they live and by dtype."""

    params: int
    bytes: int
    by_dtype: dict[str, dict[str, int]]
    by_location: dict[str, int]
    zeros: int  # zero elements among float weights

    @property
    def sparsity(self) -> float:
        floats = sum(
            v["params"]
            for k, v in self.by_dtype.items()
            if k.startswith(("FLOAT", "DOUBLE", "BFLOAT"))
        )
        return self.zeros / floats if floats else 0.0


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """Everything `inspect` shows; `as_dict()` is its JSON form."""

    path: str | None
    file_bytes: int | None
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: list[str]
    outputs: list[str]
    op_histogram: dict[str, int]
    nodes: int
    subgraphs: int
    quantized_nodes: int
    weights: WeightStats
    metadata: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["weights"]["sparsity"] = round(self.weights.sparsity, 6)
        return data


def summarize(model: ir.Model) -> ModelSummary:
    """Summarizes `model`: interface, ops, weights (by dtype and location), sparsity, metadata."""
    histogram: collections.Counter[str] = collections.Counter()
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        histogram[key] += 1
    source = model.meta.get(SOURCE_KEY)
    file_bytes = _file_bytes(Path(source)) if source else None
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p)
    return ModelSummary(
        path=source,
        file_bytes=file_bytes,
        ir_version=model.ir_version,
        opsets=dict(sorted(model.opset_imports.items())),
        producer=producer,
        inputs=[s.describe() for s in input_specs(model)],
        outputs=[s.describe() for s in output_specs(model)],
        op_histogram=dict(histogram.most_common()),
        nodes=sum(histogram.values()),
        subgraphs=sum(1 for _ in model.graphs()) - 1,
        quantized_nodes=sum(n for op, n in histogram.items() if op.split(".")[-1] in QUANTIZED_OPS),
        weights=_weight_stats(model),
        metadata=dict(model.metadata_props),
    )


def _file_bytes(path: Path) -> int | None:
    if not path.is_file():
        return None
    data_files = {path.with_name(f"{path.name}.data")}
    return path.stat().st_size + sum(f.stat().st_size for f in data_files if f.is_file())


def _weight_tensors(model: ir.Model):
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                tensor = value.const_value
                where = "external" if isinstance(tensor, ir.ExternalTensor) else "initializers"
                yield where, tensor
        for node in graph:
            if node.op_type == "Constant":
                for attr in node.attributes.values():
                    if attr.type == ir.AttributeType.TENSOR:
                        yield "constant_nodes", attr.as_tensor()


def _weight_stats(model: ir.Model) -> WeightStats:
    by_dtype: dict[str, dict[str, int]] = {}
    by_location: dict[str, int] = {"initializers": 0, "constant_nodes": 0, "external": 0}
    params = nbytes = zeros = 0
    for where, tensor in _weight_tensors(model):
        size = tensor.size
        entry = by_dtype.setdefault(tensor.dtype.name, {"params": 0, "bytes": 0})
        entry["params"] += size
        entry["bytes"] += tensor.nbytes
        by_location[where] += tensor.nbytes
        params += size
        nbytes += tensor.nbytes
        if tensor.dtype.is_floating_point() and size:
            zeros += int(size - np.count_nonzero(tensor.numpy()))
    return WeightStats(
        params=params, bytes=nbytes, by_dtype=by_dtype, by_location=by_location, zeros=zeros
    )
