"""Weight rounding chosen on calibration data: error feedback through each layer's inputs.

ORT's static quantizer rounds every weight to its nearest int8 step, which minimizes the error of
each weight, not of the layer's output, E‖(W − Ŵ)x‖². Given the second moments of the layer's
input rows, H = E[x xᵀ] (`WeightHessians`, measured by `runtime.input_stats`), the columns of W
are rounded one at a time and each rounding error is moved onto the columns not rounded yet
through H⁻¹ (GPTQ: Frantar et al., 2022 — the objective AdaRound minimizes by gradient descent,
Nagel et al., 2020, solved here in closed form, layer by layer, in numpy). The result is written
on ORT's int8 grid into the float model, so ORT's quantizer keeps exactly these integers: each
channel's largest weight stays at ±qmax, so ORT computes the same scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnxsmith.passes.quantize.names import NameScope, set_constant_input
from onnxsmith.passes.quantize.plan import nodes_named, weight_of
from onnxsmith.passes.quantize.weights import GridWeightsPass

from onnxsmith.calibration import WeightHessians
from onnxsmith.errors import PassError, name_list
from onnxsmith.pipeline import StatsResult

ROUNDABLE_OPS = ("Conv", "Gemm", "MatMul")
DAMPING = 0.01  # of the mean diagonal, added to H: keeps H⁻¹ finite where inputs are collinear
_BLOCK = 128  # columns rounded between two full updates (GPTQ's lazy batching)


def output_rows(node: ir.Node, weight: np.ndarray) -> np.ndarray:
    """The weight as (output channels, inputs read), inputs ordered as `input_rows` orders them."""
    if node.op_type == "Conv":
        return weight.reshape(weight.shape[0], -1)
    if node.op_type == "Gemm" and node.attributes.get_int("transB", False):
        return weight
    return weight.T


def _from_rows(node: ir.Node, rows: np.ndarray, like: np.ndarray) -> np.ndarray:
    if node.op_type == "Conv":
        return rows.reshape(like.shape)
    if node.op_type == "Gemm" and node.attributes.get_int("transB", False):
        return rows
    return np.ascontiguousarray(rows.T)


def round_rows(
    rows: np.ndarray, hessian: np.ndarray, scale: np.ndarray, qmax: float, pinned: np.ndarray
) -> np.ndarray:
    """Integer levels of `rows` (r, d) that keep E‖(W − Ŵ)x‖² small under `hessian` (d, d).

    `scale` (r,) is each row's step; `pinned` (r,) the column whose level must stay where
    nearest rounding puts it (the row's largest weight: ±qmax keeps ORT's scale), -1 for none.
    """
    w = rows.astype(np.float64).copy()
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0  # an input that is always zero: its weights matter to nobody
    h[np.diag_indices_from(h)] += DAMPING * np.mean(np.diag(h))
    upper = np.linalg.cholesky(np.linalg.inv(h)).T  # H⁻¹ = Uᵀ U
    pinned_level = np.clip(np.rint(w[np.arange(len(w)), pinned] / scale), -qmax, qmax)
    levels = np.zeros_like(w)
    step = scale.astype(np.float64)
    for first in range(0, w.shape[1], _BLOCK):
        last = min(first + _BLOCK, w.shape[1])
        block, errors = w[:, first:last].copy(), np.zeros((len(w), last - first))
        for i in range(last - first):
            level = np.clip(np.rint(block[:, i] / step), -qmax, qmax)
            held = pinned == first + i
            level[held] = pinned_level[held]
            levels[:, first + i] = level
            error = (block[:, i] - level * step) / upper[first + i, first + i]
            block[:, i:] -= np.outer(error, upper[first + i, first + i : last])
            errors[:, i] = error
        w[:, last:] -= errors @ upper[first:last, last:]
    return levels


class RoundWeightsPass(GridWeightsPass):
    """Writes the weights of `nodes` (Conv, Gemm, MatMul) on their static int8 grid, rounded to
    keep each layer's output error small on the calibration inputs (module docstring)."""

    def __init__(self, hessians: WeightHessians, nodes: Sequence[str], **grid: bool) -> None:
        super().__init__(nodes, **grid)
        self.hessians = hessians

    def call(self, model: ir.Model) -> StatsResult:
        targets = self._validated(model)
        names = NameScope(model)
        changed = 0
        for node in targets:
            weight = weight_of(node)
            assert weight is not None and weight.const_value is not None  # checked in _validated
            original = weight.const_value.numpy()
            chosen = self._rounded(node, original)
            if np.array_equal(chosen, self.grid(original, node)):
                continue
            set_constant_input(model, names, node, 1, chosen, f"{weight.name}_rounded")
            changed += 1
        return StatsResult(model, modified=bool(changed), stats={"rounded": changed})

    def _rounded(self, node: ir.Node, original: np.ndarray) -> np.ndarray:
        qmax = 64.0 if self.reduce_range else 127.0
        rows = output_rows(node, original.astype(np.float64))
        magnitude = np.abs(rows)
        if self.per_channel:
            absmax = magnitude.max(axis=1)
            pinned = magnitude.argmax(axis=1)
        else:
            absmax = np.full(len(rows), magnitude.max())
            pinned = np.full(len(rows), -1)
            flat = int(magnitude.argmax())
            pinned[flat // rows.shape[1]] = flat % rows.shape[1]
        scale = np.where(absmax > 0, absmax / qmax, 1.0).astype(np.float32).astype(np.float64)
        hessian = self.hessians.hessians[node.name or ""]
        groups = len(hessian)
        per_group = len(rows) // groups
        levels = np.zeros_like(rows)
        for g in range(groups):
            part = slice(g * per_group, (g + 1) * per_group)
            levels[part] = round_rows(rows[part], hessian[g], scale[part], qmax, pinned[part])
        chosen = _from_rows(node, (levels * scale[:, None]).astype(np.float32), original)
        # on ORT's grid by construction; snapping absorbs a float32 ulp in the scale
        return self.grid(chosen, node)

    def _validated(self, model: ir.Model) -> list[ir.Node]:
        targets = nodes_named(model, self.nodes, "weight rounding")
        unfit = [
            node.name or ""
            for node in targets
            if node.op_type not in ROUNDABLE_OPS or weight_of(node) is None or not self._fits(node)
        ]
        if unfit:
            raise PassError(
                f"weight rounding: {name_list(unfit)} are not Conv/Gemm/MatMul nodes with a "
                "constant float weight and a measured input Hessian of matching size — measure "
                "them with runtime.input_stats.collect_weight_hessians or leave them out"
            )
        return targets

    def _fits(self, node: ir.Node) -> bool:
        hessian = self.hessians.hessians.get(node.name or "")
        weight = weight_of(node)
        if hessian is None or weight is None or weight.const_value is None or hessian.ndim != 3:
            return False
        rows = output_rows(node, weight.const_value.numpy())
        groups, width = hessian.shape[0], hessian.shape[1]
        return bool(rows.ndim == 2 and len(rows) % groups == 0 and rows.shape[1] == width)
