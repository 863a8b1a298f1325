"""Random valid ONNX models for property tests: a hypothesis strategy any verb can reuse.

`models()` draws a graph the way exporters write them: chains and DAGs of Conv, Gemm, MatMul
(+Add bias), Add, Mul, Relu, Sigmoid, Softmax, Concat, Reshape, Flatten, Transpose,
BatchNormalization, Dropout and Identity, with residual joins, weights shared between nodes or
duplicated under two names, weights in Constant nodes or behind foldable Transpose/Mul chains,
a symbolic or fixed batch dim, and If nodes whose branches read outer values. Every model passes
`onnx.checker.check_model(full_check=True)` and runs in ONNX Runtime.

Numbers stay of order 1 (weights ~ 1/sqrt(fan_in), scales in [0.5, 1.5], BN variance >= 0.5),
so float32 reassociation errors stay near 1e-6 and a tolerance of 1e-4 separates them from
real mistakes (a wrong axis or channel gives errors of order 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

OPSETS = (13, 15, 17, 19, 21)
Dim = int | str  # a fixed size, or the symbolic batch "batch"


@dataclasses.dataclass(frozen=True)
class Val:
    """A tensor in the graph being built: its name and shape (axis 0 is the batch)."""

    name: str
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)


class Generated:
    """A drawn model; its repr is the ONNX text form, so a failing example is readable.

    (A plain class: hypothesis prints dataclasses field by field, not through `__repr__`.)
    """

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.proto = proto

    def __repr__(self) -> str:
        return onnx.printer.to_text(self.proto)

    @property
    def opset(self) -> int:
        return next(o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx"))


class _Builder:
    """Accumulates nodes and initializers of one graph; `draw` makes every choice."""

    def __init__(self, draw: st.DrawFn, rng: np.random.Generator, prefix: str = "") -> None:
        self.draw = draw
        self.rng = rng
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.weights: dict[tuple[int, ...], list[str]] = {}  # shape -> names, for sharing
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{self.prefix}{stem}{self.count}"

    def node(self, op: str, inputs: list[str], shape: tuple[Dim, ...], **attrs) -> Val:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name("n"), **attrs))
        return Val(out, shape)

    def constant(self, array: np.ndarray, stem: str = "w") -> str:
        """A constant as an initializer, a Constant node, or a foldable expression of them."""
        how = self.draw(st.sampled_from(["initializer", "constant_node", "transposed", "scaled"]))
        if how == "transposed" and array.ndim == 2:
            inner = self.constant(np.ascontiguousarray(array.T), stem)
            return self.node("Transpose", [inner], array.shape, perm=[1, 0]).name
        if how == "scaled" and array.dtype == np.float32:
            inner = self.constant((array * 2).astype(np.float32), stem)
            half = self._stored(np.array(0.5, np.float32), "half", "initializer")
            return self.node("Mul", [inner, half], array.shape).name
        return self._stored(array, stem, how if how == "constant_node" else "initializer")

    def _stored(self, array: np.ndarray, stem: str, how: str) -> str:
        name = self.name(stem)
        tensor = numpy_helper.from_array(array, name)
        if how == "constant_node":
            self.nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        else:
            self.initializers.append(tensor)
        return name

    def weight(self, *shape: int, fan_in: int) -> str:
        """A float weight ~ N(0, 1/fan_in): a new initializer, any other form of constant
        (Constant node, Transpose or Mul to fold), shared with an earlier node, or a copy."""
        earlier = self.weights.get(shape, [])
        reuse = self.draw(st.sampled_from(["new", "constant", "shared", "duplicate"]))
        if reuse == "constant":
            return self.constant(
                self.rng.normal(0, 1 / math.sqrt(fan_in), shape).astype(np.float32)
            )
        if not earlier:
            reuse = "new"
        if reuse == "shared":
            return self.draw(st.sampled_from(earlier))
        if reuse == "duplicate":  # identical bytes under another name: dedup must merge them
            source = next(t for t in self.initializers if t.name == earlier[0])
            return self._stored(numpy_helper.to_array(source).copy(), "dup", "initializer")
        array = self.rng.normal(0, 1 / math.sqrt(fan_in), shape).astype(np.float32)
        name = self._stored(array, "w", "initializer")
        self.weights.setdefault(shape, []).append(name)
        return name

    def uniform(self, low: float, high: float, *shape: int) -> np.ndarray:
        return self.rng.uniform(low, high, shape).astype(np.float32)


# ---- ops: each takes the builder and the live values, returns a new value or None -------------


def _unary(b: _Builder, values: list[Val]) -> Val | None:
    x = b.draw(st.sampled_from(values))
    op = b.draw(st.sampled_from(["Relu", "Sigmoid", "Identity", "Dropout", "Softmax"]))
    if op == "Softmax":
        return b.node(op, [x.name], x.shape, axis=b.draw(st.sampled_from([1, -1])))
    if op == "Dropout" and b.draw(st.booleans()):
        ratio = b._stored(np.array(0.3, np.float32), "ratio", "initializer")
        training = b._stored(np.array(False), "training", "initializer")
        return b.node(op, [x.name, ratio, training], x.shape)
    return b.node(op, [x.name], x.shape)


def _conv(b: _Builder, values: list[Val]) -> Val | None:
    images = [v for v in values if v.rank == 4]
    if not images:
        return None
    x = b.draw(st.sampled_from(images))
    _, channels, height, width = x.shape
    assert isinstance(channels, int) and isinstance(height, int) and isinstance(width, int)
    kernel = b.draw(st.integers(1, min(3, height, width)))
    pad = b.draw(st.integers(0, kernel // 2))
    stride = b.draw(st.integers(1, 2))
    depthwise = channels > 1 and b.draw(st.booleans())
    out = channels if depthwise else b.draw(st.integers(1, 6))
    group = channels if depthwise else 1
    w = b.weight(out, channels // group, kernel, kernel, fan_in=channels // group * kernel**2)
    inputs = [x.name, w]
    if b.draw(st.booleans()):
        inputs.append(b.constant(b.uniform(-0.1, 0.1, out), "bias"))
    side = [(s + 2 * pad - kernel) // stride + 1 for s in (height, width)]
    return _maybe_batchnorm(
        b,
        b.node(
            "Conv",
            inputs,
            (x.shape[0], out, *side),
            kernel_shape=[kernel, kernel],
            pads=[pad] * 4,
            strides=[stride] * 2,
            group=group,
        ),
    )


def _batchnorm(b: _Builder, values: list[Val]) -> Val | None:
    x = b.draw(st.sampled_from(values))
    channels = x.shape[1]
    assert isinstance(channels, int)
    params = [
        b.constant(b.uniform(0.5, 1.5, channels), "gamma"),
        b.constant(b.uniform(-0.1, 0.1, channels), "beta"),
        b.constant(b.uniform(-0.1, 0.1, channels), "mean"),
        b.constant(b.uniform(0.5, 1.5, channels), "var"),
    ]
    epsilon = b.draw(st.sampled_from([1e-5, 1e-3]))
    return b.node("BatchNormalization", [x.name, *params], x.shape, epsilon=epsilon)


def _gemm(b: _Builder, values: list[Val]) -> Val | None:
    vectors = [v for v in values if v.rank == 2]
    if not vectors:
        return None
    x = b.draw(st.sampled_from(vectors))
    features = x.shape[1]
    assert isinstance(features, int)
    out = b.draw(st.integers(1, 8))
    trans_b = b.draw(st.integers(0, 1))
    shape = (out, features) if trans_b else (features, out)
    inputs = [x.name, b.weight(*shape, fan_in=features)]
    if b.draw(st.booleans()):
        bias_shape = b.draw(st.sampled_from([(out,), (1, out)]))
        inputs.append(b.constant(b.uniform(-0.1, 0.1, *bias_shape), "bias"))
    alpha, beta = b.draw(st.sampled_from([(1.0, 1.0), (0.5, 1.0), (1.0, 2.0)]))
    y = b.node("Gemm", inputs, (x.shape[0], out), transB=trans_b, alpha=alpha, beta=beta)
    return _maybe_batchnorm(b, y)


def _matmul(b: _Builder, values: list[Val]) -> Val | None:
    x = b.draw(st.sampled_from(values))
    features = x.shape[-1]
    assert isinstance(features, int)
    out = b.draw(st.integers(1, 8))
    y = b.node("MatMul", [x.name, b.weight(features, out, fan_in=features)], (*x.shape[:-1], out))
    if b.draw(st.booleans()):  # nn.Linear as exporters write it: MatMul then Add(bias)
        y = b.node("Add", [y.name, b.constant(b.uniform(-0.1, 0.1, out), "bias")], y.shape)
    return _maybe_batchnorm(b, y)


def _maybe_batchnorm(b: _Builder, y: Val) -> Val:
    """Half the time a BatchNormalization right after: the pattern BN folding looks for."""
    return _batchnorm(b, [y]) or y if b.draw(st.booleans()) else y


def _binary_constant(b: _Builder, values: list[Val]) -> Val | None:
    x = b.draw(st.sampled_from(values))
    channels = x.shape[1]
    assert isinstance(channels, int)
    shapes: list[tuple[int, ...]] = [(), (int(x.shape[-1]),), tuple(int(d) for d in x.shape[1:])]
    if x.rank == 4:
        shapes.append((channels, 1, 1))
    shape = b.draw(st.sampled_from(shapes))
    op = b.draw(st.sampled_from(["Add", "Mul"]))
    operand = b.constant(b.uniform(0.5, 1.5, *shape), "k")
    inputs = [x.name, operand] if b.draw(st.booleans()) else [operand, x.name]
    return b.node(op, inputs, x.shape)


def _residual(b: _Builder, values: list[Val]) -> Val | None:
    by_shape: dict[tuple[Dim, ...], list[Val]] = {}
    for v in values:
        by_shape.setdefault(v.shape, []).append(v)
    pairs = [vs for vs in by_shape.values() if len(vs) > 1]
    if not pairs:
        return None
    group = b.draw(st.sampled_from(pairs))
    first, second = b.draw(st.permutations(group))[:2]
    op = b.draw(st.sampled_from(["Add", "Mul"]))
    return b.node(op, [first.name, second.name], first.shape)


def _concat(b: _Builder, values: list[Val]) -> Val | None:
    x = b.draw(st.sampled_from(values))
    partners = [v for v in values if v.rank == x.rank and v.shape[2:] == x.shape[2:]]
    partners = [v for v in partners if v.shape[0] == x.shape[0]]
    y = b.draw(st.sampled_from(partners))  # x itself is always a partner
    channels = int(x.shape[1]) + int(y.shape[1])
    return b.node("Concat", [x.name, y.name], (x.shape[0], channels, *x.shape[2:]), axis=1)


def _reshape(b: _Builder, values: list[Val]) -> Val | None:
    x = b.draw(st.sampled_from(values))
    rest = [int(d) for d in x.shape[1:]]
    if x.rank > 2:
        target: tuple[Dim, ...] = (x.shape[0], math.prod(rest))
        spec = [0, -1]
    else:
        target = (x.shape[0], rest[0], 1, 1)
        spec = [0, rest[0], 1, 1]
    if b.draw(st.booleans()) and x.rank > 2:
        return b.node("Flatten", [x.name], target, axis=1)
    shape = b.constant(np.array(spec, np.int64), "shape")
    return b.node("Reshape", [x.name, shape], target)


def _transpose(b: _Builder, values: list[Val]) -> Val | None:
    candidates = [v for v in values if v.rank >= 3]
    if not candidates:
        return None
    x = b.draw(st.sampled_from(candidates))
    tail = b.draw(st.permutations(list(range(1, x.rank))))
    perm = [0, *tail]
    return b.node("Transpose", [x.name], tuple(x.shape[p] for p in perm), perm=perm)


def _if(b: _Builder, values: list[Val], cond: str) -> Val | None:
    x = b.draw(st.sampled_from(values))
    branches = []
    for side in ("then", "else"):
        sub = _Builder(b.draw, b.rng, prefix=f"{b.name(side)}_")
        y = x
        for _ in range(b.draw(st.integers(1, 3))):
            step = b.draw(st.sampled_from([_unary, _binary_constant, _batchnorm]))
            y = step(sub, [y]) or y
        if y is x:  # a branch must produce its own value
            y = sub.node("Identity", [x.name], x.shape)
        initializers = sub.initializers
        if b.draw(st.booleans()):  # constants as Constant nodes rather than subgraph initializers
            lifted = [helper.make_node("Constant", [], [t.name], value=t) for t in initializers]
            sub.nodes, initializers = lifted + sub.nodes, []
        graph = helper.make_graph(sub.nodes, side, [], [_value_info(y)], initializers)
        branches.append(graph)
    out = b.name("if")
    b.nodes.append(
        helper.make_node("If", [cond], [out], then_branch=branches[0], else_branch=branches[1])
    )
    return Val(out, x.shape)


OPS: list[Callable[[_Builder, list[Val]], Val | None]] = [
    _unary,
    _conv,
    _batchnorm,
    _gemm,
    _matmul,
    _binary_constant,
    _residual,
    _concat,
    _reshape,
    _transpose,
]


def _value_info(v: Val) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(v.name, TensorProto.FLOAT, list(v.shape))


@st.composite
def models(draw: st.DrawFn, max_ops: int = 10, with_if: bool = True) -> Generated:
    """A random valid model of up to `max_ops` ops (see the module docstring for what)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = _Builder(draw, rng)
    batch: Dim = draw(st.sampled_from(["batch", 1, 2]))
    layout = draw(st.sampled_from(["image", "vector", "sequence"]))
    small = st.integers(1, 5)
    if layout == "image":
        side = draw(st.integers(3, 6))
        shape: tuple[Dim, ...] = (batch, draw(small), side, side)
    elif layout == "vector":
        shape = (batch, draw(st.integers(2, 8)))
    else:
        shape = (batch, draw(small), draw(st.integers(2, 6)))
    inputs = [Val("x", shape)]
    if draw(st.booleans()):  # a second input of the same shape feeds residual joins
        inputs.append(Val("x2", shape))
    values = list(inputs)
    graph_inputs = [_value_info(v) for v in inputs]
    cond = None
    if with_if and draw(st.booleans()):
        if draw(st.booleans()):
            cond = "cond"
            graph_inputs.append(helper.make_tensor_value_info(cond, TensorProto.BOOL, []))
        else:  # a constant condition: folding may pick the branch
            cond = b.constant(np.array(draw(st.booleans())), "cond")
    for _ in range(draw(st.integers(1, max_ops))):
        if cond is not None and draw(st.integers(0, 5)) == 0:
            new = _if(b, values, cond)
        else:
            new = draw(st.sampled_from(OPS))(b, values)
        if new is not None:
            values.append(new)
    if values[-1] in inputs:  # the graph must compute something
        values.append(b.node("Relu", [values[-1].name], values[-1].shape))
    outputs = [values[-1]]
    extra = draw(st.sampled_from(["none", "intermediate", "constant", "passthrough"]))
    intermediate = [v for v in values[:-1] if v not in inputs]
    if extra == "intermediate" and intermediate:
        outputs.append(draw(st.sampled_from(intermediate)))
    elif extra == "constant":  # an output that folds to an initializer
        outputs.append(b.node("Relu", [b.constant(b.uniform(-1, 1, 3), "k")], (3,)))
    elif extra == "passthrough":  # an input that is also an output, through an Identity
        outputs.append(b.node("Identity", [inputs[-1].name], inputs[-1].shape))
    graph = helper.make_graph(
        b.nodes, "generated", graph_inputs, [_value_info(v) for v in outputs], b.initializers
    )
    opset = draw(st.sampled_from(OPSETS))
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets)
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto, full_check=True)
    return Generated(proto)
