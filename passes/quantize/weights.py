"""Symmetric int8 weight quantization in numpy (the dynamic int8 pass uses it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir


def quantize_weight(
    w: np.ndarray, axis: int | None, bits: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Int8 values and float32 scales of `w`, per slice along `axis` (None: one scale).

    Symmetric, zero point 0, values in [-(2^(bits-1) - 1), 2^(bits-1) - 1]: 7 bits keep ORT's
    u8·s8 kernels from saturating on x86 CPUs without VNNI (see `runtime.cpu`). A slice that is
    all zeros gets scale 1 (any positive scale represents it exactly).
    """
    qmax = 2 ** (bits - 1) - 1
    w = np.asarray(w, dtype=np.float32)
    if axis is None:
        absmax = np.abs(w).max(keepdims=False) if w.size else np.float32(0)
        scale = np.asarray(absmax / qmax, np.float32)
        scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
        q = np.clip(np.rint(w / scale), -qmax, qmax).astype(np.int8)
        return q, scale
    reduce = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    absmax = np.abs(w).max(axis=reduce)
    scale = np.where(absmax > 0, absmax / qmax, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis % w.ndim] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


def drop_unused(graph: ir.Graph, weights: Iterable[ir.Value]) -> int:
    """Removes the float originals that no node reads any more; returns how many went."""
    dropped = 0
    for value in weights:
        name = value.name or ""
        if name in graph.initializers and not value.uses() and value not in graph.outputs:
            del graph.initializers[name]
            dropped += 1
    return dropped


def weight_axis(node: ir.Node) -> int:
    """The axis ORT's static quantizer takes per-channel scales along for `node`'s weight."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if node.attributes.get_int("transB", 0) else 1
    return 1  # ConvTranspose (Cin, Cout/group, ...) and MatMul (K, N): the output channels


def static_grid(w: np.ndarray, axis: int | None, *, reduce_range: bool = False) -> np.ndarray:
    """`w` rounded to the int8 grid ORT's static quantizer uses, as float32.

    Symmetric, zero point 0, scale absmax/127 (absmax/64 with `reduce_range`) per slice along
    `axis` (None: per tensor) — ORT's `get_qmin_qmax_for_qType`. A weight already on its grid
    maps to itself, and ORT quantizes it back to the same integers: passes that choose the
    rounding (bias correction) write it into the float model and ORT keeps it.
    """
    qmax = 64.0 if reduce_range else 127.0
    w = np.asarray(w, dtype=np.float32)
    if axis is None:
        absmax = np.abs(w).max(keepdims=True) if w.size else np.ones((1,) * w.ndim, np.float32)
    else:
        reduce = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
        absmax = np.abs(w).max(axis=reduce, keepdims=True)
    scale = np.where(absmax > 0, absmax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -qmax, qmax)
    return (q * scale).astype(np.float32)


class GridWeightsPass(ir.passes.InPlacePass):
    """What the passes that write weights on ORT's static int8 grid share: the nodes, and the
    grid (per output channel or per tensor; 8 bits, or 7 with `reduce_range`)."""

    def __init__(
        self, nodes: Sequence[str], *, per_channel: bool = True, reduce_range: bool = False
    ) -> None:
        super().__init__()
        self.nodes = list(nodes)
        self.per_channel = per_channel
        self.reduce_range = reduce_range

    def axis(self, node: ir.Node) -> int | None:
        """The axis of `node`'s weight scales (None: one scale)."""
        return weight_axis(node) if self.per_channel else None

    def grid(self, weight: np.ndarray, node: ir.Node) -> np.ndarray:
        """`weight` rounded to its nearest point of the grid."""
        return static_grid(weight, self.axis(node), reduce_range=self.reduce_range)
