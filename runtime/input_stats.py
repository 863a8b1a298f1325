"""Second moments of each weighted node's input on calibration data (pruning's least-squares
refits, quantization's weight rounding).

One ORT run per feed with the needed activations exposed as extra outputs; each activation is
turned into rows as the node contracts it (im2col for convolutions) and accumulated into
E[x̃ x̃ᵀ] with x̃ = [x; 1]. Rows are subsampled per feed so that large feature maps cost little.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import Session, create_session, run

from onnxsmith.calibration import InputStats, WeightHessians
from onnxsmith.errors import DataError
from onnxsmith.linear import contraction_spec, input_rows, linear_spec

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
    linear = [n for n in model.graph if n.name in set(nodes) and linear_spec(n) is not None]
    wanted, session = _input_session(model, [n.name or "" for n in linear])
    specs = {node.name: linear_spec(node) for node in wanted}
    rng = np.random.default_rng(seed)
    sums: dict[str, np.ndarray] = {}
    squares: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    count = 0
    for feed in feeds:
        outputs = _activations(session, feed, "calibration statistics")
        count += 1
        for node in wanted:
            name, spec = node.name or "", specs[node.name]
            assert spec is not None and node.inputs[0] is not None
            x = outputs[node.inputs[0].name or ""].astype(np.float32)
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
        raise DataError("calibration statistics: the data holds no feeds — add .npz files")
    return InputStats(
        grams={name: total / rows[name] for name, total in sums.items()},
        means_sq={name: total / rows[name] for name, total in squares.items()},
        rows=rows,
        feeds=count,
    )


def collect_weight_hessians(
    model: ir.Model,
    nodes: Sequence[str],
    feeds: Iterable[Feed],
    *,
    rows_per_feed: int = ROWS_PER_FEED,
    seed: int = 0,
) -> WeightHessians:
    """E[x xᵀ] of each named Conv/Gemm/MatMul's input rows, per group (see `WeightHessians`).

    Nodes whose rows are wider than `MAX_GRAM_WIDTH` per group, or that `input_rows` does not
    cover, are left out.

    Raises:
        DataError: `feeds` is empty.
    """
    wanted, session = _input_session(model, nodes)
    rng = np.random.default_rng(seed)
    sums: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    count = 0
    for feed in feeds:
        values = _activations(session, feed, "weight rounding statistics")
        count += 1
        for node in wanted:
            name, spec, x = node.name or "", contraction_spec(node), node.inputs[0]
            if spec is None or x is None:
                continue
            block = input_rows(node, spec, values[x.name or ""], limit=rows_per_feed, rng=rng)
            groups = node.attributes.get_int("group", 1) if node.op_type == "Conv" else 1
            if block is None or block.shape[1] // groups >= MAX_GRAM_WIDTH:
                continue
            split = block.astype(np.float32).reshape(len(block), groups, -1)
            sums[name] = sums.get(name, 0) + np.einsum("ngi,ngj->gij", split, split).astype(
                np.float64
            )
            rows[name] = rows.get(name, 0) + len(block)
    if count == 0:
        raise DataError("weight rounding statistics: the data holds no feeds — add .npz files")
    return WeightHessians({n: total / rows[n] for n, total in sums.items()}, rows)


def with_outputs(model: ir.Model, names: Sequence[str]) -> ir.Model:
    """A copy of `model` (sharing its weights) that also returns the named intermediate values."""
    copy = model.clone()
    values = {v.name: v for n in copy.graph for v in n.outputs}
    present = {v.name for v in copy.graph.outputs} | {v.name for v in copy.graph.inputs}
    for name in names:
        if name not in present:
            copy.graph.outputs.append(values[name])
    return copy


def upstream_of(model: ir.Model, names: Sequence[str]) -> ir.Model | None:
    """A copy of `model` (sharing its weights) that computes only the named values.

    Only the nodes they depend on stay, so measuring a layer near the input costs a fraction
    of a full run (the sequential refit measures every level of a deep model this way). None
    when every name is a graph input: nothing to run.
    """
    copy = model.clone()
    values = {v.name: v for n in copy.graph for v in n.outputs}
    wanted = [values[name] for name in dict.fromkeys(names) if name in values]
    if not wanted:
        return None
    copy.graph.outputs.clear()
    copy.graph.outputs.extend(wanted)
    RemoveUnusedNodesPass()(copy)
    return copy


def _input_session(model: ir.Model, nodes: Sequence[str]) -> tuple[list[ir.Node], Session | None]:
    """The named nodes, and a session computing their first inputs (None: all are inputs)."""
    wanted = [n for n in model.graph if n.name in set(nodes)]
    acts = sorted({n.inputs[0].name or "" for n in wanted if n.inputs[0] is not None})
    upstream = upstream_of(model, acts)
    return wanted, None if upstream is None else create_session(upstream)


def _activations(session: Session | None, feed: Feed, label: str) -> Feed:
    """The feed and every output of `session` on it, by name."""
    if session is None:
        return feed
    names = [o.name for o in session.get_outputs()]
    return {**feed, **dict(zip(names, run(session, feed, label), strict=True))}


Rows = dict[str, list[np.ndarray | None]]


def sample_rows(
    model: ir.Model,
    nodes: Sequence[str],
    feeds: Sequence[Feed],
    *,
    rows_per_feed: int = ROWS_PER_FEED,
    seed: int = 0,
    label: str = "calibration statistics",
) -> Rows:
    """Per named node, the input rows it contracts (float32, plus a ones column) on each feed.

    Positions are drawn with a generator seeded by (seed, feed index), so the same call on a
    pruned twin of `model` (same names, fewer channels) draws the same positions; None where a
    node is not a plain linear layer or its input is too wide for a full matrix.
    """
    wanted, session = _input_session(model, nodes)
    rows: Rows = {n.name or "": [] for n in wanted}
    for index, feed in enumerate(feeds):
        values = _activations(session, feed, label)
        for node in wanted:
            spec, x, block = linear_spec(node), node.inputs[0], None
            if spec is not None and x is not None:
                rng = np.random.default_rng((seed, index))
                block = input_rows(node, spec, values[x.name or ""], limit=rows_per_feed, rng=rng)
            if block is not None and block.shape[1] < MAX_GRAM_WIDTH:
                ones = np.ones((len(block), 1), np.float32)
                block = np.concatenate([block.astype(np.float32), ones], axis=1)
            else:
                block = None
            rows[node.name or ""].append(block)
    return rows


def pair_stats(original: Rows, pruned: Rows) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each node in both: (E[x̃ x̃'ᵀ], E[x̃' x̃'ᵀ]) between its input rows in the original
    (x̃) and in the pruned model (x̃', fewer channels), drawn at the same positions."""
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, ys in pruned.items():
        blocks = [
            (x, y)
            for x, y in zip(original.get(key, []), ys, strict=False)
            if x is not None and y is not None
        ]
        if not blocks:
            continue
        count = sum(len(x) for x, _ in blocks)
        cross = np.add.reduce([(x.T @ y).astype(np.float64) for x, y in blocks])
        gram = np.add.reduce([(y.T @ y).astype(np.float64) for _, y in blocks])
        found[key] = (cross / count, gram / count)
    return found
