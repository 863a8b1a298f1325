"""How far a candidate model's outputs are from the reference's, as one loss to bound.

No labels are needed: the fp32 model's outputs are the reference. Each metric yields a value per
output (reported) and a loss per output (bounded by `--max-loss`); a model's loss is its worst
output's. Non-float outputs (argmax ids, masks) count the fraction of elements that differ.

- cosine: mean cosine similarity per sample (rows along axis 0; the whole tensor for rank < 2);
  loss = 1 - cosine.
- top1: agreement of argmax over the last axis; loss = 1 - agreement (0.005 = half a point).
- mse: squared error / squared reference, summed over the eval set (normalized MSE); loss = it.
- snr: signal-to-noise ratio in dB, averaged over feeds; loss = 10^(-snr/10) (0.01 = 20 dB).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import create_session, run

from onnxsmith.errors import UsageError, name_list

METRICS = ("cosine", "top1", "mse", "snr")
DEFAULT_MAX_LOSS = 0.01  # cosine >= 0.99, top1 within 1 point, NMSE <= 1 %, SNR >= 20 dB


@dataclasses.dataclass(frozen=True)
class Score:
    """A candidate's distance from the reference on the eval set."""

    metric: str
    values: Mapping[str, float]  # per output, in the metric's own unit (cosine, agreement, dB)
    losses: Mapping[str, float]  # per output, the quantity `--max-loss` bounds

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", types.MappingProxyType(dict(self.values)))
        object.__setattr__(self, "losses", types.MappingProxyType(dict(self.losses)))

    @property
    def loss(self) -> float:
        return max(self.losses.values(), default=0.0)

    @property
    def worst(self) -> str:
        return max(self.losses, key=lambda name: self.losses[name])

    def describe(self) -> str:
        """`cosine 0.9962 (worst output 'emb')`-style summary."""
        value = self.values[self.worst]
        unit = " dB" if self.metric == "snr" else ""
        return f"{self.metric} {value:.4f}{unit} (worst output {self.worst!r})"


def sqnr_db(signal: float, noise: float) -> float:
    """10·log10(signal / noise) with the limits spelled out (inf when there is no noise)."""
    if noise <= 0.0:
        return math.inf
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


class EvalSet:
    """Eval feeds with the reference model's outputs, computed once; scores candidates.

    Args:
        reference: the fp32 model (or its path).
        feeds: the eval feeds, held in memory (they are run for every candidate).
        metric: one of METRICS.
    """

    def __init__(
        self,
        reference: ir.Model | str,
        feeds: Sequence[Feed],
        metric: str = "cosine",
        *,
        threads: int | None = None,
    ) -> None:
        if metric not in METRICS:
            raise UsageError(
                f"quantize: unknown metric {metric!r} — choose from {name_list(METRICS)}"
            )
        if not feeds:
            raise UsageError("quantize: the eval set is empty — pass --eval DIR with .npz feeds")
        self.metric = metric
        self.feeds = list(feeds)
        self.threads = threads
        self.session = create_session(reference, threads=threads)
        self.names = [o.name for o in self.session.get_outputs()]
        self.reference = [run(self.session, f, "the fp32 model") for f in self.feeds]
        if metric == "top1":
            self._check_top1()

    def _check_top1(self) -> None:
        bad = [
            name
            for i, name in enumerate(self.names)
            if self.reference[0][i].dtype.kind == "f"
            and (self.reference[0][i].ndim == 0 or self.reference[0][i].shape[-1] < 2)
        ]
        if bad:
            raise UsageError(
                f"quantize: --metric top1 needs a class axis last, but outputs {name_list(bad)} "
                "have none — use --metric cosine"
            )

    def score(self, candidate: ir.Model | ort.InferenceSession, label: str = "int8 model") -> Score:
        """Runs the candidate on every eval feed and compares it with the reference."""
        session = (
            candidate
            if isinstance(candidate, ort.InferenceSession)
            else create_session(candidate, threads=self.threads)
        )
        outputs = [run(session, f, f"quantize: the {label}") for f in self.feeds]
        values, losses = {}, {}
        for i, name in enumerate(self.names):
            refs = [r[i] for r in self.reference]
            cands = [o[i] for o in outputs]
            values[name], losses[name] = _compare(self.metric, refs, cands)
        return Score(self.metric, values, losses)


def _compare(
    metric: str, refs: Sequence[np.ndarray], cands: Sequence[np.ndarray]
) -> tuple[float, float]:
    if refs[0].dtype.kind != "f":
        total = sum(r.size for r in refs)
        differ = sum(int(np.count_nonzero(r != c)) for r, c in zip(refs, cands, strict=True))
        fraction = differ / max(total, 1)
        return 1.0 - fraction, fraction
    pairs = [(r.astype(np.float64), c.astype(np.float64)) for r, c in zip(refs, cands, strict=True)]
    if metric == "cosine":
        cosines = np.concatenate([_cosines(r, c) for r, c in pairs])
        value = float(np.mean(cosines))
        return value, 1.0 - value
    if metric == "top1":
        agree = sum(int(np.sum(r.argmax(-1) == c.argmax(-1))) for r, c in pairs)
        total = sum(int(np.prod(r.shape[:-1])) for r, _ in pairs)
        value = agree / max(total, 1)
        return value, 1.0 - value
    if metric == "mse":
        noise = sum(float(np.sum((r - c) ** 2)) for r, c in pairs)
        signal = sum(float(np.sum(r**2)) for r, _ in pairs)
        value = noise / signal if signal > 0 else (0.0 if noise == 0 else math.inf)
        return value, value
    snrs = [sqnr_db(float(np.sum(r**2)), float(np.sum((r - c) ** 2))) for r, c in pairs]
    finite = [min(s, 200.0) for s in snrs]  # an exact match counts as 200 dB, not infinity
    value = float(np.mean(finite))
    return value, 10.0 ** (-value / 10.0)


def _cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    if reference.shape != candidate.shape:
        return np.zeros(1)
    rows = reference.shape[0] if reference.ndim >= 2 and reference.shape[0] > 0 else 1
    r = reference.reshape(rows, -1)
    c = candidate.reshape(rows, -1)
    dot = np.sum(r * c, axis=1)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
    both_zero = (np.linalg.norm(r, axis=1) == 0) & (np.linalg.norm(c, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, cos)
