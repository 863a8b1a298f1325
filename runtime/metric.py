"""The eval set: the reference model's outputs on the eval feeds, computed once, and
candidates judged against them in the task's terms (and against the user's labels, if any).

Which metric judges which output, its tolerance and the plug-in type live in
`onnxsmith.runtime.fidelity` (pure numpy); this module only runs the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.fidelity import AUTO, MetricPlan, Score, plan_metrics
from onnxsmith.runtime.session import create_session, run

from onnxsmith.errors import UsageError


class EvalSet:
    """Eval feeds with the reference model's outputs; scores candidates against them.

    Args:
        reference: the fp32 model (or its path).
        feeds: the eval feeds, held in memory (they are run for every candidate).
        metric: `auto` (chosen per output), a built-in name, or `file.py:fn`.
        tolerance: the largest loss that passes, on every output (None: each metric's own).
        labels: the user's labels, one per feed, for a `top1` or `ctc` output (empty: none).
        threads: ORT intra-op threads.
        step: the verb, for messages.
    """

    def __init__(
        self,
        reference: ir.Model | str,
        feeds: Sequence[Feed],
        metric: str = AUTO,
        *,
        tolerance: float | None = None,
        labels: Sequence[np.ndarray] = (),
        threads: int | None = None,
        step: str = "quantize",
    ) -> None:
        if not feeds:
            raise UsageError(f"{step}: the eval set is empty — pass --eval DIR with .npz feeds")
        self.feeds = list(feeds)
        self.threads = threads
        self.step = step
        self.session = create_session(reference, threads=threads)
        self.names = [o.name for o in self.session.get_outputs()]
        self.reference = [run(self.session, f, f"{step}: the fp32 model") for f in self.feeds]
        self.plan: MetricPlan = plan_metrics(
            self.names, self.reference, metric, tolerance=tolerance, labels=labels, step=step
        )

    def score(self, candidate: ir.Model | ort.InferenceSession, label: str = "int8 model") -> Score:
        """Runs the candidate on every eval feed and judges it against the reference."""
        return self.plan.score(self.reference, self.outputs(candidate, label))

    def outputs(
        self, candidate: ir.Model | ort.InferenceSession, label: str = "int8 model"
    ) -> list[list[np.ndarray]]:
        """The candidate's outputs on every eval feed."""
        session = (
            candidate
            if isinstance(candidate, ort.InferenceSession)
            else create_session(candidate, threads=self.threads)
        )
        return [run(session, f, f"{self.step}: the {label}") for f in self.feeds]
