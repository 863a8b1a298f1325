"""How the weighted ops (Conv, ConvTranspose, Gemm, MatMul) contract their input with a weight.

Pruning and compensation both need the same facts about such a node: which weight axis holds
output channels, which holds input channels, where the bias lives, and how to turn the input
activation into rows whose dot product with the flattened weight gives the output
(im2col for convolutions). They live here once.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

PRUNABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
DEFAULT_DOMAINS = ("", "ai.onnx")


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The array of an initializer a caller cannot override or of a Constant node, else None."""
    if value is None or value.is_graph_input():
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    holder = value.producer()
    if holder is None or holder.op_type != "Constant" or holder.domain not in DEFAULT_DOMAINS:
        return None
    attr = holder.attributes.get("value")
    if attr is None or attr.type != ir.AttributeType.TENSOR:
        return None
    return attr.as_tensor().numpy()


@dataclasses.dataclass(frozen=True)
class LinearSpec:
    """Where a weighted node keeps its channels.

    Attributes:
        weight: index of the weight input.
        out_axis: weight axis of the output channels.
        in_axis: weight axis of the input channels (contracted with the activation).
        act_axis: activation axis that holds input channels (negative: from the end).
        bias: index of the bias input, or None (MatMul keeps its bias in a following Add).
    """

    weight: int
    out_axis: int
    in_axis: int
    act_axis: int
    bias: int | None


def linear_spec(node: ir.Node) -> LinearSpec | None:
    """The layout of a weighted node with a constant weight, or None if it is not one we know.

    Grouped convolutions other than group 1 return None: their channels are handled as
    depthwise (see `depthwise_multiplier`) or not at all.
    """
    if node.domain not in DEFAULT_DOMAINS or node.op_type not in PRUNABLE_OPS:
        return None
    if len(node.inputs) < 2:
        return None
    weight = constant(node.inputs[1])
    if weight is None:
        return None
    if node.op_type in ("Conv", "ConvTranspose"):
        if node.attributes.get_int("group", 1) != 1 or weight.ndim < 3:
            return None
        out_axis, in_axis = (0, 1) if node.op_type == "Conv" else (1, 0)
        return LinearSpec(1, out_axis, in_axis, act_axis=1, bias=2)
    if weight.ndim != 2:
        return None
    if node.op_type == "Gemm":
        if node.attributes.get_int("transA", 0):
            return None
        trans_b = node.attributes.get_int("transB", 0)
        return LinearSpec(1, 0 if trans_b else 1, 1 if trans_b else 0, act_axis=-1, bias=2)
    return LinearSpec(1, 1, 0, act_axis=-1, bias=None)


def contraction_spec(node: ir.Node) -> LinearSpec | None:
    """`linear_spec`, and for a grouped 2-D Conv the layout `input_rows` needs (all channels)."""
    spec = linear_spec(node)
    if spec is not None or node.op_type != "Conv" or node.domain not in DEFAULT_DOMAINS:
        return spec
    weight = constant(node.inputs[1]) if len(node.inputs) > 1 else None
    if weight is None or weight.ndim != 4:
        return None
    return LinearSpec(1, 0, 1, act_axis=1, bias=2)


def depthwise_multiplier(node: ir.Node) -> int | None:
    """Output channels per input channel of a depthwise Conv (group == input channels)."""
    if node.op_type != "Conv" or node.domain not in DEFAULT_DOMAINS or len(node.inputs) < 2:
        return None
    weight = constant(node.inputs[1])
    group = node.attributes.get_int("group", 1)
    if weight is None or weight.ndim < 3 or group <= 1 or weight.shape[1] != 1:
        return None
    if weight.shape[0] % group:
        return None
    return weight.shape[0] // group


def to_matrix(weight: np.ndarray, spec: LinearSpec) -> np.ndarray:
    """The weight as (outputs, inputs) where inputs run channel-major like `input_rows`."""
    moved = np.moveaxis(weight, (spec.out_axis, spec.in_axis), (0, 1))
    return moved.reshape(moved.shape[0], -1)


def from_matrix(
    matrix: np.ndarray, spec: LinearSpec, like: np.ndarray, in_channels: int | None = None
) -> np.ndarray:
    """Inverse of `to_matrix` into the layout of `like` (with `in_channels` input channels)."""
    shape = list(np.moveaxis(like, (spec.out_axis, spec.in_axis), (0, 1)).shape)
    if in_channels is not None:
        shape[1] = in_channels
    restored = np.moveaxis(matrix.reshape(shape), (0, 1), (spec.out_axis, spec.in_axis))
    return restored.astype(like.dtype)


def input_rows(
    node: ir.Node,
    spec: LinearSpec,
    x: np.ndarray,
    *,
    limit: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray | None:
    """The activation as rows (positions, inputs) so that `rows @ weight_matrix.T` is the output.

    Covers 2-D Conv (im2col with strides, dilations, pads, auto_pad) and Gemm/MatMul (the
    leading axes flattened). Returns None for what it does not cover (ConvTranspose, 1-D/3-D
    convolutions), and the caller then skips compensation for that node. With `limit`, at
    most that many positions are drawn at random (without building the full im2col matrix).
    """
    rng = rng or np.random.default_rng(0)
    if node.op_type in ("Gemm", "MatMul"):
        rows = x.reshape(-1, x.shape[-1])
        if limit is not None and len(rows) > limit:
            rows = rows[rng.choice(len(rows), limit, replace=False)]
        return rows
    if node.op_type != "Conv" or x.ndim != 4:
        return None
    weight = constant(node.inputs[spec.weight])
    assert weight is not None
    kh, kw = weight.shape[2:]
    sh, sw = node.attributes.get_ints("strides", [1, 1])
    dh, dw = node.attributes.get_ints("dilations", [1, 1])
    pads = _pads(node, x.shape[2:], (kh, kw), (sh, sw), (dh, dw))
    padded = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    windows = np.lib.stride_tricks.sliding_window_view(padded, (span_h, span_w), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, OH, OW, kh, kw)
    n, c, oh, ow = windows.shape[:4]
    count = n * oh * ow
    picked = np.arange(count)
    if limit is not None and count > limit:
        picked = np.sort(rng.choice(count, limit, replace=False))
    ni, rest = np.divmod(picked, oh * ow)
    oi, wi = np.divmod(rest, ow)
    return windows[ni, :, oi, wi].reshape(len(picked), c * kh * kw)


def _pads(
    node: ir.Node,
    size: tuple[int, ...],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
) -> list[int]:
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "VALID"):
        pads = node.attributes.get_ints("pads", [0, 0, 0, 0])
        return list(pads) if auto_pad == "NOTSET" else [0, 0, 0, 0]
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        small, large = total // 2, total - total // 2
        begin.append(large if auto_pad == "SAME_LOWER" else small)
        end.append(small if auto_pad == "SAME_LOWER" else large)
    return begin + end
