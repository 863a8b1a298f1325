"""Unstructured pruning: zero the least important weights of Conv, Gemm and MatMul layers.

Weights are found wherever they live: initializers or Constant nodes (PaddlePaddle and old
exporters keep them there, and pruning tools that only look at initializers silently skip
them). Zeros shrink the file after compression; dense kernels run no faster, which the
`prune` report says with a measured ratio.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
from onnxsmith.passes.prune.refit import refit_rows

from onnxsmith.calibration import InputStats
from onnxsmith.errors import PassError
from onnxsmith.linear import (
    DEFAULT_DOMAINS,
    constant,
    from_matrix,
    linear_spec,
    to_matrix,
)
from onnxsmith.pipeline import StatsResult

CRITERIA = ("l1", "l2", "taylor", "activation")
SCOPES = ("global", "layer")


@dataclasses.dataclass(frozen=True)
class _Weight:
    """One weight tensor to prune and where it is stored."""

    node: ir.Node  # the first weighted node that reads it
    value: ir.Value
    holder: ir.Node | None  # the Constant node that holds it, or None for an initializer
    array: np.ndarray


class PruneMagnitudePass(ir.passes.InPlacePass):
    """Zeros a fraction `sparsity` of the weights of the chosen layers.

    Scores: `l1`/`l2` rank by |w| (the same order for single weights); with `stats`,
    `activation` ranks by |w|·‖x_j‖ (Wanda) and `taylor` by w²·E[x_j²] (the second-order
    saliency of Optimal Brain Damage on the layer's output; same order within a layer,
    different across layers with `scope="global"`). `scope="global"` (the default, as
    `torch.nn.utils.prune.global_unstructured`) ranks all weights together, so small
    sensitive layers (a first conv, a classifier) lose less; `"layer"` prunes every layer to
    `sparsity`. With `refit=True` and `stats`, the
    surviving weights of each output row are refit by least squares so the layer's output
    on calibration data changes as little as possible.
    """

    def __init__(
        self,
        sparsity: float,
        *,
        ops: tuple[str, ...] = ("Conv", "Gemm", "MatMul"),
        exclude: tuple[str, ...] = (),
        scope: str = "global",
        criterion: str = "l1",
        stats: InputStats | None = None,
        refit: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= sparsity < 1.0:
            raise PassError(f"prune: sparsity {sparsity} is outside [0, 1) — pass e.g. 0.5")
        if scope not in SCOPES or criterion not in CRITERIA:
            raise PassError(f"prune: unknown scope {scope!r} or criterion {criterion!r}")
        if criterion in ("taylor", "activation") and stats is None:
            raise PassError(f"prune: criterion {criterion!r} needs calibration statistics")
        self.sparsity = sparsity
        self.ops = ops
        self.exclude = exclude
        self.scope = scope
        self.criterion = criterion
        self.stats = stats
        self.refit = refit and stats is not None

    def call(self, model: ir.Model) -> StatsResult:
        weights = self._weights(model)
        if not weights:
            raise PassError(
                f"prune: no {'/'.join(self.ops)} layer with a constant weight to prune — check "
                "--ops and --exclude"
            )
        scores = [self._score(w) for w in weights]
        masks = self._masks(scores)
        new_arrays = [self._pruned(w, m) for w, m in zip(weights, masks, strict=True)]
        changed = [
            (w, a)
            for w, a in zip(weights, new_arrays, strict=True)
            if not np.array_equal(w.array, a)
        ]
        for weight, array in changed:
            tensor = ir.tensor(array, name=weight.value.name)
            if weight.holder is None:
                weight.value.const_value = tensor
            else:
                weight.holder.attributes["value"] = ir.AttrTensor("value", tensor)
        layers = {
            (w.node.name or w.value.name or ""): float(np.mean(a == 0))
            for w, a in zip(weights, new_arrays, strict=True)
        }
        zeros = sum(int(np.sum(a == 0)) for a in new_arrays)
        total = sum(a.size for a in new_arrays)
        return StatsResult(
            model,
            modified=bool(changed),
            stats={"layers": len(weights), "sparsity": zeros / total, "per_layer": layers},
        )

    def _weights(self, model: ir.Model) -> list[_Weight]:
        found: dict[ir.Value, _Weight] = {}
        for node in model.graph:
            if node.domain not in DEFAULT_DOMAINS or node.op_type not in self.ops:
                continue
            if node.name in self.exclude or len(node.inputs) < 2 or node.inputs[1] is None:
                continue
            value = node.inputs[1]
            array = constant(value)
            if array is None or array.dtype.kind != "f" or array.ndim < 2 or value in found:
                continue
            holder = value.producer() if value.const_value is None else None
            found[value] = _Weight(node, value, holder, array)
        return list(found.values())

    def _score(self, weight: _Weight) -> np.ndarray:
        magnitude = np.abs(weight.array.astype(np.float64))
        if self.criterion in ("l1", "l2"):
            return magnitude
        energy = self._input_energy(weight)
        if energy is None:
            return magnitude
        if self.criterion == "activation":
            return magnitude * np.sqrt(energy)
        return magnitude**2 * energy

    def _input_energy(self, weight: _Weight) -> np.ndarray | None:
        """E[x_j²] broadcast to the weight's shape, or None when the layer was not measured."""
        assert self.stats is not None
        means_sq = self.stats.means_sq.get(weight.node.name or "")
        spec = linear_spec(weight.node)
        if means_sq is None or spec is None:
            return None
        shape = np.moveaxis(weight.array, (spec.out_axis, spec.in_axis), (0, 1)).shape
        if int(np.prod(shape[1:])) != means_sq.size:
            return None
        tiled = np.broadcast_to(means_sq.reshape(1, *shape[1:]), shape)
        return np.moveaxis(tiled, (0, 1), (spec.out_axis, spec.in_axis))

    def _masks(self, scores: list[np.ndarray]) -> list[np.ndarray]:
        """True where a weight survives; exactly round(sparsity * n) zeros per layer or overall."""
        if self.scope == "layer":
            return [_keep_largest(s, s.size - round(self.sparsity * s.size)) for s in scores]
        flat = np.concatenate([s.ravel() for s in scores])
        keep = _keep_largest(flat, flat.size - round(self.sparsity * flat.size))
        masks, start = [], 0
        for s in scores:
            masks.append(keep[start : start + s.size].reshape(s.shape))
            start += s.size
        return masks

    def _pruned(self, weight: _Weight, mask: np.ndarray) -> np.ndarray:
        pruned = np.where(mask, weight.array, 0).astype(weight.array.dtype)
        spec = linear_spec(weight.node)
        gram = None if self.stats is None else self.stats.grams.get(weight.node.name or "")
        if not self.refit or spec is None or gram is None or mask.all():
            return pruned
        matrix = to_matrix(weight.array, spec)
        if gram.shape[0] != matrix.shape[1] + 1:
            return pruned
        refit = refit_rows(matrix, gram, to_matrix(mask, spec))
        return np.where(mask, from_matrix(refit, spec, weight.array), 0).astype(pruned.dtype)


def _keep_largest(scores: np.ndarray, count: int) -> np.ndarray:
    """Mask of the `count` largest scores (ties broken by position, so the result is stable)."""
    flat = scores.ravel()
    keep = np.zeros(flat.size, dtype=bool)
    if count > 0:
        order = np.argsort(-flat, kind="stable")
        keep[order[:count]] = True
    return keep.reshape(scores.shape)
