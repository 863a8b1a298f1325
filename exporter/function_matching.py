"""Function matching: the teachers label mixed inputs while the student trains.

With few unlabeled inputs a student soon learns the teachers' outputs on those inputs alone
and stops improving on others (PP-OCR's direction classifier: the held-out loss bottomed out
after ~10 epochs on 900 lines). Beyer et al. ("Knowledge distillation: a good teacher is patient
and consistent", 2022) match the teacher's function instead: each batch is augmented and the
teachers are asked about the augmented inputs, so every step shows the student new
input-output pairs. The augmentation here is mixup (Zhang et al., 2018): every float input
becomes λ·x + (1 − λ)·x' with x' another sample of the batch and λ drawn uniformly per sample;
integer inputs (token ids, masks) are left as they are. No labels are needed (nor allowed:
a mixed input has no class).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from onnxsmith.exporter.teacher_outputs import Teachers, combine
from onnxsmith.runtime.session import create_session, run


class MixedTargets:
    """Mixes a batch's float inputs and returns them with the teachers' targets for them."""

    def __init__(self, teachers: Teachers, kind: str, temperature: float, seed: int) -> None:
        self.teachers = teachers
        self.kind = kind
        self.temperature = temperature
        self.sessions = [create_session(p) for p in teachers.paths]
        self.outputs = [
            [o.name for o in s.get_outputs()].index(teachers.output.name) for s in self.sessions
        ]
        self.fixed_batch = any(
            s.shape and isinstance(s.shape[0], int) for s in teachers.inputs
        )  # teachers that take one sample at a time
        self.rng = np.random.default_rng(seed)

    def __call__(
        self, inputs: Sequence[torch.Tensor], names: Sequence[str]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        count = len(inputs[0])
        weight = self.rng.uniform(size=count).astype(np.float32)
        partner = self.rng.permutation(count)
        mixed = [mix(x, weight, partner) for x in inputs]
        feed = {name: x.numpy() for name, x in zip(names, mixed, strict=True)}
        return mixed, torch.from_numpy(self.targets(feed))

    def targets(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The ensemble's targets for `feed`, as `teacher_outputs` computes them."""
        if self.fixed_batch:
            rows = [
                {n: a[i : i + 1] for n, a in feed.items()}
                for i in range(len(next(iter(feed.values()))))
            ]
            return np.concatenate([self.targets_of(row) for row in rows])
        return self.targets_of(feed)

    def targets_of(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        outputs = [
            run(session, feed, str(path))[index]
            for session, path, index in zip(
                self.sessions, self.teachers.paths, self.outputs, strict=True
            )
        ]
        return combine(outputs, self.teachers.weights, self.kind, self.temperature)


def mix(x: torch.Tensor, weight: np.ndarray, partner: np.ndarray) -> torch.Tensor:
    if not x.is_floating_point():
        return x
    shape = (len(x),) + (1,) * (x.dim() - 1)
    lam = torch.from_numpy(weight).to(x.dtype).reshape(shape)
    return lam * x + (1 - lam) * x[torch.from_numpy(partner)]
