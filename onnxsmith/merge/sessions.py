"""A merged model's members as separate ORT sessions, combined in numpy.

This is what serving N models without `merge` looks like, and the reference the merged graph
is checked against: it reads the mode, weights and wiring from the merged model's metadata
and recomputes the combination from the members' own outputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.compare import OutputDiff, diff_outputs, merge_diffs
from onnxsmith.errors import UsageError
from onnxsmith.merge.combine import VOTE_SUFFIX
from onnxsmith.merge.ensemble import merge_record
from onnxsmith.merge.fit import StackFit, softmax
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.session import run as run_session

ModelLike = ir.Model | str | os.PathLike[str]
MERGED_LABEL = "the merged model"


class SeparateMembers:
    """Runs each member in its own session and combines their outputs as the merge would.

    `run(None, feed)` takes the merged model's feed and returns its outputs in its order, so
    it can stand in for the merged session (timing, parity).
    """

    def __init__(
        self, members: Sequence[ModelLike], merged: ir.Model, *, threads: int | None = None
    ) -> None:
        self.record = merge_record(merged)
        if len(members) != len(self.record["members"]):
            raise UsageError(
                f"merge: the merged model has {len(self.record['members'])} members, "
                f"{len(members)} were given"
            )
        self.sessions = [create_session(m, threads=threads) for m in members]
        self.labels = [
            f"member {i} ({m['file'] or m['tag']})" for i, m in enumerate(self.record["members"])
        ]
        self.names = [[o.name for o in s.get_outputs()] for s in self.sessions]
        self.stack = _stack_fit(self.record, merged)

    def run(self, names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        mode = self.record["mode"]
        if mode == "chain":
            outputs = self._chain(feed)
        elif mode == "cascade":
            outputs = self._cascade(feed)
        else:
            outputs = self._parallel(feed)
        return [outputs[n] for n in (names or self.record["outputs"])]

    def member_outputs(self, index: int, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Member `index`'s outputs (interface names) on a feed of the merged model."""
        spec = self.record["members"][index]
        own = {name: feed[source] for name, (tag, source) in spec["feeds"].items() if not tag}
        values = run_session(self.sessions[index], own, self.labels[index])
        by_name = dict(zip(self.names[index], values, strict=True))
        return {iface: by_name[orig] for orig, iface in spec["outputs"].items()}

    def scores(self, feed: Mapping[str, np.ndarray], name: str) -> list[np.ndarray]:
        """Every member's output `name`, softmaxed when the merge softmaxes."""
        scores = [self.member_outputs(i, feed)[name] for i in range(len(self.sessions))]
        if self.record.get("softmax"):
            scores = [softmax(s, self.record["axis"]) for s in scores]
        return scores

    def _parallel(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        mode, axis = self.record["mode"], self.record["axis"]
        outputs: dict[str, np.ndarray] = {}
        for name in self.record["outputs"]:
            if mode == "vote" and name.endswith(VOTE_SUFFIX):
                continue
            scores = self.scores(feed, name)
            dtype = scores[0].dtype
            if mode == "mean":
                outputs[name] = np.mean(scores, axis=0, dtype=dtype)
            elif mode == "max":
                outputs[name] = np.max(scores, axis=0)
            elif mode == "weighted":
                outputs[name] = _weighted(scores, self.record["weights"])
            elif mode == "stack":
                outputs[name] = np.asarray(self.stack.apply(scores), dtype)  # type: ignore[union-attr]
            else:  # vote
                outputs[name], outputs[name + VOTE_SUFFIX] = vote(scores, axis)
        return outputs

    def _chain(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        produced: dict[str, dict[str, np.ndarray]] = {}
        for index, spec in enumerate(self.record["members"]):
            own = {
                name: feed[source] if not tag else produced[tag][source]
                for name, (tag, source) in spec["feeds"].items()
            }
            values = run_session(self.sessions[index], own, self.labels[index])
            produced[spec["tag"]] = dict(zip(self.names[index], values, strict=True))
        outputs = {}
        for spec in self.record["members"]:  # later stages win, as in the merged graph
            for orig, iface in spec["outputs"].items():
                outputs[iface] = produced[spec["tag"]][orig]
        return outputs

    def _cascade(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        score = self.record["outputs"][0]
        out, stage = self._stage(0, dict(feed), score)
        return {score: out, self.record["outputs"][1]: stage}

    def _stage(self, k: int, feed: dict[str, np.ndarray], score: str) -> tuple[np.ndarray, ...]:
        out = self.member_outputs(k, feed)[score].copy()
        stage = np.full(out.shape[0], k, np.int64)
        if k == len(self.sessions) - 1:
            return out, stage
        axis = self.record["axis"]
        probs = softmax(out, axis) if self.record["softmax"][k] else out
        confidence = probs.max(axis=axis)
        if confidence.ndim > 1:
            confidence = confidence.min(axis=tuple(range(1, confidence.ndim)))
        low = confidence < np.asarray(self.record["threshold"], out.dtype)
        if low.any():
            sub = {name: value[low] for name, value in feed.items()}
            out[low], stage[low] = self._stage(k + 1, sub, score)
        return out, stage


def vote(scores: Sequence[np.ndarray], axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean scores and the majority class of the members' argmaxes (ties: higher mean score,
    then lower index)."""
    mean = np.mean(scores, axis=0, dtype=scores[0].dtype)
    classes = scores[0].shape[axis]
    votes = sum(
        np.moveaxis(np.eye(classes, dtype=np.int64)[np.argmax(s, axis=axis)], -1, axis)
        for s in scores
    )
    tied = votes == np.max(votes, axis=axis, keepdims=True)
    return mean, np.argmax(np.where(tied, mean, -np.inf), axis=axis)


def check_merge(
    members: Sequence[ModelLike],
    merged: ir.Model,
    feeds: Iterable[Feed],
    *,
    atol: float,
    rtol: float,
) -> list[OutputDiff]:
    """Worst difference per output of the merged graph against separate member sessions."""
    reference = SeparateMembers(members, merged)
    session = create_session(merged)
    names = [o.name for o in session.get_outputs()]
    worst: list[OutputDiff] = []
    for feed in feeds:
        expected = reference.run(names, feed)
        actual = run_session(session, feed, MERGED_LABEL)
        worst = merge_diffs(worst, diff_outputs(names, expected, actual, atol=atol, rtol=rtol))
    return worst


def _weighted(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    dtype = scores[0].dtype
    terms = [s * np.asarray(w, dtype) for s, w in zip(scores, weights, strict=True) if w != 0]
    return np.sum(terms, axis=0, dtype=dtype)


def _stack_fit(record: dict[str, Any], merged: ir.Model) -> StackFit | None:
    if record["mode"] != "stack":
        return None
    stack = record["stack"]
    if stack["method"] != "logistic":
        return StackFit("nnls", tuple(stack["weights"]))
    coef = merged.graph.initializers["merge/stack_coef"].const_value
    intercept = merged.graph.initializers["merge/stack_intercept"].const_value
    assert coef is not None and intercept is not None
    return StackFit(
        "logistic", tuple(stack["weights"]), coef=coef.numpy(), intercept=intercept.numpy()
    )
