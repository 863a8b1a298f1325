"""How a training step runs on this CPU: float32 or bfloat16 autocast, and image inputs in
torch's default NCHW layout or channels-last. Which is fastest depends on the model and the
CPU (2-core Zen 4, per step: YOLOv8n 0.45 s in float32, 0.19 s in bfloat16 channels-last; the
PP-OCRv4 detector 0.45 s, 0.35 s in float32 channels-last, no faster in bfloat16; bfloat16 is
emulated, and slower, where the CPU lacks it), so a time-bounded training run measures each
candidate on a few steps and takes the fastest: more epochs in the same budget. The weights,
the loss and every evaluation stay float32.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from onnxsmith.runtime.cpu import native_bf16

PROBE_STEPS = 3  # timed per candidate, after one warm-up step (oneDNN builds its kernels)
# bfloat16 rounds: it must beat float32 by this factor, not by the probe's noise (PP-OCR cls on
# Zen 4: 0.631 s against 0.647 s per step, a tie)
BF16_MARGIN = 1.1


@dataclasses.dataclass(frozen=True)
class StepMode:
    """The precision of the forward pass and the memory layout of 4-D inputs."""

    bf16: bool = False
    channels_last: bool = False

    def describe(self) -> str:
        precision = "bfloat16 autocast" if self.bf16 else "float32"
        return precision + (", channels-last inputs" if self.channels_last else "")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            yield

    def layout(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if not self.channels_last:
            return list(inputs)
        return [t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t
                for t in inputs]  # fmt: skip


def candidates(bf16: bool | None, images: bool) -> list[StepMode]:
    """The modes worth timing: bfloat16 only where the CPU has it (or as `bf16` forces),
    channels-last only for image (4-D) inputs."""
    precisions = [False, True] if bf16 is None and native_bf16() else [bool(bf16)]
    layouts = [False, True] if images else [False]
    return [StepMode(p, c) for p in precisions for c in layouts]


def fastest(
    modes: Sequence[StepMode], step: Callable[[StepMode], object], module: torch.nn.Module
) -> tuple[StepMode, str]:
    """The mode whose `step` (a forward and backward pass, no update) measured fastest, and
    what was measured; the module's weights, buffers and gradients are restored."""
    if len(modes) == 1:
        return modes[0], "the only candidate"
    state = copy.deepcopy(module.state_dict())
    seconds = {}
    for mode in modes:
        step(mode)
        times = []
        for _ in range(PROBE_STEPS):
            start = time.perf_counter()
            step(mode)
            times.append(time.perf_counter() - start)
        seconds[mode] = sorted(times)[len(times) // 2]
    module.load_state_dict(state)
    module.zero_grad(set_to_none=True)
    best = min(modes, key=lambda mode: seconds[mode] * (BF16_MARGIN if mode.bf16 else 1.0))
    return best, f"fastest of {len(modes)} measured: " + ", ".join(
        f"{mode.describe()} {seconds[mode]:.3g} s" for mode in modes
    ) + " per step"
