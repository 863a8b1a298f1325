"""Accuracy metrics: pure numpy, shared by bench, quantize, prune and merge.

A metric compares a model's outputs (one array per evaluated feed) with as many targets — the
reference model's outputs, or ground-truth labels — and returns one number. Built-ins:

- `cosine`: mean cosine similarity per row (axis 0 of each array is the batch; an array of
  rank <= 1 is one row). Two all-zero rows count as identical.
- `mse`: mean squared difference over every element of every feed.
- `max_abs`: largest absolute difference anywhere.
- `top1`: share of rows whose argmax over the last axis equals the target's: the target's own
  argmax when it has the output's shape (reference logits, one-hot labels), else the target is
  taken as integer class ids, one per row.

Task metrics chosen from the outputs (CTC strings, masks, boxes, embeddings) and the plug-in
type `path/to/file.py:fn` live in `onnxsmith.runtime.fidelity`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from onnxsmith.errors import DataError, UsageError, name_list

MetricFn = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float]


@dataclasses.dataclass(frozen=True)
class Metric:
    """A named metric and which direction is better (for Pareto fronts and decisions)."""

    name: str
    fn: MetricFn
    higher_is_better: bool = True

    def __call__(self, outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
        """Scores `outputs` against `targets`; raises DataError on a mismatch or a bad result."""
        if len(outputs) != len(targets):
            raise DataError(
                f"metric {self.name}: {len(outputs)} outputs but {len(targets)} targets — give "
                "one label file per eval file"
            )
        try:
            value = self.fn(outputs, targets)
        except DataError:
            raise
        except Exception as e:  # a user's callable may raise anything
            raise DataError(f"metric {self.name} failed: {type(e).__name__}: {e}") from e
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise DataError(
                f"metric {self.name} returned {type(value).__name__}, not a number — return a float"
            )
        if not math.isfinite(float(value)):
            raise DataError(f"metric {self.name} returned {value} — return a finite number")
        return float(value)


def _pairs(
    outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], metric: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """float64 (output, target) pairs of equal shape."""
    for i, (output, target) in enumerate(zip(outputs, targets, strict=True)):
        output, target = np.asarray(output), np.asarray(target)
        if output.shape != target.shape:
            raise DataError(
                f"metric {metric}: feed {i} has output shape {output.shape} but target shape "
                f"{target.shape} — compare models with the same outputs, or choose the output "
                "with --output"
            )
        yield output.astype(np.float64), target.astype(np.float64)


def _rows(array: np.ndarray) -> np.ndarray:
    return array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1)


def cosine(outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Mean cosine similarity per row; 1.0 for two zero rows, 0.0 for one zero row."""
    values = []
    for output, target in _pairs(outputs, targets, "cosine"):
        a, b = _rows(output), _rows(target)
        norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        norms = norm_a * norm_b
        row = np.sum(a * b, axis=1) / np.where(norms > 0, norms, 1.0)
        values.append(np.where((norm_a == 0) & (norm_b == 0), 1.0, row))
    return float(np.mean(np.concatenate(values))) if values else float("nan")


def mse(outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Mean squared difference over all elements of all feeds."""
    total = count = 0.0
    for output, target in _pairs(outputs, targets, "mse"):
        total += float(np.sum((output - target) ** 2))
        count += output.size
    return total / count if count else float("nan")


def max_abs(outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Largest absolute difference over all elements of all feeds."""
    worst = 0.0
    for output, target in _pairs(outputs, targets, "max_abs"):
        if output.size:
            worst = max(worst, float(np.max(np.abs(output - target))))
    return worst


def top1(outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Share of rows whose argmax over the last axis matches the target (see module doc)."""
    correct = rows = 0
    for i, (output, target) in enumerate(zip(outputs, targets, strict=True)):
        output, target = np.asarray(output), np.asarray(target)
        if output.ndim == 0:
            raise DataError(f"metric top1: feed {i} output is a scalar — top1 needs class scores")
        predicted = output.reshape(-1, output.shape[-1]).argmax(axis=1)
        if target.shape == output.shape and output.shape[-1] > 1:
            expected = target.reshape(-1, target.shape[-1]).argmax(axis=1)
        elif target.dtype.kind in "iub":
            expected = target.reshape(-1)
        else:
            raise DataError(
                f"metric top1: feed {i} target has shape {target.shape} and dtype "
                f"{target.dtype}; expected integer class ids or scores of shape {output.shape}"
            )
        if expected.shape != predicted.shape:
            raise DataError(
                f"metric top1: feed {i} has {predicted.size} rows of scores but "
                f"{expected.size} labels — give one label per row"
            )
        correct += int(np.count_nonzero(predicted == expected))
        rows += predicted.size
    return correct / rows if rows else float("nan")


BUILTIN: dict[str, Metric] = {
    "cosine": Metric("cosine", cosine),
    "mse": Metric("mse", mse, higher_is_better=False),
    "max_abs": Metric("max_abs", max_abs, higher_is_better=False),
    "top1": Metric("top1", top1),
}


def resolve_builtin(spec: str) -> Metric:
    """A built-in metric by name (`max-abs` and `max_abs` both work).

    Raises:
        UsageError: an unknown name.
    """
    name = spec.strip().replace("-", "_")
    if name in BUILTIN:
        return BUILTIN[name]
    raise UsageError(
        f"unknown metric {spec!r} — choose from {name_list(['auto', *BUILTIN])} or give a "
        "Python function as path/to/file.py:function"
    )
