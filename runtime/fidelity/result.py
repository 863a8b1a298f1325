"""What a fidelity measurement yields: one output's (`Fidelity`) and a whole model's (`Score`)."""

from __future__ import annotations

import dataclasses

_TINY = 1e-9  # a zero tolerance: any loss above this is over it


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """One output (or, for a plug-in, the whole model) judged against the reference.

    Attributes:
        metric: the metric's name (`top1`, `ctc`, `mask_iou`, `detection_f1`, ...).
        value: the headline fidelity in the metric's unit (agreement, 1 - CER, IoU, F1, cosine).
        loss: the quantity the tolerance bounds (1 - agreement, CER, 1 - IoU, ...).
        tolerance: the largest loss that passes.
        details: further numbers the metric measured (sequence agreement, NN agreement, ...).
    """

    metric: str
    value: float
    loss: float
    tolerance: float
    details: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def met(self) -> bool:
        return self.loss <= self.tolerance

    @property
    def used(self) -> float:
        """The share of the tolerance the loss uses (<= 1: met); orders candidates."""
        return self.loss / max(self.tolerance, _TINY)

    def describe(self) -> str:
        """`ctc 0.9950 (sequence_agreement 0.9688), loss 0.005 <= 0.005`-style summary."""
        extra = ", ".join(f"{k} {v:.4g}" for k, v in self.details.items())
        sign = "<=" if self.met else ">"
        return (
            f"{self.metric} {self.value:.4f}" + (f" ({extra})" if extra else "")
            + f", loss {self.loss:.4g} {sign} {self.tolerance:g}"
        )  # fmt: skip

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "value": self.value,
            "loss": self.loss,
            "tolerance": self.tolerance,
            "met": self.met,
            "details": dict(self.details),
        }


@dataclasses.dataclass(frozen=True)
class Score:
    """A candidate model's fidelity: one `Fidelity` per judged output (or one for a plug-in).

    The model passes when every output is within its tolerance. `loss` is the worst output's
    share of its tolerance, so candidates judged by different metrics still order.
    """

    outputs: dict[str, Fidelity]

    @property
    def met(self) -> bool:
        return all(f.met for f in self.outputs.values())

    @property
    def loss(self) -> float:
        return max((f.used for f in self.outputs.values()), default=0.0)

    @property
    def worst(self) -> str:
        return max(self.outputs, key=lambda name: self.outputs[name].used)

    @property
    def metric(self) -> str:
        """The metric names used, in output order, without repeats (`ctc`, `top1, cosine`)."""
        return ", ".join(dict.fromkeys(f.metric for f in self.outputs.values()))

    @property
    def values(self) -> dict[str, float]:
        return {name: f.value for name, f in self.outputs.items()}

    def describe(self) -> str:
        """The worst output's summary, naming it when there are several."""
        worst = self.worst
        where = f" on {worst!r}" if len(self.outputs) > 1 else ""
        return self.outputs[worst].describe() + where

    def lines(self, against: str) -> list[str]:
        """One line per output, `fidelity of 'y' vs fp32: top1 0.9900, ...`, then the verdict."""
        found = [
            f"fidelity of {name!r} vs {against}: {f.describe()}" for name, f in self.outputs.items()
        ]
        return [*found, f"fidelity: {'within' if self.met else 'NOT within'} tolerance"]

    def as_dict(self) -> dict[str, object]:
        return {name: f.as_dict() for name, f in self.outputs.items()}
