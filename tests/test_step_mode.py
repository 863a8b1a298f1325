"""Training step modes: the candidates follow the CPU and the inputs, the fastest measured wins,
and probing leaves the module as it was."""

from __future__ import annotations

import types

import pytest

torch = pytest.importorskip("torch")

from onnxsmith.exporter import step_mode  # noqa: E402
from onnxsmith.exporter.step_mode import StepMode, candidates, fastest  # noqa: E402

pytestmark = pytest.mark.torch


def test_bfloat16_is_a_candidate_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(step_mode, "native_bf16", lambda: False)
    assert candidates(None, images=False) == [StepMode()]
    assert candidates(None, images=True) == [StepMode(), StepMode(channels_last=True)]
    assert candidates(True, images=False) == [StepMode(bf16=True)]  # forced: emulated, slower
    monkeypatch.setattr(step_mode, "native_bf16", lambda: True)
    assert len(candidates(None, images=True)) == 4
    assert candidates(False, images=False) == [StepMode()]


def test_the_fastest_mode_wins_and_the_module_is_restored(monkeypatch):
    clock = [0.0]  # a fake clock: each step "takes" its mode's delay, whatever the load
    monkeypatch.setattr(step_mode, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    torch.manual_seed(0)
    module = torch.nn.BatchNorm1d(3)  # its running statistics change on every training step
    before = {k: v.clone() for k, v in module.state_dict().items()}
    delays = {StepMode(): 0.02, StepMode(bf16=True): 0.002, StepMode(channels_last=True): 0.01}

    def step(mode: StepMode) -> None:
        module.train()
        module(torch.randn(4, 3)).sum().backward()
        clock[0] += delays[mode]

    mode, measured = fastest(list(delays), step, module)
    assert mode == StepMode(bf16=True)
    assert measured.startswith("fastest of 3 measured: float32 0.02 s, bfloat16 autocast 0.002 s")
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert all(p.grad is None for p in module.parameters())
    assert fastest([StepMode()], step, module) == (StepMode(), "the only candidate")
    delays = {StepMode(): 0.05, StepMode(bf16=True): 0.048}  # a tie: float32 does not round
    assert fastest(list(delays), step, module)[0] == StepMode()
