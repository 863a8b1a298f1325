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
