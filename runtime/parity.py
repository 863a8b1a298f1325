"""Runs two models on the same feeds and compares their outputs."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import Session, create_session, run

from onnxsmith.compare import OutputDiff, diff_outputs, merge_diffs
from onnxsmith.errors import DataError, SessionError
from onnxsmith.signature import TensorSpec

# 2**26 float32 elements = 256 MB per input: far above any real model's input, far below a
# declared dim of 2**40 that would exhaust memory before ORT could say anything.
MAX_RANDOM_ELEMENTS = 1 << 26


def random_feed(
    specs: Sequence[TensorSpec], *, seed: int = 0, batch: int = 1, size: int = 32
) -> Feed:
    """A random feed: floats ~ N(0, 1), integers in {0, 1} (valid token ids and masks), bools.

    A dim that is not fixed gets `batch` on axis 0 and `size` elsewhere (sequence length, image
    side: 32 keeps stride-32 CNNs and transformers valid).

    Raises:
        DataError: an input would need more than `MAX_RANDOM_ELEMENTS` elements.
    """
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in specs:
        shape = tuple(
            d if isinstance(d, int) and d > 0 else (batch if axis == 0 else size)
            for axis, d in enumerate(spec.shape or ())
        )
        if math.prod(shape) > MAX_RANDOM_ELEMENTS:
            raise DataError(
                f"input {spec.name!r} declares shape {shape}, too large for a random feed "
                f"(over {MAX_RANDOM_ELEMENTS:,} elements) — pass real feeds (--data DIR)"
            )
        dtype = spec.dtype if spec.dtype is not None else np.dtype(np.float32)
        if dtype.kind == "f":
            feed[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feed[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feed[spec.name] = rng.integers(0, 2, shape).astype(dtype)
    return feed


def random_feeds(specs: Sequence[TensorSpec], seed: int = 0) -> list[Feed]:
    """Two feeds with different sizes on every dynamic axis, so dynamic shapes get exercised."""
    return [
        random_feed(specs, seed=seed, batch=1, size=32),
        random_feed(specs, seed=seed + 1, batch=2, size=64),
    ]


def input_session(model: ir.Model, step: str) -> Session:
    """The input model's session, made before any work, so a model ORT refuses stops `step` early.

    Made from the model as onnxsmith loaded it (ORT keeps its own copy, so passes may then
    change `model` in place): ORT sees the same graph and weights the passes start from.

    Raises:
        SessionError: one line naming the file, ORT's reason and the way out.
    """
    try:
        return create_session(model)
    except SessionError as e:
        raise SessionError(
            f"{step}: {e} — nothing written; fix the input, or pass --no-check to {step} it "
            "without the onnxruntime check"
        ) from e


def compare_models(
    reference: Session | ir.Model | str | os.PathLike[str],
    candidate: Session | ir.Model | str | os.PathLike[str],
    feeds: Iterable[Feed],
    *,
    atol: float,
    rtol: float,
    candidate_label: str = "the transformed model",
) -> list[OutputDiff]:
    """Worst per-output difference of `candidate` against `reference` over `feeds`.

    Raises:
        SessionError: a model does not load or run; `candidate_label` names the candidate (its
            file name would be the input's, since a transformed model remembers its source).
    """
    ref_session = reference if isinstance(reference, Session) else create_session(reference)
    cand_session = (
        candidate
        if isinstance(candidate, Session)
        else create_session(candidate, label=candidate_label)
    )
    names = [o.name for o in ref_session.get_outputs()]
    worst: list[OutputDiff] = []
    for feed in feeds:
        expected = run(ref_session, feed, "the input model")
        actual = run(cand_session, feed, candidate_label)
        worst = merge_diffs(worst, diff_outputs(names, expected, actual, atol=atol, rtol=rtol))
    return worst
