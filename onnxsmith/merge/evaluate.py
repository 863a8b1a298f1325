"""How a merged model does on a data dir: accuracy against its members, latency against N
separate sessions, and for cascades the escalation/accuracy/latency trade-off per threshold."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx_ir as ir

from onnxsmith.merge.cascade import set_threshold
from onnxsmith.merge.combine import VOTE_SUFFIX
from onnxsmith.merge.ensemble import merge_record
from onnxsmith.merge.sessions import ModelLike, SeparateMembers
from onnxsmith.runtime.data import DataDir, Feed
from onnxsmith.runtime.fidelity import AUTO, Score, plan_metrics
from onnxsmith.runtime.labels import check_label, read_labels
from onnxsmith.runtime.session import Session, create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved
from onnxsmith.signature import input_specs

STEP = "merge --eval"
_TIMING_FEEDS = 64
FIDELITY_FEEDS = 256  # feeds whose outputs (merged and separate) are kept for the fidelity


@dataclasses.dataclass(frozen=True)
class ThresholdPoint:
    """One cascade threshold: share of samples escalated, accuracy, mean latency per feed."""

    threshold: float
    escalated: float
    accuracy: float | None
    mean_ms: float


@dataclasses.dataclass(frozen=True)
class MergeEval:
    """Accuracy (None without labels) and latency of a merged model on a data dir.

    `separate_ms` is the same work as N sessions in a row plus numpy glue; `ratio` and its
    95 % interval are merged/separate median latency, measured interleaved. `fidelity` judges
    the merged model's outputs against that separate run's on the first `FIDELITY_FEEDS` feeds.
    For cascades, `member_ms` holds each member alone and `cascade` one point per threshold.
    """

    samples: int
    member_accuracy: tuple[float | None, ...]
    accuracy: float | None
    merged_ms: float
    separate_ms: float
    ratio: tuple[float, float, float]
    member_ms: tuple[float, ...] = ()
    cascade: tuple[ThresholdPoint, ...] = ()
    fidelity: Score | None = None  # merged vs the members run separately, in the task's terms
    metric_lines: tuple[str, ...] = ()  # which metric judged each output, and why

    def as_dict(self) -> dict[str, Any]:
        found = dataclasses.asdict(self)
        found["fidelity"] = None if self.fidelity is None else self.fidelity.as_dict()
        return found


class _MemberAlone:
    """One member's session behind the merged model's feed names (for interleaved timing)."""

    def __init__(self, members: SeparateMembers, index: int) -> None:
        self.members, self.index = members, index

    def run(self, names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list:
        return list(self.members.member_outputs(self.index, feed).values())


def evaluate_merge(
    members: Sequence[ModelLike],
    merged: ir.Model,
    data: str | Path,
    *,
    labels: str | Path | None = None,
    thresholds: Sequence[float] = (),
    seconds: float = 5.0,
    threads: int | None = 1,
    metric: str = AUTO,
) -> MergeEval:
    """Scores and times `merged` against its members on `data`.

    Args:
        members: the member models, in merge order.
        merged: the model `merge_models` returned for them.
        data: a data dir of feeds for the merged model.
        labels: class ids per feed; without them accuracies are None.
        thresholds: cascade thresholds to sweep (cascade models only).
        seconds: wall time for each interleaved timing run.
        threads: intra-op threads per session. One by default: ORT's worker threads spin after
            each run, so many sessions timed round-robin would slow each other down.
        metric: the fidelity metric: `auto`, a built-in name or `file.py:fn`.
    """
    record = merge_record(merged)
    separate = SeparateMembers(members, merged, threads=threads)
    feeds = DataDir(data, input_specs(merged), step=STEP)
    truth = read_labels(feeds, labels, step=STEP) if labels is not None else None
    score = record["outputs"][0]
    axis = record["axis"]
    session = create_session(merged, threads=threads)
    hits = np.zeros(len(members) + 1)
    total = 0
    reference: list[list[np.ndarray]] = []
    candidate: list[list[np.ndarray]] = []
    for i, (where, feed) in enumerate(feeds.items()):
        values = session.run(None, feed)
        if i < FIDELITY_FEEDS:
            candidate.append(values)
            reference.append(separate.run(None, feed))
        outputs = dict(zip(record["outputs"], values, strict=True))
        prediction = outputs.get(score + VOTE_SUFFIX, np.argmax(outputs[score], axis=axis))
        if truth is None:
            continue
        label = check_label(truth[i], prediction, f"{STEP}: {where}")
        total += label.size
        hits[-1] += np.sum(prediction == label)
        if record["mode"] != "chain":
            for k in range(len(members)):
                own = np.argmax(separate.member_outputs(k, feed)[score], axis=axis)
                hits[k] += np.sum(own == label)
    accuracy = [float(h / total) if total else None for h in hits]
    if record["mode"] == "chain":
        accuracy[:-1] = [None] * len(members)
    timing_feeds = list(itertools.islice(feeds, _TIMING_FEEDS))
    merged_ms, separate_ms = time_interleaved(
        [session, cast(Session, separate)], timing_feeds, seconds=seconds
    )
    plan = plan_metrics(record["outputs"], reference, metric, step=STEP)
    result = MergeEval(
        fidelity=plan.score(reference, candidate),
        metric_lines=tuple(plan.describe()),
        samples=len(feeds),
        member_accuracy=tuple(accuracy[:-1]),
        accuracy=accuracy[-1],
        merged_ms=float(np.median(merged_ms)),
        separate_ms=float(np.median(separate_ms)),
        ratio=ratio_ci95(merged_ms, separate_ms),
    )
    if record["mode"] != "cascade" or not thresholds:
        return result
    member_ms, points = _sweep(
        merged, separate, feeds, truth, thresholds, timing_feeds, seconds, threads
    )
    return dataclasses.replace(result, member_ms=member_ms, cascade=points)


def _sweep(
    merged: ir.Model,
    separate: SeparateMembers,
    feeds: DataDir,
    truth: list[np.ndarray] | None,
    thresholds: Sequence[float],
    timing_feeds: list[Feed],
    seconds: float,
    threads: int | None,
) -> tuple[tuple[float, ...], tuple[ThresholdPoint, ...]]:
    """Escalation and accuracy over all feeds, then latency of every threshold and of each
    member alone, interleaved in one run. Cascade latency depends on the sample, so the mean
    over rounds (which cycle through the feeds) is reported, not the median."""
    record = merge_record(merged)
    score, stage_name = record["outputs"]
    sessions = []
    rates = []
    for threshold in thresholds:
        variant = merged.clone()
        set_threshold(variant, threshold)
        session = create_session(variant, threads=threads)
        sessions.append(session)
        escalated = hits = total = 0
        for i, (where, feed) in enumerate(feeds.items()):
            out, stage = session.run([score, stage_name], feed)
            escalated += int(np.sum(stage > 0))
            total += stage.size
            if truth is not None:
                prediction = np.argmax(out, axis=record["axis"])
                hits += int(np.sum(prediction == check_label(truth[i], prediction, where)))
        rates.append((escalated / total, hits / total if truth is not None else None))
    alone = [cast(Session, _MemberAlone(separate, k)) for k in range(len(separate.sessions))]
    times = time_interleaved([*sessions, *alone], timing_feeds, seconds=seconds)
    means = [float(np.mean(t)) for t in times]
    points = tuple(
        ThresholdPoint(threshold, rate, accuracy, ms)
        for threshold, (rate, accuracy), ms in zip(thresholds, rates, means, strict=False)
    )
    return tuple(means[len(thresholds) :]), points
