"""Calibration statistics for pruning: second moments of each weighted node's input.

One ORT run per feed with the needed activations exposed as extra outputs; each activation is
turned into rows as the node contracts it (im2col for convolutions) and accumulated into
E[x̃ x̃ᵀ] with x̃ = [x; 1]. Rows are subsampled per feed so that large feature maps cost little.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import DataError
from onnxsmith.passes.prune.linear import input_rows, linear_spec
from onnxsmith.passes.prune.refit import InputStats
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import create_session, run

# Inputs wider than this keep only their diagonal (a 4097² float64 matrix is 134 MB).
MAX_GRAM_WIDTH = 4096
ROWS_PER_FEED = 2048
# Rows per node over all feeds. Eight 416×416 feeds gave 16 Ki rows per node, and the Gram
# products of a 5 M-parameter detector cost ~1 TFLOP (most of a structured prune); 8 Ki rows is
# still ≥ 4× the widest input (3×3×192) that gets a full matrix here.
MAX_ROWS = 8192


def rows_per_feed(feeds: int) -> int:
    """Rows drawn from each feed: `ROWS_PER_FEED`, fewer when many feeds would pass `MAX_ROWS`."""
    return min(ROWS_PER_FEED, -(-MAX_ROWS // max(feeds, 1)))


def collect_input_stats(
    model: ir.Model,
    nodes: Sequence[str],
    feeds: Iterable[Feed],
    *,
    grams: bool = True,
    rows_per_feed: int = ROWS_PER_FEED,
    seed: int = 0,
    on_feed: Callable[[], None] = lambda: None,
) -> InputStats:
    """Second moments of the inputs of the named Conv/Gemm/MatMul nodes over `feeds`.

    With `grams=False` only the per-input mean squares are kept (enough for importance,
    not for compensation), which is much cheaper on wide convolutions. `on_feed` is called
    after each feed (progress).

    Raises:
        DataError: `feeds` is empty.
    """
    by_name = {n.name: n for n in model.graph if n.name in set(nodes)}
    specs = {name: linear_spec(node) for name, node in by_name.items()}
    wanted = {name: node for name, node in by_name.items() if specs[name] is not None}
    acts = sorted({n.inputs[0].name or "" for n in wanted.values() if n.inputs[0] is not None})
    session = create_session(with_outputs(model, acts))
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(seed)
    sums: dict[str, np.ndarray] = {}
    squares: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    count = 0
    for feed in feeds:
        outputs = {
            **feed,
            **dict(zip(names, run(session, feed, "pruning calibration"), strict=True)),
        }
        count += 1
        for name, node in wanted.items():
            spec = specs[name]
            assert spec is not None and node.inputs[0] is not None
            x = outputs[node.inputs[0].name].astype(np.float32)
            block = input_rows(node, spec, x, limit=rows_per_feed, rng=rng)
            if block is None:
                continue
            rows[name] = rows.get(name, 0) + len(block)
            squares[name] = squares.get(name, 0) + np.sum(block.astype(np.float64) ** 2, axis=0)
            if grams and block.shape[1] < MAX_GRAM_WIDTH:
                # float32 products of one feed's rows, summed across feeds in float64
                augmented = np.concatenate([block, np.ones((len(block), 1), np.float32)], axis=1)
                sums[name] = sums.get(name, 0) + (augmented.T @ augmented).astype(np.float64)
        on_feed()
    if count == 0:
        raise DataError("prune: the calibration data holds no feeds — add .npz files")
    return InputStats(
        grams={name: total / rows[name] for name, total in sums.items()},
        means_sq={name: total / rows[name] for name, total in squares.items()},
        rows=rows,
        feeds=count,
    )


def with_outputs(model: ir.Model, names: Sequence[str]) -> ir.Model:
    """A copy of `model` (sharing its weights) that also returns the named intermediate values."""
    copy = model.clone()
    values = {v.name: v for n in copy.graph for v in n.outputs}
    present = {v.name for v in copy.graph.outputs} | {v.name for v in copy.graph.inputs}
    for name in names:
        if name not in present:
            copy.graph.outputs.append(values[name])
    return copy


def collect_pair_stats(
    original: ir.Model,
    pruned: ir.Model,
    nodes: Sequence[str],
    feeds: Iterable[Feed],
    *,
    rows_per_feed: int = ROWS_PER_FEED,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each named node: (E[x̃ x̃'ᵀ], E[x̃' x̃'ᵀ]) between its input rows in `original` (x̃)
    and in `pruned` (x̃', fewer channels), at the same positions of the same feeds.

    Both models must name the node and its input alike (pruning keeps names).
    """
    wanted = [n for n in original.graph if n.name in set(nodes)]
    pruned_nodes = {n.name: n for n in pruned.graph}
    acts = sorted({n.inputs[0].name or "" for n in wanted if n.inputs[0] is not None})
    sessions = [create_session(with_outputs(m, acts)) for m in (original, pruned)]
    cross: dict[str, np.ndarray] = {}
    grams: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    for index, feed in enumerate(feeds):
        values = []
        for session, label in zip(sessions, ("original", "pruned"), strict=True):
            names = [o.name for o in session.get_outputs()]
            values.append({**feed, **dict(zip(names, run(session, feed, label), strict=True))})
        for node in wanted:
            twin = pruned_nodes.get(node.name)
            spec, twin_spec = linear_spec(node), None if twin is None else linear_spec(twin)
            if spec is None or twin is None or twin_spec is None or node.inputs[0] is None:
                continue
            name = node.inputs[0].name or ""
            # the same seed draws the same positions from both activations
            x = input_rows(node, spec, values[0][name], limit=rows_per_feed,
                           rng=np.random.default_rng((seed, index)))  # fmt: skip
            y = input_rows(twin, twin_spec, values[1][name], limit=rows_per_feed,
                           rng=np.random.default_rng((seed, index)))  # fmt: skip
            if x is None or y is None or x.shape[1] >= MAX_GRAM_WIDTH:
                continue
            ones = np.ones((len(x), 1), np.float32)
            xa = np.concatenate([x.astype(np.float32), ones], axis=1)
            ya = np.concatenate([y.astype(np.float32), ones], axis=1)
            key = node.name or ""
            cross[key] = cross.get(key, 0) + (xa.T @ ya).astype(np.float64)
            grams[key] = grams.get(key, 0) + (ya.T @ ya).astype(np.float64)
            rows[key] = rows.get(key, 0) + len(x)
    return {key: (cross[key] / rows[key], grams[key] / rows[key]) for key in cross}
