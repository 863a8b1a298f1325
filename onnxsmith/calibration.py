"""Calibration measurements the quantize passes consume: ranges (`CalibrationTable`, for Q/DQ)
and per-channel means (`ChannelMeans`, for bias correction); `runtime.calibrate` measures both.

It lives in the core so that `passes/` (which never runs ONNX Runtime) and `runtime/` (which
measures) share one type without importing each other.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class CalibrationTable:
    """Per-tensor (low, high) real ranges, always containing 0; what the QDQ pass consumes."""

    method: str
    ranges: Mapping[str, tuple[float, float]]
    feeds: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", types.MappingProxyType(dict(self.ranges)))


@dataclasses.dataclass(frozen=True)
class ChannelMeans:
    """Mean of each tensor per channel over the calibration feeds; bias correction consumes it.

    `means[tensor]` has one entry per index of the tensor's channel axis (axis 1 for an NCHW
    activation, the last axis for a MatMul/Gemm input).
    """

    means: Mapping[str, np.ndarray]
    feeds: int

    def __post_init__(self) -> None:
        frozen = {name: np.array(m, np.float64) for name, m in self.means.items()}
        for array in frozen.values():
            array.setflags(write=False)
        object.__setattr__(self, "means", types.MappingProxyType(frozen))


@dataclasses.dataclass(frozen=True)
class InputStats:
    """Second moments of each weighted node's input, measured on calibration data.

    Attributes:
        grams: node name -> E[x̃ x̃ᵀ] (float64, size D+1; the last index is the constant 1),
            where x̃ are the node's input rows as `linear.input_rows` builds them. Missing for
            nodes whose input is too wide to keep a full matrix.
        means_sq: node name -> E[x²] per input (size D); always present.
        rows: node name -> how many rows were averaged.
        feeds: how many calibration feeds were run.
        cross: node name -> E[x̃ x̃'ᵀ] between the original model's input rows x̃ and the
            pruned model's x̃' (already narrower) at the same node, for sequential refits.
        pruned_grams: node name -> E[x̃' x̃'ᵀ] of the pruned model's input rows.
    """

    grams: Mapping[str, np.ndarray]
    means_sq: Mapping[str, np.ndarray]
    rows: Mapping[str, int]
    feeds: int
    cross: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    pruned_grams: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class WeightHessians:
    """Per weighted node, E[x xᵀ] of its input rows per group, for choosing weight rounding.

    Attributes:
        hessians: node name -> float64 array (groups, d, d), d = the inputs one output channel
            reads (Cin/group·kh·kw for a Conv, K for Gemm/MatMul), ordered as the weight's
            channel-major flattening; for a grouped Conv, group g's inputs only.
        rows: node name -> how many input rows were averaged.
    """

    hessians: Mapping[str, np.ndarray]
    rows: Mapping[str, int]
