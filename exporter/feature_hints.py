"""Feature hints for `prune --recover`: the pruned student also learns the original's features.

A structurally pruned model keeps a subset of each layer's channels, so its convolutions'
outputs still have counterparts in the original: the same tensor (by name), restricted to the
channels pruning kept. Matching them (FitNets' hints, with no adapter layer) gives every layer
a target, where the output loss alone reaches the early layers through the whole network.

- Which tensors: Conv outputs present in both graphs with the same spatial size, deepest
  first, up to `MAX_FLOATS_PER_SAMPLE` per sample and `MAX_BYTES` for the whole data set.
- Which channels: each student channel is paired with the original channel it correlates
  with best on a few samples (pruning removes channels without reordering, and the refit
  leaves the kept ones close to their originals, so the pairing is unambiguous in practice;
  the mean correlation is reported).
- The loss: each tensor's mean squared difference over the mean square of its target (so
  every layer counts alike whatever its scale), averaged over tensors.

Measured (bench/RESULTS.md): NudeNet YOLOv8n F1 0.708 → 0.792 on a fixed plan in 300 s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir
import torch
from onnxsmith.runtime.input_stats import with_outputs
from onnxsmith.runtime.predict import stacked_feeds
from onnxsmith.runtime.session import create_session, run

HINT_OPS = ("Conv",)
MAX_FLOATS_PER_SAMPLE = 500_000  # hint values stored per training sample (float16)
MAX_BYTES = 512 << 20  # hint values stored for the whole training set
PROBE_SAMPLES = 16  # samples the channel pairing is computed on
CHUNK = 16  # samples per run when the model takes any batch size (all Conv outputs come back)


@dataclasses.dataclass(frozen=True)
class Hints:
    """The hint tensors, the original's channel for each student channel, the targets.

    `targets[name]` holds the original's values of tensor `name` at `channels[name]`, one row
    per sample of the data they were computed on (float16).
    """

    channels: Mapping[str, np.ndarray]
    targets: Mapping[str, np.ndarray]
    correlation: float  # mean over the student's channels of the best pairing's correlation

    @property
    def names(self) -> list[str]:
        return list(self.channels)

    def describe(self) -> str:
        floats = sum(int(np.prod(t.shape[1:])) for t in self.targets.values())
        return (
            f"{len(self.channels)} Conv outputs matched on the channels pruning kept "
            f"({floats:,} values per sample, mean channel correlation {self.correlation:.2f})"
        )


def feature_hints(
    original: ir.Model, pruned: ir.Model, inputs: Mapping[str, np.ndarray]
) -> Hints | None:
    """The hints of `pruned` against `original` over the stacked `inputs` (None: no Conv
    output of the pruned graph has a counterpart in the original)."""
    samples = len(next(iter(inputs.values())))
    candidates = _shared_conv_outputs(original, pruned)
    if not candidates or samples == 0:
        return None
    probe = {n: np.asarray(a[:PROBE_SAMPLES]) for n, a in inputs.items()}
    student = _values(pruned, candidates, probe)
    teacher = _values(original, candidates, probe)
    budget = min(MAX_FLOATS_PER_SAMPLE, MAX_BYTES // (2 * samples))
    channels: dict[str, np.ndarray] = {}
    correlations: list[np.ndarray] = []
    for name in reversed(candidates):  # deepest first: closest to the task
        ours, theirs = student[name], teacher[name]
        size = int(np.prod(ours.shape[1:]))
        if ours.ndim < 3 or ours.shape[2:] != theirs.shape[2:] or size > budget:
            continue
        budget -= size
        pairs = _correlations(ours, theirs)
        channels[name] = pairs.argmax(axis=1)
        correlations.append(pairs.max(axis=1))
    if not channels:
        return None
    return Hints(
        channels=channels,
        targets=_targets(original, channels, inputs),
        correlation=float(np.concatenate(correlations).mean()),
    )


def hint_loss(values: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over tensors of each one's squared error relative to its target's mean square."""
    terms = [
        (value.float() - target).square().mean() / target.square().mean().clamp_min(1e-6)
        for value, target in zip(values, targets, strict=True)
    ]
    return torch.stack(terms).mean()


def _shared_conv_outputs(original: ir.Model, pruned: ir.Model) -> list[str]:
    """First outputs of the pruned graph's Conv nodes that the original also computes, in
    topological order."""
    theirs = {v.name for node in original.graph for v in node.outputs if v.name}
    return [
        name
        for node in pruned.graph
        if node.op_type in HINT_OPS and (name := node.outputs[0].name) in theirs and name
    ]


def _values(
    model: ir.Model, names: Sequence[str], inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The named intermediate values of `model` for the stacked `inputs`."""
    session = create_session(with_outputs(model, names))
    outputs = [o.name for o in session.get_outputs()]
    wanted = set(names)
    collected: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for feed in stacked_feeds(session, inputs, CHUNK):
        for name, value in zip(outputs, run(session, feed, "feature hints"), strict=True):
            if name in wanted:
                collected[name].append(value)
    return {name: np.concatenate(parts) for name, parts in collected.items()}


def _targets(
    original: ir.Model, channels: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The original's values at the paired channels for every sample, as float16."""
    session = create_session(with_outputs(original, list(channels)))
    outputs = [o.name for o in session.get_outputs()]
    samples = len(next(iter(inputs.values())))
    targets: dict[str, np.ndarray] = {}
    start = 0
    for feed in stacked_feeds(session, inputs, CHUNK):
        values = dict(zip(outputs, run(session, feed, "feature hints"), strict=True))
        for name, index in channels.items():
            part = values[name][:, index].astype(np.float16)
            if name not in targets:
                targets[name] = np.empty((samples, *part.shape[1:]), np.float16)
            targets[name][start : start + len(part)] = part
        start += len(next(iter(feed.values())))
    return targets


def _correlations(student: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Pearson correlation of every student channel with every teacher channel, over the
    samples and positions."""

    def standardized(x: np.ndarray) -> np.ndarray:
        rows = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1).astype(np.float64)
        rows = rows - rows.mean(axis=1, keepdims=True)
        return rows / (rows.std(axis=1, keepdims=True) + 1e-12)

    a, b = standardized(student), standardized(teacher)
    return a @ b.T / a.shape[1]
