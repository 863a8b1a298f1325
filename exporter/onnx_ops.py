"""ONNX operators as torch functions, for running (and training) an ONNX graph in torch.

Each entry of `OPS` takes the node's inputs (tensors, None for an omitted optional input) and
its attributes, and returns its outputs. The set covers what onnxsmith prunes and what the
cleaned-up vision models around it use (convolutions, activations, pooling, resizing,
elementwise and shape arithmetic); `onnx_module.OnnxModule` refuses a graph with anything else.

Written here rather than taken from onnx2torch, whose converter for the PP-OCRv4 detector
differs from ONNX Runtime by up to 0.99: every op below is held to ORT by the parity check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from onnxsmith.errors import ExportError

Tensor = torch.Tensor
Attrs = dict[str, Any]
Op = Callable[[Sequence[Tensor | None], Attrs], Sequence[Tensor]]

_DTYPES = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
}


def _ints(tensor: Tensor | None) -> list[int]:
    return [] if tensor is None else [int(v) for v in tensor.reshape(-1).tolist()]


def _pads(pads: Sequence[int], dims: int) -> tuple[list[int], list[int] | None]:
    """Symmetric torch padding, or the F.pad list when begin and end differ."""
    begin, end = list(pads[:dims]), list(pads[dims:])
    if not begin:
        return [0] * dims, None
    if begin == end:
        return begin, None
    flat = [p for b, e in zip(reversed(begin), reversed(end), strict=True) for p in (b, e)]
    return [0] * dims, flat


def _same_pads(x: Tensor, kernel: Sequence[int], strides: Sequence[int], mode: str) -> list[int]:
    begin, end = [], []
    for size, k, s in zip(x.shape[2:], kernel, strides, strict=True):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(large if mode == "SAME_LOWER" else small)
        end.append(small if mode == "SAME_LOWER" else large)
    return begin + end


def _conv(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x, weight, bias = inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None
    assert x is not None and weight is not None
    dims = weight.ndim - 2
    strides = list(attrs.get("strides", [1] * dims))
    dilations = list(attrs.get("dilations", [1] * dims))
    kernel = list(weight.shape[2:])
    auto_pad = attrs.get("auto_pad", "NOTSET")
    pads = list(attrs.get("pads", [0] * 2 * dims))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
        pads = _same_pads(x, effective, strides, auto_pad)
    padding, explicit = _pads(pads, dims)
    if explicit is not None:
        x = F.pad(x, explicit)
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    return [conv(x, weight, bias, strides, padding, dilations, attrs.get("group", 1))]


def _conv_transpose(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x, weight, bias = inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None
    assert x is not None and weight is not None
    dims = weight.ndim - 2
    if attrs.get("auto_pad", "NOTSET") != "NOTSET" or "output_shape" in attrs:
        raise ExportError("ConvTranspose with auto_pad or output_shape is not supported")
    padding, explicit = _pads(list(attrs.get("pads", [0] * 2 * dims)), dims)
    if explicit is not None:
        raise ExportError("ConvTranspose with asymmetric pads is not supported")
    conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[dims - 1]
    return [
        conv(
            x,
            weight,
            bias,
            list(attrs.get("strides", [1] * dims)),
            padding,
            list(attrs.get("output_padding", [0] * dims)),
            attrs.get("group", 1),
            list(attrs.get("dilations", [1] * dims)),
        )
    ]


def _pool(kind: str) -> Op:
    def pool(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
        x = inputs[0]
        assert x is not None
        kernel = list(attrs["kernel_shape"])
        dims = len(kernel)
        strides = list(attrs.get("strides", [1] * dims))
        pads = list(attrs.get("pads", [0] * 2 * dims))
        if attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
            pads = _same_pads(x, kernel, strides, attrs["auto_pad"])
        padding, explicit = _pads(pads, dims)
        ceil = bool(attrs.get("ceil_mode", 0))
        if kind == "max":
            if explicit is not None:
                x = F.pad(x, explicit, value=-math.inf)
            pool_fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[dims - 1]
            dilation = list(attrs.get("dilations", [1] * dims))
            return [pool_fn(x, kernel, strides, padding, dilation, ceil_mode=ceil)]
        if explicit is not None:
            raise ExportError("AveragePool with asymmetric pads is not supported")
        avg = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[dims - 1]
        include = bool(attrs.get("count_include_pad", 0))
        return [avg(x, kernel, strides, padding, ceil, include)]

    return pool


def _resize(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    scales = inputs[2] if len(inputs) > 2 else None
    sizes = inputs[3] if len(inputs) > 3 else None
    mode = attrs.get("mode", "nearest")
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest" and transform == "asymmetric" and attrs.get("nearest_mode") == "floor":
        method, corners = "nearest", None
    elif mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        method = ("linear", "bilinear", "trilinear")[x.ndim - 3]
        corners = transform == "align_corners"
    else:
        raise ExportError(f"Resize mode {mode!r} with {transform!r} coordinates is not supported")
    if sizes is not None and sizes.numel():
        return [F.interpolate(x, size=_ints(sizes)[2:], mode=method, align_corners=corners)]
    assert scales is not None
    factors = [float(s) for s in scales.reshape(-1).tolist()[2:]]
    return [F.interpolate(x, scale_factor=factors, mode=method, align_corners=corners)]


def _gemm(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    c = inputs[2] if len(inputs) > 2 else None
    return [y if c is None else y + attrs.get("beta", 1.0) * c]


def _batch_norm(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x, scale, bias, mean, var = inputs[:5]
    assert x is not None and mean is not None and var is not None
    # Inference semantics: the running statistics stay fixed while scale and bias train.
    return [F.batch_norm(x, mean, var, scale, bias, False, 0.0, attrs.get("epsilon", 1e-5))]


def _softmax(opset: int) -> Op:
    def softmax(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
        x = inputs[0]
        assert x is not None
        axis = attrs.get("axis", -1 if opset >= 13 else 1)
        if opset >= 13:
            return [torch.softmax(x, axis)]
        # Before opset 13, Softmax flattens to 2-D at `axis` and normalizes the second part.
        flat = x.reshape(math.prod(x.shape[: axis % x.ndim]), -1)
        return [torch.softmax(flat, 1).reshape(x.shape)]

    return softmax


def _clip(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    low = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("min")
    high = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("max")
    return [torch.clamp(x, _scalar(low), _scalar(high))]


def _scalar(value: Tensor | float | None) -> float | None:
    return float(value) if isinstance(value, Tensor) else value


def _reshape(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    shape = _ints(inputs[1])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def _axes(inputs: Sequence[Tensor | None], attrs: Attrs, index: int) -> list[int] | None:
    if "axes" in attrs:
        return list(attrs["axes"])
    if len(inputs) > index and inputs[index] is not None:
        return _ints(inputs[index])
    return None


def _unsqueeze(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    axes = _axes(inputs, attrs, 1) or []
    rank = x.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return [x]


def _squeeze(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    axes = _axes(inputs, attrs, 1)
    if axes is None:
        return [x.squeeze()]
    return [x.squeeze(tuple(a % x.ndim for a in axes))]


def _reduce(fn: Callable[..., Tensor], opset_axes_input: int) -> Callable[[int], Op]:
    def build(opset: int) -> Op:
        def reduce(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
            x = inputs[0]
            assert x is not None
            axes = _axes(inputs, attrs, 1) if opset >= opset_axes_input else attrs.get("axes")
            keep = bool(attrs.get("keepdims", 1))
            if not axes:
                axes = list(range(x.ndim))
            return [fn(x, dim=tuple(axes), keepdim=keep)]

        return reduce

    return build


def _slice(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    starts, ends = _ints(inputs[1]), _ints(inputs[2])
    axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
    steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else None
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    index: list[slice] = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step < 0:
            raise ExportError("Slice with a negative step is not supported")
        index[axis % x.ndim] = slice(start, min(end, x.shape[axis]), step)
    return [x[tuple(index)]]


def _gather(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x, index = inputs[0], inputs[1]
    assert x is not None and index is not None
    axis = attrs.get("axis", 0) % x.ndim
    index = torch.where(index < 0, index + x.shape[axis], index).long()
    picked = torch.index_select(x, axis, index.reshape(-1))
    shape = [*x.shape[:axis], *index.shape, *x.shape[axis + 1 :]]
    return [picked.reshape(shape)]


def _split(inputs: Sequence[Tensor | None], attrs: Attrs, outputs: int) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    axis = attrs.get("axis", 0)
    sizes = list(attrs.get("split", [])) or _ints(inputs[1] if len(inputs) > 1 else None)
    if not sizes:
        sizes = [x.shape[axis] // outputs] * outputs
    return list(torch.split(x, sizes, dim=axis))


def _unary(fn: Callable[[Tensor], Tensor]) -> Op:
    return lambda inputs, attrs: [fn(inputs[0])]  # type: ignore[arg-type]


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Op:
    return lambda inputs, attrs: [fn(inputs[0], inputs[1])]  # type: ignore[arg-type]


def _cast(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    return [x.to(_DTYPES[attrs["to"]])]


def _hard_sigmoid(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    return [torch.clamp(alpha * x + beta, 0.0, 1.0)]


def _divide(a: Tensor, b: Tensor) -> Tensor:
    if a.dtype.is_floating_point or b.dtype.is_floating_point:
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


def _concat(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    return [torch.cat([t for t in inputs if t is not None], dim=attrs["axis"])]


def _flatten(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    axis = attrs.get("axis", 1) % max(x.ndim, 1)
    return [x.reshape(math.prod(x.shape[:axis]), -1)]


def _transpose(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    return [x.permute(list(attrs.get("perm", reversed(range(x.ndim)))))]


def _shape(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    return [torch.tensor(list(x.shape)[attrs.get("start", 0) : attrs.get("end")])]


def _constant_of_shape(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    value = attrs.get("value")
    fill = torch.zeros(1, dtype=torch.float32) if value is None else value.reshape(-1)
    return [fill.expand(_ints(inputs[0])).clone()]


def _range(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    start, limit, delta = inputs[0], inputs[1], inputs[2]
    assert start is not None and limit is not None and delta is not None
    return [torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)]


def _expand(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
    x = inputs[0]
    assert x is not None
    # ONNX broadcasts both ways (a 1 in the target keeps x's size), unlike torch's expand
    shape = torch.broadcast_shapes(tuple(x.shape), tuple(_ints(inputs[1])))
    return [x.expand(shape)]


def _global_pool(fn: Callable[..., Tensor]) -> Op:
    def pool(inputs: Sequence[Tensor | None], attrs: Attrs) -> list[Tensor]:
        x = inputs[0]
        assert x is not None
        return [fn(x, dim=tuple(range(2, x.ndim)), keepdim=True)]

    return pool


def _max_values(x: Tensor, dim: tuple[int, ...], keepdim: bool) -> Tensor:
    return torch.amax(x, dim=dim, keepdim=keepdim)


_STATIC: dict[str, Op] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "BatchNormalization": _batch_norm,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": _global_pool(torch.mean),
    "GlobalMaxPool": _global_pool(_max_values),
    "Resize": _resize,
    "Gemm": _gemm,
    "MatMul": _binary(torch.matmul),
    "Add": _binary(torch.add),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "Div": _binary(_divide),
    "Pow": _binary(torch.pow),
    "Relu": _unary(torch.relu),
    "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh),
    "Exp": _unary(torch.exp),
    "Sqrt": _unary(torch.sqrt),
    "Neg": _unary(torch.neg),
    "Erf": _unary(torch.erf),
    "Identity": _unary(lambda x: x),
    "Dropout": _unary(lambda x: x),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _unary(F.hardswish),
    "LeakyRelu": lambda i, a: [F.leaky_relu(i[0], a.get("alpha", 0.01))],  # type: ignore[arg-type]
    "PRelu": _binary(lambda x, slope: torch.where(x >= 0, x, x * slope)),
    "Clip": _clip,
    "Concat": _concat,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Slice": _slice,
    "Gather": _gather,
    "Shape": _shape,
    "Cast": _cast,
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "Expand": _expand,
}
_BY_OPSET: dict[str, Callable[[int], Op]] = {
    "Softmax": _softmax,
    "ReduceMean": _reduce(torch.mean, 18),
    "ReduceSum": _reduce(torch.sum, 13),
}
SUPPORTED = tuple(sorted({*_STATIC, *_BY_OPSET, "Split", "Constant"}))


def op_function(op_type: str, opset: int, outputs: int) -> Op | None:
    """The torch function of `op_type` at `opset` (None: not supported)."""
    if op_type == "Split":
        return lambda inputs, attrs: _split(inputs, attrs, outputs)
    if op_type in _BY_OPSET:
        return _BY_OPSET[op_type](opset)
    return _STATIC.get(op_type)
