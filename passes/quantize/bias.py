"""Bias correction: static int8 weights shift each output channel's mean; the bias takes it back.

Rounding a weight to its int8 grid adds an error ΔW whose effect on the output channel's mean is
ΔW · E[x] (Nagel et al., "Data-Free Quantization", 2019, the empirical variant): with the mean
input per channel measured on the calibration data (`ChannelMeans`, from `runtime.calibrate`),
subtracting it from the bias removes the systematic part of the weight error. The rounded weights
are written into the float model, so the correction matches the integers ORT will use exactly
(ORT quantizes a weight already on its grid to the same integers), and a second run finds
nothing left to correct.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxsmith.passes.quantize.names import NameScope, set_constant_input
from onnxsmith.passes.quantize.plan import activation_name, nodes_named, weight_of
from onnxsmith.passes.quantize.weights import GridWeightsPass

from onnxsmith.calibration import ChannelMeans
from onnxsmith.errors import PassError, name_list
from onnxsmith.pipeline import StatsResult

CORRECTABLE_OPS = ("Conv", "Gemm")


def input_channel_axis(node: ir.Node) -> int:
    """The axis of a Conv/Gemm activation input whose per-channel mean bias correction needs."""
    if node.op_type == "Conv":
        return 1
    return 0 if node.attributes.get_int("transA", 0) else -1


class CorrectBiasPass(GridWeightsPass):
    """Rounds the weights of `nodes` (Conv, Gemm) to their static int8 grid and corrects their
    biases by the expected output error, ΔW · E[x] (a bias is added where there is none)."""

    def __init__(self, means: ChannelMeans, nodes: Sequence[str], **grid: bool) -> None:
        super().__init__(nodes, **grid)
        self.means = means

    def call(self, model: ir.Model) -> StatsResult:
        targets = self._validated(model)
        names = NameScope(model)
        corrected, largest = 0, 0.0
        for node in targets:
            weight = weight_of(node)
            assert weight is not None  # checked in _validated
            original = constant(weight)
            rounded = self.grid(original, node)
            if np.array_equal(rounded, original):
                continue
            shift = self._output_shift(node, rounded - original)
            set_constant_input(model, names, node, 1, rounded, f"{weight.name}_rounded")
            set_constant_input(model, names, node, 2, self._bias(node, shift), f"{node.name}_bias")
            corrected += 1
            largest = max(largest, float(np.abs(shift).max(initial=0.0)))
        stats = {"corrected": corrected, "largest_shift": largest}
        return StatsResult(model, modified=bool(corrected), stats=stats)

    def _validated(self, model: ir.Model) -> list[ir.Node]:
        targets = nodes_named(model, self.nodes, "bias correction")
        unfit = [node.name or "" for node in targets if not correctable(node)]
        if unfit:
            raise PassError(
                f"bias correction: {name_list(unfit)} are not Conv/Gemm nodes with a constant "
                "float weight and a constant bias of one value per output channel (Gemm: beta "
                "!= 0) — leave them out"
            )
        bad = [node.name or "" for node in targets if not self._means_fit(node)]
        if bad:
            raise PassError(
                f"bias correction: no channel means (or means of the wrong length) for the inputs "
                f"of {name_list(bad)} — measure them with runtime.calibrate.channel_means"
            )
        return targets

    def _means_fit(self, node: ir.Node) -> bool:
        mean = self.means.means.get(activation_name(node))
        weight = weight_of(node)
        if mean is None or weight is None:
            return False
        shape = constant(weight).shape
        if node.op_type == "Conv":
            return bool(mean.size == shape[1] * node.attributes.get_int("group", 1))
        transposed = node.attributes.get_int("transB", 0)
        return bool(mean.size == shape[1 if transposed else 0])

    def _output_shift(self, node: ir.Node, delta: np.ndarray) -> np.ndarray:
        """E[Δy] per output channel: ΔW · E[x]."""
        mean = self.means.means[activation_name(node)]
        if node.op_type == "Conv":
            groups = node.attributes.get_int("group", 1)
            out_channels, per_group = delta.shape[:2]
            summed = delta.reshape(out_channels, per_group, -1).sum(axis=2)
            by_group = summed.reshape(groups, out_channels // groups, per_group)
            return np.einsum("goc,gc->go", by_group, mean.reshape(groups, per_group)).reshape(-1)
        matrix = delta.T if node.attributes.get_int("transB", 0) else delta
        return node.attributes.get_float("alpha", 1.0) * (mean @ matrix)

    @staticmethod
    def _bias(node: ir.Node, shift: np.ndarray) -> np.ndarray:
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        scale = 1.0 if node.op_type == "Conv" else node.attributes.get_float("beta", 1.0)
        current = np.zeros(shift.size) if bias is None else constant(bias)
        return (current - shift / scale).astype(np.float32)


def correctable(node: ir.Node) -> bool:
    """A Conv/Gemm with a constant float weight and a bias this pass can rewrite."""
    weight = weight_of(node)
    if node.op_type not in CORRECTABLE_OPS or weight is None:
        return False
    if node.op_type == "Gemm" and node.attributes.get_float("beta", 1.0) == 0.0:
        return False
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is None:
        return True
    transposed = node.op_type == "Conv" or bool(node.attributes.get_int("transB", 0))
    outputs = constant(weight).shape[0 if transposed else 1]
    return (
        bias.const_value is not None
        and bias.dtype == ir.DataType.FLOAT
        and bias.const_value.size == outputs
    )


def constant(value: ir.Value) -> np.ndarray:
    """The array of a value known to be constant (a weight `weight_of` returned, a bias)."""
    if value.const_value is None:
        raise PassError(f"quantize: {value.name!r} is not a constant")
    return value.const_value.numpy()
