"""Training-free compensation: refit weights by least squares on calibration statistics.

Removing inputs of a linear map y = W x + b loses W[:, removed] x[removed]. With the second
moments G = E[x̃ x̃ᵀ] of the augmented input x̃ = [x; 1] measured on calibration data, the
weights over the kept inputs that best reproduce the original output are

    [W' b'] = [W b] G[:, K] (G[K, K] + λ I)⁻¹          (K = kept inputs and the 1)

which is what this module solves per layer when the next layer's input channels are gone
(structured). When each row keeps its own inputs (unstructured), it applies the equivalent
column-wise Optimal Brain Surgeon updates of SparseGPT instead, which avoid one solve per row.
The ridge λ is a small fraction of the mean diagonal so that inputs that never fire on the
calibration set (dead ReLUs) do not make the system singular.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

RIDGE = 1e-3


def refit_columns(
    weight: np.ndarray,
    bias: np.ndarray | None,
    gram: np.ndarray,
    keep: np.ndarray,
    pair: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Least-squares weights over the kept input columns (structured compensation).

    Args:
        weight: (outputs, inputs) matrix.
        bias: (outputs,) or None; when None the refit has no constant term to adjust.
        gram: (inputs+1, inputs+1) second moments of [x; 1] in the original model.
        keep: boolean mask over inputs.
        pair: (cross, pruned gram) measured with the pruned model upstream (see
            `InputStats.cross`): the refit then also undoes the error of earlier layers.

    Returns:
        (outputs, kept inputs) weights and the adjusted bias (None when `bias` was None).
    """
    full = _augment(weight, bias)
    if pair is not None:
        cross, pruned_gram = pair
        kept = np.arange(pruned_gram.shape[0] - (0 if bias is not None else 1))
        solved = _solve(pruned_gram, full, kept, cross=cross)
    else:
        kept = np.flatnonzero(np.append(keep, bias is not None))
        solved = _solve(gram, full, kept)
    if bias is None:
        return solved, None
    return solved[:, :-1], solved[:, -1]


def refit_rows(weight: np.ndarray, gram: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Moves each pruned weight's contribution onto the row's later surviving inputs (OBS).

    The column-by-column Optimal Brain Surgeon update of SparseGPT with a fixed mask: with the
    Cholesky factor U of H⁻¹ (H = E[x xᵀ] + λI), pruning w[:, j] subtracts
    (w[:, j] / U[j, j]) · U[j, j:] from the row's remaining weights. O(outputs · inputs²),
    where solving every row's own least-squares system would cost O(outputs · inputs³).

    Args:
        weight: (outputs, inputs) matrix whose pruned entries are still present.
        gram: (inputs+1, inputs+1) second moments of [x; 1] (the bias is left as it is).
        keep: (outputs, inputs) boolean mask.

    Returns:
        Weights of the same shape and dtype, zero where `keep` is False.
    """
    inputs = weight.shape[1]
    hessian = gram[:inputs, :inputs].copy()
    dead = np.diag(hessian) <= 0
    hessian[dead, dead] = 1.0
    ridge = RIDGE * max(float(np.mean(np.diag(hessian))), 1e-12)
    hessian[np.diag_indices_from(hessian)] += ridge
    upper = np.linalg.cholesky(np.linalg.inv(hessian)).T
    work = weight.astype(np.float64)
    work[:, dead] = 0.0
    for j in range(inputs):
        pruned = ~keep[:, j]
        if not pruned.any():
            continue
        error = np.where(pruned, work[:, j] / upper[j, j], 0.0)
        work[:, j:] -= np.outer(error, upper[j, j:])
        work[pruned, j] = 0.0
    return np.where(keep, work, 0.0).astype(weight.dtype)


def channel_energy(means_sq: Mapping[str, np.ndarray], node: str, channels: int) -> np.ndarray:
    """E[x_c²] per input channel of `node`, summed over kernel positions."""
    per_input = means_sq[node]
    return per_input.reshape(channels, -1).sum(axis=1)


def _augment(weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    full = weight.astype(np.float64)
    if bias is None:
        return np.concatenate([full, np.zeros((full.shape[0], 1))], axis=1)
    return np.concatenate([full, np.asarray(bias, np.float64).reshape(-1, 1)], axis=1)


def _solve(
    gram: np.ndarray, full: np.ndarray, kept: np.ndarray, cross: np.ndarray | None = None
) -> np.ndarray:
    """[W b] C[:, K] (G[K, K] + λI)⁻¹ for the rows of `full` (C = G unless `cross` is given);
    returns (rows, |K|)."""
    system = gram[np.ix_(kept, kept)].copy()
    ridge = RIDGE * max(float(np.mean(np.diag(system))), 1e-12)
    system[np.diag_indices_from(system)] += ridge
    rhs = full @ (gram if cross is None else cross)[:, kept]
    return np.linalg.solve(system, rhs.T).T
