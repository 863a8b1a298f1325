"""Combiner subgraphs: how the parallel modes turn N member outputs into one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.merge.emit import Emitter
from onnxsmith.merge.fit import StackFit

VOTE_SUFFIX = "_vote"


def combine(
    em: Emitter,
    mode: str,
    values: Sequence[ir.Value],
    *,
    weights: Sequence[float] | None,
    softmax: bool,
    axis: int,
    stack: StackFit | None,
) -> list[tuple[str, ir.Value]]:
    """Emits the combination of `values` (one per member); returns (name suffix, value) pairs.

    mean/max/weighted: one element-wise result. vote: the averaged scores and, with suffix
    `_vote`, the int64 majority class (ties go to the class with the higher mean score, then
    to the lower index). stack: NNLS weights like weighted, or a logistic-regression layer
    over the concatenated member scores.
    """
    scores = [em.softmax(v, axis) for v in values] if softmax else list(values)
    if mode == "vote":
        mean, winner = _vote(em, scores, axis)
        winner.dtype = ir.DataType.INT64
        if values[0].shape is not None:
            dims = list(values[0].shape)
            del dims[axis]
            winner.shape = ir.Shape(dims)
        _like(mean, values[0])
        return [("", mean), (VOTE_SUFFIX, winner)]
    if mode == "mean":
        result = em.op("Mean", scores)
    elif mode == "max":
        result = em.op("Max", scores)
    elif stack is not None and stack.method == "logistic":
        result = _logistic(em, scores, stack)
    else:
        weights = stack.weights if stack is not None else weights
        if weights is None:
            raise ValueError(f"mode {mode!r} needs weights")
        result = _weighted_sum(em, scores, weights)
    _like(result, values[0])
    return [("", result)]


def _like(value: ir.Value, model: ir.Value) -> None:
    value.type = model.type
    value.shape = model.shape


def _weighted_sum(em: Emitter, scores: Sequence[ir.Value], weights: Sequence[float]) -> ir.Value:
    dtype = _numpy_dtype(scores[0])
    # A member with weight 0 is left out; its nodes become dead and are removed.
    terms = [
        em.op("Mul", [s, em.const(np.asarray(w, dtype))])
        for s, w in zip(scores, weights, strict=True)
        if w != 0
    ]
    return em.op("Sum", terms)


def _vote(em: Emitter, scores: Sequence[ir.Value], axis: int) -> tuple[ir.Value, ir.Value]:
    mean = em.op("Mean", scores)
    dtype = _numpy_dtype(scores[0])
    # Negative axes address the same dim in ArgMax's input and OneHot's output.
    classes = em.op("Gather", [em.op("Shape", [scores[0]]), em.const(np.array([axis], np.int64))])
    off_on = em.const(np.array([0, 1], dtype))
    ballots = [
        em.op(
            "OneHot",
            [em.op("ArgMax", [s], {"axis": axis, "keepdims": 0}), classes, off_on],
            {"axis": axis},
        )
        for s in scores
    ]
    votes = em.op("Sum", ballots)
    most = em.reduce("ReduceMax", votes, [axis], keepdims=True)
    tied = em.op("Equal", [votes, most])
    masked = em.op("Where", [tied, mean, em.const(np.array(-np.inf, dtype))])
    winner = em.op("ArgMax", [masked], {"axis": axis, "keepdims": 0})
    return mean, winner


def _logistic(em: Emitter, scores: Sequence[ir.Value], stack: StackFit) -> ir.Value:
    dtype = _numpy_dtype(scores[0])
    features = em.op("Concat", list(scores), {"axis": -1})
    coef = em.const(np.asarray(stack.coef, dtype), name="merge/stack_coef")
    intercept = em.const(np.asarray(stack.intercept, dtype), name="merge/stack_intercept")
    return em.op("Add", [em.op("MatMul", [features, coef]), intercept])


def _numpy_dtype(value: ir.Value) -> np.dtype:
    return np.dtype(value.dtype.numpy()) if value.dtype is not None else np.dtype(np.float32)
