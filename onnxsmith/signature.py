"""A model's inputs and outputs as plain specs that data loading and reports can check against."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import onnx_ir as ir

Dim = int | str | None  # fixed size, symbolic name, or unknown


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype and shape (None when the rank is unknown) of a graph input or output."""

    name: str
    dtype: np.dtype | None
    shape: tuple[Dim, ...] | None

    def describe(self) -> str:
        dims = (
            "?"
            if self.shape is None
            else "x".join(str(d) if d is not None else "?" for d in self.shape)
        )
        return f"{self.name}: {self.dtype or '?'}[{dims}]"


def _spec(value: ir.Value) -> TensorSpec:
    dtype = None
    if value.dtype is not None:
        try:
            dtype = np.dtype(value.dtype.numpy())
        except (TypeError, ValueError):
            dtype = None
    shape = None
    if value.shape is not None:
        # Some exporters (PaddlePaddle) write -1 for a dynamic dim; treat it as unknown.
        shape = tuple(
            (d if d >= 0 else None) if isinstance(d, int) else d.value for d in value.shape
        )
    return TensorSpec(name=value.name or "", dtype=dtype, shape=shape)


class Shaped(Protocol):
    """Anything with a shape: a `TensorSpec`, an ONNX Runtime session's input."""

    @property
    def shape(self) -> Sequence[Dim] | None: ...


def fixed_batch(specs: Iterable[Shaped]) -> int | None:
    """The leading dim of the first spec that fixes it (None: every spec takes any batch)."""
    return next((s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int)), None)


def input_specs(model: ir.Model) -> list[TensorSpec]:
    """The inputs a caller must feed (initializers listed as inputs are not among them)."""
    return [_spec(v) for v in model.graph.inputs if not v.is_initializer()]


def output_specs(model: ir.Model) -> list[TensorSpec]:
    """The graph outputs."""
    return [_spec(v) for v in model.graph.outputs]
