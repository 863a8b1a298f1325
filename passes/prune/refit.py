"""Training-free compensation: refit weights by least squares on calibration statistics.

Removing inputs of a linear map y = W x + b loses W[:, removed] x[removed]. With the second
moments G = E[x̃ x̃ᵀ] of the augmented input x̃ = [x; 1] measured on calibration data, the
weights over the kept inputs that best reproduce the original output are

    [W' b'] = [W b] G[:, K] (G[K, K] + λ I)⁻¹          (K = kept inputs and the 1)

which is what this module solves, per layer (structured: the next layer's input channels are
gone) or per output row (unstructured: each row keeps its own inputs, as in OBS/SparseGPT
without the lazy batching). The ridge λ is a small fraction of the mean diagonal so that
inputs that never fire on the calibration set (dead ReLUs) do not make the system singular.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

RIDGE = 1e-3


@dataclasses.dataclass(frozen=True)
class InputStats:
    """Second moments of each weighted node's input, measured on calibration data.

    Attributes:
        grams: node name -> E[x̃ x̃ᵀ] (float64, size D+1; the last index is the constant 1),
            where x̃ are the node's input rows as `linear.input_rows` builds them. Missing for
            nodes whose input is too wide to keep a full matrix.
        means_sq: node name -> E[x²] per input (size D); always present.
        rows: node name -> how many rows were averaged.
        feeds: how many calibration feeds were run.
    """

    grams: Mapping[str, np.ndarray]
    means_sq: Mapping[str, np.ndarray]
    rows: Mapping[str, int]
    feeds: int


def refit_columns(
    weight: np.ndarray, bias: np.ndarray | None, gram: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Least-squares weights over the kept input columns (structured compensation).

    Args:
        weight: (outputs, inputs) matrix.
        bias: (outputs,) or None; when None the refit has no constant term to adjust.
        gram: (inputs+1, inputs+1) second moments of [x; 1].
        keep: boolean mask over inputs.

    Returns:
        (outputs, kept inputs) weights and the adjusted bias (None when `bias` was None).
    """
    full = _augment(weight, bias)
    kept = np.flatnonzero(np.append(keep, bias is not None))
    solved = _solve(gram, full, kept)
    if bias is None:
        return solved, None
    return solved[:, :-1], solved[:, -1]


def refit_rows(
    weight: np.ndarray, bias: np.ndarray | None, gram: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Least-squares refit of each output row over its own kept inputs (unstructured).

    Args:
        weight: (outputs, inputs) matrix whose pruned entries are still present.
        bias: (outputs,) or None.
        gram: (inputs+1, inputs+1) second moments of [x; 1].
        keep: (outputs, inputs) boolean mask.

    Returns:
        Weights of the same shape with zeros where `keep` is False, and the adjusted bias.
    """
    full = _augment(weight, bias)
    new_weight = np.zeros_like(weight, dtype=np.float64)
    new_bias = None if bias is None else np.asarray(bias, dtype=np.float64).copy()
    patterns: dict[bytes, list[int]] = {}
    for row in range(weight.shape[0]):
        patterns.setdefault(np.packbits(keep[row]).tobytes(), []).append(row)
    for rows in patterns.values():
        kept_inputs = np.flatnonzero(keep[rows[0]])
        kept = np.append(kept_inputs, weight.shape[1]) if bias is not None else kept_inputs
        if len(kept) == 0:
            continue
        solved = _solve(gram, full[rows], kept)
        new_weight[np.ix_(rows, kept_inputs)] = solved[:, : len(kept_inputs)]
        if new_bias is not None:
            new_bias[rows] = solved[:, -1]
    out_bias = None if new_bias is None or bias is None else new_bias.astype(bias.dtype)
    return new_weight.astype(weight.dtype), out_bias


def channel_energy(means_sq: Mapping[str, np.ndarray], node: str, channels: int) -> np.ndarray:
    """E[x_c²] per input channel of `node`, summed over kernel positions."""
    per_input = means_sq[node]
    return per_input.reshape(channels, -1).sum(axis=1)


def _augment(weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    full = weight.astype(np.float64)
    if bias is None:
        return np.concatenate([full, np.zeros((full.shape[0], 1))], axis=1)
    return np.concatenate([full, np.asarray(bias, np.float64).reshape(-1, 1)], axis=1)


def _solve(gram: np.ndarray, full: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """[W b] G[:, K] (G[K, K] + λI)⁻¹ for the rows of `full`; returns (rows, |K|)."""
    system = gram[np.ix_(kept, kept)].copy()
    ridge = RIDGE * max(float(np.mean(np.diag(system))), 1e-12)
    system[np.diag_indices_from(system)] += ridge
    rhs = full @ gram[:, kept]
    return np.linalg.solve(system, rhs.T).T
