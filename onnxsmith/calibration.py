"""The calibration table: what `runtime.calibrate` measures and the QDQ pass consumes.

It lives in the core so that `passes/` (which never runs ONNX Runtime) and `runtime/` (which
measures) share one type without importing each other.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class CalibrationTable:
    """Per-tensor (low, high) real ranges, always containing 0; what the QDQ pass consumes."""

    method: str
    ranges: Mapping[str, tuple[float, float]]
    feeds: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", types.MappingProxyType(dict(self.ranges)))
