"""SmoothQuant on the ONNX graph: move activation outliers into the weights of MatMul/Gemm.

For an activation X feeding weight matrices W_i (shape K×N), per input channel k:
s_k = max|X_k|^α / max_i max_n |W_i[k, n]|^(1-α); then X' = X / s and W_i' = diag(s) · W_i, so
X' · W_i' = X · W_i exactly in real arithmetic while X' has no outlier channels left for int8 to
clip or smear. The division is folded into a producing LayerNormalization's scale and bias when
X feeds nothing else; otherwise a Mul by 1/s is inserted (one cheap elementwise op).
(Xiao et al., 2023. ORT's `SmoothQuant` option needs Intel Neural Compressor and works only for
`quantize_static`; NNCF applies it for `model_type=TRANSFORMER`. Here it serves dynamic int8 too,
and alpha is chosen by the metric.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir
from onnxsmith.passes.quantize.names import NameScope
from onnxsmith.passes.quantize.plan import dynamic_ok

from onnxsmith.errors import PassError, name_list
from onnxsmith.pipeline import StatsResult

_LIMITS = (1e-5, 1e5)


class SmoothQuantPass(ir.passes.InPlacePass):
    """Smooths the activations of the named MatMul/Gemm nodes with strength `alpha`.

    Args:
        channel_absmax: max |x| per last-axis channel of each node's activation input, by tensor
            name (from `runtime.calibrate.collect_statistics(channel_tensors=...)`).
        alpha: 0 leaves activations alone, 1 moves all of their range into the weights.
        nodes: MatMul/Gemm nodes with constant 2-D weights.
    """

    def __init__(
        self, channel_absmax: Mapping[str, np.ndarray], alpha: float, nodes: Sequence[str]
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise PassError(f"smoothquant: alpha {alpha} is outside [0, 1] — pass e.g. 0.5")
        self.channel_absmax = channel_absmax
        self.alpha = alpha
        self.nodes = list(nodes)

    def call(self, model: ir.Model) -> StatsResult:
        graph = model.graph
        groups = smoothing_groups(model, self.channel_absmax, self.nodes)
        names = NameScope(model)
        folded = inserted = 0
        for x, consumers in groups.items():
            scale = _scale(self.channel_absmax[x.name or ""], consumers, self.alpha)
            for node in consumers:
                _scale_weight(graph, names, node, scale)
            if _fold_into_layernorm(graph, names, x, consumers, scale):
                folded += 1
            else:
                _insert_division(graph, names, x, consumers, scale)
                inserted += 1
        stats = {"smoothed": sum(len(c) for c in groups.values()), "alpha": self.alpha}
        stats |= {"folded_into_layernorm": folded, "mul_inserted": inserted}
        return StatsResult(model, modified=bool(groups), stats=stats)


def smoothing_groups(
    model: ir.Model, channel_absmax: Mapping[str, np.ndarray], nodes: Sequence[str]
) -> dict[ir.Value, list[ir.Node]]:
    """The named nodes grouped by the activation they read (one scale vector per activation).

    Raises:
        PassError: a node is not a MatMul/Gemm with a constant 2-D weight, or its activation
            has no per-channel statistics of the right size.
    """
    wanted = set(nodes)
    targets = [node for node in model.graph if node.name in wanted]
    missing = sorted(wanted - {n.name or "" for n in targets})
    unfit = [n.name or "" for n in targets if not dynamic_ok(n)]
    if missing or unfit:
        raise PassError(
            f"smoothquant: {name_list(missing + unfit)} are not MatMul/Gemm nodes with a "
            "constant 2-D weight in the main graph"
        )
    groups: dict[ir.Value, list[ir.Node]] = {}
    for node in targets:
        x = node.inputs[0]
        assert x is not None
        absmax = channel_absmax.get(x.name or "")
        k = _weight_matrix(node).shape[0]
        if absmax is None or absmax.shape != (k,):
            raise PassError(
                f"smoothquant: no per-channel statistics of size {k} for {x.name!r} (input "
                f"of {node.name!r}) — calibrate it with channel statistics first"
            )
        groups.setdefault(x, []).append(node)
    return groups


def smoothing_scales(
    model: ir.Model, channel_absmax: Mapping[str, np.ndarray], alpha: float, nodes: Sequence[str]
) -> dict[str, np.ndarray]:
    """The per-channel divisor s of each smoothed activation, by the activation's name."""
    groups = smoothing_groups(model, channel_absmax, nodes)
    return {
        x.name or "": _scale(channel_absmax[x.name or ""], consumers, alpha)
        for x, consumers in groups.items()
    }


def _scale(absmax: np.ndarray, consumers: list[ir.Node], alpha: float) -> np.ndarray:
    act = absmax.astype(np.float64)
    weight = np.max([np.abs(_weight_matrix(n)).max(axis=1) for n in consumers], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = act**alpha / weight ** (1.0 - alpha)
    scale = np.where(np.isfinite(scale) & (act > 0) & (weight > 0), scale, 1.0)
    return np.clip(scale, *_LIMITS).astype(np.float32)


def _scale_weight(graph: ir.Graph, names: NameScope, node: ir.Node, scale: np.ndarray) -> None:
    weight = node.inputs[1]
    assert weight is not None and weight.const_value is not None
    array = weight.const_value.numpy().astype(np.float32)
    transposed = node.op_type == "Gemm" and node.attributes.get_int("transB", 0) == 1
    smoothed = array * (scale[None, :] if transposed else scale[:, None])
    node.replace_input_with(1, names.initializer(graph, f"{weight.name}_smoothed", smoothed))


def _fold_into_layernorm(
    graph: ir.Graph, names: NameScope, x: ir.Value, consumers: list[ir.Node], scale: np.ndarray
) -> bool:
    """Divides a producing LayerNormalization's scale and bias by s, if X feeds only `consumers`."""
    producer = x.producer()
    if producer is None or producer.op_type != "LayerNormalization" or producer.domain:
        return False
    if len(producer.outputs) > 1 and any(v.uses() for v in producer.outputs[1:]):
        return False
    if {use.node for use in x.uses()} != set(consumers) or x in graph.outputs:
        return False
    params = [v for v in producer.inputs[1:3] if v is not None]
    if any(v.const_value is None or v.const_value.shape != scale.shape for v in params):
        return False
    if producer.attributes.get_int("axis", -1) not in (-1, len(x.shape or ()) - 1):
        return False
    for index, value in enumerate(producer.inputs[1:3], start=1):
        if value is None or value.const_value is None:
            continue
        divided = value.const_value.numpy().astype(np.float32) / scale
        smoothed = names.initializer(graph, f"{value.name}_smoothed", divided)
        producer.replace_input_with(index, smoothed)
    return True


def _insert_division(
    graph: ir.Graph, names: NameScope, x: ir.Value, consumers: list[ir.Node], scale: np.ndarray
) -> None:
    inverse = names.initializer(graph, f"{x.name}_smooth_inverse", 1.0 / scale)
    mul = ir.node("Mul", [x, inverse], name=names.node(f"{x.name}_smooth"))
    mul.outputs[0].name = names.value(f"{x.name}_smoothed")
    mul.outputs[0].dtype = ir.DataType.FLOAT
    mul.outputs[0].shape = x.shape
    graph.insert_before(consumers[0], mul)
    for node in consumers:
        node.replace_input_with(0, mul.outputs[0])


def _weight_matrix(node: ir.Node) -> np.ndarray:
    """The K×N weight of a MatMul/Gemm (Gemm with transB is transposed back)."""
    weight = node.inputs[1]
    assert weight is not None and weight.const_value is not None
    array = weight.const_value.numpy()
    if node.op_type == "Gemm" and node.attributes.get_int("transB", 0) == 1:
        return array.T
    return array
