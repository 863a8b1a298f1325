"""Fitting stacking weights: runs the members (and a teacher) over a data dir, fits in numpy.

The result is a frozen `StackFit` that `merge_models(..., mode="stack")` bakes into the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import DataError, UsageError, name_list
from onnxsmith.io import load_model
from onnxsmith.merge.ensemble import merge_models, merge_record
from onnxsmith.merge.fit import STACK_METHODS, StackFit, fit_logistic, nnls, softmax
from onnxsmith.merge.sessions import ModelLike, SeparateMembers
from onnxsmith.runtime.data import DataDir, Feed
from onnxsmith.runtime.labels import check_label, read_labels
from onnxsmith.runtime.session import create_session, run
from onnxsmith.signature import input_specs

STEP = "merge --fit"


def fit_stack(
    models: Sequence[ir.Model],
    data: str | Path,
    *,
    method: str = "nnls",
    labels: str | Path | None = None,
    teacher: ModelLike | None = None,
    output: str | None = None,
    softmax_scores: bool = False,
    mapping: Sequence[str] = (),
    axis: int = -1,
) -> StackFit:
    """Fits combination weights on the members' outputs over `data`.

    Args:
        models: the members, as they will be merged.
        data: a data dir of feeds for the merged model's inputs.
        method: "nnls" (non-negative per-member weights minimizing the squared error to the
            targets) or "logistic" (multinomial logistic regression on the concatenated member
            scores, class axis last).
        labels: class ids per feed (see `runtime.labels`); targets are their one-hot vectors.
        teacher: a model whose outputs (softmaxed like the members' when `softmax_scores`) are
            the targets instead of labels.
        output, mapping, axis: as for `merge_models`.
        softmax_scores: fit on softmax probabilities of the member outputs (`--softmax`).
    """
    if method not in STACK_METHODS:
        raise UsageError(f"merge: unknown --stacker {method!r} — choose from nnls, logistic")
    if (labels is None) == (teacher is None):
        raise UsageError("merge: --fit needs either --labels DIR or --teacher MODEL (one of them)")
    plan = merge_models(models, "mean", output=output, softmax=softmax_scores, mapping=mapping)
    names = merge_record(plan)["outputs"]
    if len(names) != 1:
        raise UsageError(
            f"merge: fitting needs one score output, the members have {name_list(names)} — "
            "pick one with --output NAME"
        )
    members = SeparateMembers(models, plan)
    feeds = DataDir(data, input_specs(plan), step=STEP)
    rows: list[list[np.ndarray]] = [[] for _ in models]
    targets: list[np.ndarray] = []
    label_list = read_labels(feeds, labels, step=STEP) if labels is not None else None
    teacher_run = _teacher(teacher, names[0], softmax_scores, axis) if teacher else None
    for i, (where, feed) in enumerate(feeds.items()):
        scores = [_rows(s, axis) for s in members.scores(feed, names[0])]
        for member_rows, s in zip(rows, scores, strict=True):
            member_rows.append(s)
        if label_list is not None:
            ids = check_label(label_list[i], scores[0][:, 0], f"{STEP}: {where}")
            targets.append(np.eye(scores[0].shape[1])[ids.astype(np.int64)])
        else:
            assert teacher_run is not None
            targets.append(_rows(teacher_run(feed), axis))
    x = [np.concatenate(r) for r in rows]
    t = np.concatenate(targets)
    if method == "logistic" and teacher is not None:
        _check_probabilities(t)
    fit = _solve(method, x, t)
    if label_list is None:
        return fit
    truth = np.argmax(t, axis=1)
    member_accuracy = tuple(float(np.mean(np.argmax(s, 1) == truth)) for s in x)
    accuracy = float(np.mean(np.argmax(fit.apply(x), 1) == truth))
    return StackFit(
        fit.method,
        fit.weights,
        coef=fit.coef,
        intercept=fit.intercept,
        samples=fit.samples,
        member_accuracy=member_accuracy,
        accuracy=accuracy,
    )


def _solve(method: str, x: list[np.ndarray], t: np.ndarray) -> StackFit:
    if method == "nnls":
        weights = nnls(np.stack([s.ravel() for s in x], axis=1), t.ravel())
        if not weights.any():
            raise DataError(
                f"{STEP}: least squares gave every member weight 0 (their scores do not "
                "correlate with the targets) — check the labels, or pass --softmax for logits"
            )
        return StackFit("nnls", tuple(float(w) for w in weights), samples=len(t))
    coef, intercept = fit_logistic(np.concatenate(x, axis=1), t)
    classes = t.shape[1]
    share = np.array([np.abs(coef[i * classes : (i + 1) * classes]).sum() for i in range(len(x))])
    return StackFit(
        "logistic",
        tuple(float(s) for s in share / share.sum()),
        coef=coef,
        intercept=intercept,
        samples=len(t),
    )


def _rows(scores: np.ndarray, axis: int) -> np.ndarray:
    """[..., classes at `axis`, ...] -> [positions, classes]."""
    moved = np.moveaxis(scores, axis, -1)
    return moved.reshape(-1, moved.shape[-1]).astype(np.float64)


def _teacher(
    teacher: ModelLike, name: str, use_softmax: bool, axis: int
) -> Callable[[Feed], np.ndarray]:
    model = teacher if isinstance(teacher, ir.Model) else load_model(teacher)
    session = create_session(model)
    wanted = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    chosen = name if name in outputs else (outputs[0] if len(outputs) == 1 else None)
    if chosen is None:
        raise UsageError(
            f"merge: the teacher has no output {name!r} and several others "
            f"({name_list(outputs)}) — give it a single output"
        )

    def targets(feed: Feed) -> np.ndarray:
        missing = [n for n in wanted if n not in feed]
        if missing:
            raise DataError(
                f"{STEP}: the teacher needs input(s) {name_list(missing)}, which the merged "
                f"model does not take (it takes {name_list(feed)}) — export the teacher with "
                "the members' input names"
            )
        out = run(session, {n: feed[n] for n in wanted}, "the teacher")[outputs.index(chosen)]
        return softmax(out, axis) if use_softmax else out

    return targets


def _check_probabilities(t: np.ndarray) -> None:
    if t.min() < 0 or t.max() > 1 or not np.allclose(t.sum(axis=1), 1, atol=1e-3):
        raise DataError(
            f"{STEP}: logistic stacking against a teacher needs probabilities, the teacher's "
            "outputs are not — pass --softmax so they are softmaxed"
        )
