"""Feeds resized to a batch size, for `bench --batch` sweeps.

An input is batched when its first dim is symbolic or unknown (`batch`, `N`, `?`); inputs with
a fixed first dim or rank 0 (states, sample rates, flags) are passed through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnxsmith.runtime.data import Feed

from onnxsmith.errors import DataError, UsageError, name_list
from onnxsmith.signature import TensorSpec


def batch_inputs(specs: Sequence[TensorSpec]) -> list[str]:
    """Names of the inputs whose first dim is not fixed."""
    return [
        s.name for s in specs if s.shape and not (isinstance(s.shape[0], int) and s.shape[0] > 0)
    ]


def feed_rows(feed: Feed, names: Sequence[str]) -> int:
    """Samples in one feed: the first batched input's first dim (1 when nothing is batched)."""
    return int(feed[names[0]].shape[0]) if names else 1


def batch_feeds(
    feeds: Sequence[Feed], specs: Sequence[TensorSpec], batch: int, *, step: str = "bench"
) -> list[Feed]:
    """One feed of exactly `batch` rows per feed in `feeds`.

    Rows come from the feed itself and then the following feeds (wrapping around) whose
    batched inputs have the same per-row shape, so real samples are stacked; when there are
    fewer rows than `batch`, they repeat.

    Raises:
        UsageError: no input has a symbolic first dim.
        DataError: a feed has zero rows.
    """
    names = batch_inputs(specs)
    if not names:
        raise UsageError(
            f"{step}: --batch needs an input whose first dim is symbolic; the inputs are "
            f"{name_list(s.describe() for s in specs)} — drop --batch"
        )
    resized = []
    for i, feed in enumerate(feeds):
        row_shape = {name: feed[name].shape[1:] for name in names}
        if feed_rows(feed, names) == 0:
            raise DataError(f"{step}: feed {i} has 0 rows in {names[0]!r} — remove that feed")
        pool: list[Feed] = []
        rows = 0
        for other in [*feeds[i:], *feeds[:i]]:
            if rows >= batch:
                break
            if all(other[name].shape[1:] == row_shape[name] for name in names):
                pool.append(other)
                rows += feed_rows(other, names)
        stacked = {}
        for name in names:
            rows_of = np.concatenate([f[name] for f in pool], axis=0)
            stacked[name] = rows_of[np.arange(batch) % len(rows_of)]
        resized.append({**feed, **stacked})
    return resized
