"""An ONNX graph as a trainable `torch.nn.Module`, and its trained weights back into the graph.

`OnnxModule` runs the graph node by node with the torch functions of `onnx_ops`; the float
initializers that weigh a layer (Conv/ConvTranspose/Gemm/MatMul weights and biases, BN scale and
bias, constant operands of Add/Sub/Mul/PRelu with more than one element) become parameters,
starting from the file's values; everything else (shapes, scales, BN statistics) stays fixed.
`write_back` puts the trained values into a copy of the graph, which keeps its structure, so
what was timed before training is what runs after it.

Conversion is checked, not trusted: `check_conversion` compares the module with ONNX Runtime on
real feeds and, when they disagree, names the first nodes whose outputs differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from onnxsmith.exporter.onnx_ops import SUPPORTED, op_function
from onnxsmith.runtime.session import create_session, run

from onnxsmith.errors import ExportError, name_list
from onnxsmith.signature import fixed_batch, input_specs

# (op, input position) pairs whose float constant is a learned weight; -1: any position.
TRAINABLE_USES = {
    ("Conv", 1), ("Conv", 2), ("ConvTranspose", 1), ("ConvTranspose", 2),
    ("Gemm", 0), ("Gemm", 1), ("Gemm", 2), ("MatMul", 0), ("MatMul", 1),
    ("BatchNormalization", 1), ("BatchNormalization", 2),
    ("Add", -1), ("Sub", -1), ("Mul", -1), ("PRelu", 1),
}  # fmt: skip
# Parity of the converted module with ORT: float32 kernels differ in summation order, which
# across ~60 layers stays within 1e-3 relative to the output's scale on the models we prune.
ATOL, RTOL = 1e-3, 1e-3


class OnnxModule(torch.nn.Module):
    """Runs an ONNX graph in torch; its layer weights are trainable parameters.

    Args:
        model: the graph (not modified); every node must be an op of `onnx_ops.SUPPORTED`.
        label: the model's name in error messages (e.g. its file).

    Raises:
        ExportError: the graph uses unsupported ops or subgraphs.
    """

    def __init__(self, model: ir.Model, label: str) -> None:
        super().__init__()
        graph = model.graph
        self.label = label
        self.opset = model.opset_imports.get("", 13)
        unsupported = sorted(
            {n.op_type for n in graph if n.domain not in ("", "ai.onnx")}
            | {n.op_type for n in graph if n.op_type not in SUPPORTED}
        )
        if unsupported:
            raise ExportError(
                f"{label}: ops {name_list(unsupported)} cannot be trained in torch yet — "
                f"{len(SUPPORTED)} ops can (convolutions, pooling, Resize, Gemm/MatMul, "
                "activations, elementwise and shape ops; see onnxsmith.exporter.onnx_ops)"
            )
        trainable = _trainable_names(graph)
        self.names = sorted(trainable)
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.from_numpy(_array(graph.initializers[n]).copy()))
            for n in self.names
        )
        self.constants: dict[str, torch.Tensor] = {
            name: torch.from_numpy(_array(value).copy())
            for name, value in graph.initializers.items()
            if name not in trainable
        }
        self.input_names = [v.name or "" for v in graph.inputs if v.name not in graph.initializers]
        self.output_names = [v.name or "" for v in graph.outputs]
        # A graph that fixes its batch size usually bakes it into its reshapes too (ddddocr's
        # detector): it then runs only batches of that size, here as in ONNX Runtime.
        self.fixed_batch = fixed_batch(input_specs(model))
        self.returned = list(self.output_names)  # what forward returns
        self.nodes = [
            (
                n.op_type,
                [None if v is None else v.name for v in n.inputs],
                [v.name or "" for v in n.outputs],
                {k: _attribute(a) for k, a in n.attributes.items()},
            )
            for n in graph
        ]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = self.run(inputs)
        return tuple(values[name] for name in self.returned)

    def run(self, inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every value of the graph for `inputs` (given in the graph's input order)."""
        values: dict[str, torch.Tensor] = dict(self.constants)
        values.update(zip(self.names, self.weights, strict=True))
        values.update(zip(self.input_names, inputs, strict=True))
        for op_type, inputs_, outputs, attrs in self.nodes:
            if op_type == "Constant":
                values[outputs[0]] = attrs["value"]
                continue
            fn = op_function(op_type, self.opset, len(outputs))
            assert fn is not None  # checked in __init__
            args = [None if n is None or n == "" else values[n] for n in inputs_]
            for name, result in zip(outputs, fn(args, attrs), strict=False):
                values[name] = result
        return values


def _array(value: ir.Value) -> np.ndarray:
    assert value.const_value is not None
    return np.asarray(value.const_value.numpy())


def _attribute(attr: ir.Attr) -> Any:
    value = attr.value
    if isinstance(value, ir.TensorProtocol):
        return torch.from_numpy(np.array(value.numpy()))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return value


def _trainable_names(graph: ir.Graph) -> set[str]:
    names = set()
    for name, value in graph.initializers.items():
        tensor = value.const_value
        if tensor is None or tensor.dtype != ir.DataType.FLOAT or tensor.size <= 1:
            continue
        uses = list(value.uses())
        if uses and all(
            (u.node.op_type, u.idx) in TRAINABLE_USES or (u.node.op_type, -1) in TRAINABLE_USES
            for u in uses
        ):
            names.add(name)
    return names


def write_back(model: ir.Model, module: OnnxModule) -> ir.Model:
    """A copy of `model` with the module's trained parameters as its initializers."""
    copy = ir.from_proto(ir.to_proto(model))
    copy.meta.update(model.meta)
    for name, weight in zip(module.names, module.weights, strict=True):
        value = copy.graph.initializers[name]
        value.const_value = ir.tensor(weight.detach().numpy().copy(), name=name)
    return copy


def check_conversion(
    model: ir.Model,
    module: OnnxModule,
    feeds: Sequence[Mapping[str, np.ndarray]],
    *,
    what: str = "the converted module",
) -> float:
    """Largest |torch − ORT| relative to the output's scale, over `feeds` and all outputs.

    Raises:
        ExportError: over `ATOL`/`RTOL`; the message names the first disagreeing ops.
    """
    session = create_session(model)
    worst = 0.0
    module.eval()
    for feed in feeds:
        expected = run(session, dict(feed), module.label)
        with torch.no_grad():
            got = module.run(_tensors(feed, module.input_names))
        for name, want in zip(module.output_names, expected, strict=True):
            error = _error(want, got[name].numpy())
            worst = max(worst, error)
            if error > 1.0:
                culprits = _first_disagreements(model, module, feed)
                raise ExportError(
                    f"{module.label}: {what} differs from ONNX Runtime on output {name!r} by "
                    f"{error:.3g}x the tolerance — first disagreeing ops: {culprits}; report it "
                    "with the model"
                )
    return worst


def _tensors(feed: Mapping[str, np.ndarray], names: Sequence[str]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.asarray(feed[n])) for n in names]


def _error(want: np.ndarray, have: np.ndarray) -> float:
    """max |a − b| / (ATOL + RTOL·max|a|): over 1 fails."""
    if want.shape != have.shape:
        return np.inf
    if want.size == 0:
        return 0.0
    a, b = want.astype(np.float64), have.astype(np.float64)
    return float(np.max(np.abs(a - b)) / (ATOL + RTOL * np.max(np.abs(a))))


def _first_disagreements(
    model: ir.Model, module: OnnxModule, feed: Mapping[str, np.ndarray]
) -> str:
    """Nodes whose float outputs differ although their inputs agree (at most five)."""
    probe = ir.from_proto(ir.to_proto(model))
    outputs = {v.name for v in probe.graph.outputs}
    for node in probe.graph:
        for value in node.outputs:
            if value.name not in outputs:
                probe.graph.outputs.append(value)
                outputs.add(value.name)
    names = [v.name or "" for v in probe.graph.outputs]
    session = create_session(probe)
    ort_values = dict(zip(names, run(session, dict(feed), module.label), strict=True))
    with torch.no_grad():
        torch_values = module.run(
            [torch.from_numpy(np.asarray(feed[n])) for n in module.input_names]
        )
    bad = set()
    found = []
    for op_type, inputs, node_outputs, _ in module.nodes:
        inputs_bad = any(i in bad for i in inputs if i)
        for name in node_outputs:
            want, have = ort_values.get(name), torch_values.get(name)
            if want is None or have is None or not np.issubdtype(want.dtype, np.floating):
                continue
            if _error(want, have.numpy()) > 1.0:
                bad.add(name)
                if not inputs_bad:
                    found.append(f"{op_type} → {name}")
    return name_list(found) or "none found per node (the difference builds up)"
