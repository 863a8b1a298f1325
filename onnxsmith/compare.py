"""Numerical comparison of two sets of outputs (pure numpy: torch vs ORT, ORT vs ORT)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class OutputDiff:
    """Largest absolute and relative difference on one output over all compared feeds.

    NaN in both outputs at one position, or an infinity of the same sign in both, agree (the
    models compute the same thing, e.g. `sqrt` of a negative feed); `same_nonfinite` counts them.
    """

    name: str
    max_abs: float
    max_rel: float
    worst_excess: float  # max(|a-b| - (atol + rtol*|b|)); <= 0 means within tolerance
    same_nonfinite: int = 0

    def within(self) -> bool:
        return self.worst_excess <= 0


def diff_outputs(
    names: Sequence[str],
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    *,
    atol: float,
    rtol: float,
) -> list[OutputDiff]:
    """Compares outputs position by position, numpy.allclose-style (|a-b| <= atol + rtol*|b|)."""
    diffs = []
    for name, want, got in zip(names, expected, actual, strict=True):
        want = np.asarray(want)
        got = np.asarray(got)
        if want.shape != got.shape:
            diffs.append(OutputDiff(name, float("inf"), float("inf"), float("inf")))
            continue
        if want.dtype.kind not in "fc":
            mismatch = float(np.count_nonzero(want != got))
            diffs.append(OutputDiff(name, mismatch, mismatch, mismatch))
            continue
        diffs.append(_float_diff(name, want, got, atol=atol, rtol=rtol))
    return diffs


def _nan_as_inf(values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), np.inf, values)


def _float_diff(
    name: str, want: np.ndarray, got: np.ndarray, *, atol: float, rtol: float
) -> OutputDiff:
    want64, got64 = want.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    same = (np.isnan(want64) & np.isnan(got64)) | (np.isinf(want64) & (want64 == got64))
    want64, got64 = want64[~same], got64[~same]
    # Where only one side is NaN the error is NaN: count it as infinitely far.
    err = _nan_as_inf(np.abs(want64 - got64))
    if err.size == 0:
        return OutputDiff(name, 0.0, 0.0, -atol, int(same.sum()))
    with np.errstate(invalid="ignore"):  # inf - inf, inf / inf: NaN, read as infinitely far
        rel = _nan_as_inf(err / np.maximum(np.abs(want64), np.finfo(np.float32).tiny))
        excess = _nan_as_inf(err - (atol + rtol * np.abs(want64)))
    return OutputDiff(
        name, float(err.max()), float(rel.max()), float(excess.max()), int(same.sum())
    )


def merge_diffs(a: list[OutputDiff], b: list[OutputDiff]) -> list[OutputDiff]:
    """The worst of two comparisons of the same outputs."""
    if not a:
        return b
    return [
        OutputDiff(
            x.name,
            max(x.max_abs, y.max_abs),
            max(x.max_rel, y.max_rel),
            max(x.worst_excess, y.worst_excess),
            x.same_nonfinite + y.same_nonfinite,
        )
        for x, y in zip(a, b, strict=True)
    ]


def nonfinite_note(diffs: Sequence[OutputDiff]) -> str:
    """The parity note's `; N NaN/inf values ... count as agreement`, or "" when none."""
    same = sum(d.same_nonfinite for d in diffs)
    if not same:
        return ""
    return f"; {same} NaN/inf values in the same places in both models count as agreement"
