"""Calibration statistics for pruning: second moments of each weighted node's input.

One ORT run per feed with the needed activations exposed as extra outputs; each activation is
turned into rows as the node contracts it (im2col for convolutions) and accumulated into
E[x̃ x̃ᵀ] with x̃ = [x; 1]. Rows are subsampled per feed so that large feature maps cost little.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import create_session, run

from onnxsmith.errors import DataError
from onnxsmith.passes.prune.linear import input_rows, linear_spec
from onnxsmith.passes.prune.refit import InputStats

# Inputs wider than this keep only their diagonal (a 4097² float64 matrix is 134 MB).
MAX_GRAM_WIDTH = 4096
ROWS_PER_FEED = 2048


def collect_input_stats(
    model: ir.Model,
    nodes: Sequence[str],
    feeds: Iterable[Feed],
    *,
    grams: bool = True,
    rows_per_feed: int = ROWS_PER_FEED,
    seed: int = 0,
) -> InputStats:
    """Second moments of the inputs of the named Conv/Gemm/MatMul nodes over `feeds`.

    With `grams=False` only the per-input mean squares are kept (enough for importance,
    not for compensation), which is much cheaper on wide convolutions.

    Raises:
        DataError: `feeds` is empty.
    """
    by_name = {n.name: n for n in model.graph if n.name in set(nodes)}
    specs = {name: linear_spec(node) for name, node in by_name.items()}
    wanted = {name: node for name, node in by_name.items() if specs[name] is not None}
    acts = sorted({node.inputs[0].name for node in wanted.values() if node.inputs[0] is not None})
    session = create_session(with_outputs(model, acts))
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(seed)
    sums: dict[str, np.ndarray] = {}
    squares: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    count = 0
    for feed in feeds:
        outputs = {**feed, **dict(zip(names, run(session, feed, "pruning calibration"), strict=True))}
        count += 1
        for name, node in wanted.items():
            spec = specs[name]
            assert spec is not None and node.inputs[0] is not None
            x = outputs[node.inputs[0].name].astype(np.float64)
            block = input_rows(node, spec, x, limit=rows_per_feed, rng=rng)
            if block is None:
                continue
            rows[name] = rows.get(name, 0) + len(block)
            squares[name] = squares.get(name, 0) + np.sum(block**2, axis=0)
            if grams and block.shape[1] < MAX_GRAM_WIDTH:
                augmented = np.concatenate([block, np.ones((len(block), 1))], axis=1)
                sums[name] = sums.get(name, 0) + augmented.T @ augmented
    if count == 0:
        raise DataError("prune: the calibration data holds no feeds — add .npz files")
    return InputStats(
        grams={name: total / rows[name] for name, total in sums.items()},
        means_sq={name: total / rows[name] for name, total in squares.items()},
        rows=rows,
        feeds=count,
    )


def with_outputs(model: ir.Model, names: Sequence[str]) -> ir.Model:
    """A copy of `model` that also returns the named intermediate values."""
    copy = ir.from_proto(ir.to_proto(model))
    values = {v.name: v for n in copy.graph for v in n.outputs}
    present = {v.name for v in copy.graph.outputs} | {v.name for v in copy.graph.inputs}
    for name in names:
        if name not in present:
            copy.graph.outputs.append(values[name])
    return copy
