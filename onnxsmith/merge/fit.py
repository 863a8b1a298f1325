"""Stacking weights: the solvers (pure numpy) and the frozen result the merge bakes in.

Collecting member outputs needs ONNX Runtime and lives in `onnxsmith.merge.stacking`; what
is here only sees arrays, so the merge itself never runs a model.
"""

from __future__ import annotations

import dataclasses

import numpy as np

STACK_METHODS = ("nnls", "logistic")


@dataclasses.dataclass(frozen=True, eq=False)
class StackFit:
    """Fitted combination weights.

    Attributes:
        method: "nnls" (non-negative weights, one per member) or "logistic" (a linear layer over
            the concatenated member scores, `coef` [members*classes, classes] and `intercept`).
        weights: per-member weights (nnls), or each member's share of |coef| (logistic).
        samples: how many score rows the fit saw.
        member_accuracy: each member's accuracy on the fit data (None for soft targets).
        accuracy: the stacked combination's accuracy on the fit data (None for soft targets).
    """

    method: str
    weights: tuple[float, ...]
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    samples: int = 0
    member_accuracy: tuple[float, ...] | None = None
    accuracy: float | None = None

    def apply(self, scores: list[np.ndarray]) -> np.ndarray:
        """The stacked output for per-member score arrays [..., classes] (numpy reference)."""
        if self.coef is not None and self.intercept is not None:
            return np.concatenate(scores, axis=-1) @ self.coef + self.intercept
        terms = [w * s for w, s in zip(self.weights, scores, strict=True) if w != 0]
        return np.sum(terms, axis=0)


def nnls(a: np.ndarray, b: np.ndarray, *, tol: float = 1e-10) -> np.ndarray:
    """min ||a x - b|| subject to x >= 0 (Lawson-Hanson active set).

    Written here so the core needs no scipy; `scipy.optimize.nnls` gives the same answer
    (tests compare them). Members are few, so each least-squares step is tiny.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    n = a.shape[1]
    x = np.zeros(n)
    active = np.zeros(n, bool)  # variables allowed to be positive
    for _ in range(3 * n + 10):
        gradient = a.T @ (b - a @ x)
        candidates = np.where(~active, gradient, -np.inf)
        if active.all() or candidates.max() <= tol * max(1.0, np.abs(gradient).max()):
            break
        active[int(np.argmax(candidates))] = True
        while active.any():
            trial = np.zeros(n)
            trial[active] = np.linalg.lstsq(a[:, active], b, rcond=None)[0]
            if trial[active].min() > 0:
                x = trial
                break
            blocking = active & (trial <= 0)
            step = np.min(x[blocking] / (x[blocking] - trial[blocking]))
            x = x + step * (trial - x)
            active &= x > tol
            x[~active] = 0.0
    return x


def fit_logistic(
    features: np.ndarray, targets: np.ndarray, *, l2: float = 1e-3, iterations: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: softmax(features @ coef + intercept) ~ targets.

    `targets` are class probabilities per row (one-hot labels or a teacher's softmax).
    Full-batch Nesterov gradient descent with the step set from the loss's curvature bound,
    and an L2 penalty so separable data still gives finite weights; deterministic.
    """
    x = np.asarray(features, np.float64)
    t = np.asarray(targets, np.float64)
    rows, dims = x.shape
    classes = t.shape[1]
    xb = np.hstack([x, np.ones((rows, 1))])
    # Softmax cross-entropy has Hessian <= 0.5 X^T X / rows (per class block).
    lipschitz = 0.5 * np.linalg.norm(xb, 2) ** 2 / rows + l2
    step = 1.0 / lipschitz
    w = np.zeros((dims + 1, classes))
    previous = w.copy()
    for k in range(1, iterations + 1):
        look = w + (k - 1) / (k + 2) * (w - previous)
        logits = xb @ look
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = xb.T @ (p - t) / rows
        grad[:-1] += l2 * look[:-1]
        previous, w = w, look - step * grad
    return w[:-1], w[-1]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (the numpy twin of the graph's Softmax)."""
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)
