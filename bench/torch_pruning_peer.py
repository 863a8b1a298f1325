"""The peer of `prune --structured --recover`: Torch-Pruning on the model's PyTorch form + training.

A user who has the PyTorch source prunes it with Torch-Pruning and fine-tunes it. The ONNX
files here come without source, so the source is what onnx2torch makes of the model (after
`onnxsmith optimize`, which turns its Constant weights into initializers): `nn.Conv2d`
layers in an fx graph, checked against ONNX Runtime before use. Torch-Pruning's
`MagnitudePruner` then removes the same share of channels from every layer (L1 importance, its
default; `round_to` the CPU's vector width, as onnxsmith rounds; layers with nothing after
them — the output convs and the classifier — are left whole, as its examples do). The pruned
module is trained by the very loop `--recover` uses (`onnxsmith.exporter.distill`: the same
data, loss, batch size, learning rate and time budget) and exported with parity checked,
so the rows differ only in what was pruned and how.

Bench only: `pip install --no-deps onnx2torch torch-pruning` into the venv (with their
dependencies pip would pull torchvision and a CUDA build of torch). onnx2torch imports
torchvision for its NMS and RoIAlign converters alone, which these models do not use, so a
stub module stands in for it.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch
from onnxsmith.exporter.distill import distill
from onnxsmith.exporter.training import TRAINED_LR, DistillConfig
from onnxsmith.runtime.cpu import simd_block
from onnxsmith.runtime.session import create_session

from onnxsmith.cli.main import main as onnxsmith

PARITY_ATOL = 1e-3  # onnx2torch vs ONNX Runtime, relative to the output's scale


class PeerFailed(Exception):
    """The peer cannot produce a model; the message says why (a row of the table)."""


def _stub_torchvision() -> None:
    if "torchvision" not in sys.modules:
        vision, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.roi_align = None  # type: ignore[attr-defined]
        vision.ops = ops  # type: ignore[attr-defined]
        sys.modules.update({"torchvision": vision, "torchvision.ops": ops})


def to_torch(model: Path, feed: dict[str, np.ndarray], work: Path) -> torch.nn.Module:
    """onnx2torch's module of `model` (optimized first), checked against ONNX Runtime."""
    _stub_torchvision()
    import onnx
    from onnx2torch import convert

    optimized = work / f"{model.stem}.optimized.onnx"
    if onnxsmith(["optimize", str(model), "-o", str(optimized)]) != 0:
        raise SystemExit(f"failed: onnxsmith optimize {model}")
    reference = create_session(optimized).run(None, feed)[0]
    try:
        module = convert(onnx.load(str(optimized))).eval()
        with torch.no_grad():
            got = module(*(torch.from_numpy(a) for a in feed.values()))
    except Exception as error:  # any failure of the peer is its result
        raise PeerFailed(f"onnx2torch: {type(error).__name__}: {error}") from None
    got = (got[0] if isinstance(got, list | tuple) else got).numpy()
    error = np.abs(got - reference).max() / max(np.abs(reference).max(), 1e-12)
    if error > PARITY_ATOL:
        raise PeerFailed(f"onnx2torch converts it with relative error {error:.2g}")
    return module


def last_layers(module: torch.fx.GraphModule) -> list[torch.nn.Module]:
    """Conv/Linear layers with no Conv/Linear after them (they make the outputs)."""
    layers = {
        node: module.get_submodule(str(node.target))
        for node in module.graph.nodes
        if node.op == "call_module"
        and isinstance(module.get_submodule(str(node.target)), torch.nn.Conv2d | torch.nn.Linear)
    }

    def feeds_a_layer(node: torch.fx.Node) -> bool:
        seen, todo = set(), list(node.users)
        while todo:
            user = todo.pop()
            if user in layers:
                return True
            if user not in seen:
                seen.add(user)
                todo.extend(user.users)
        return False

    return [layer for node, layer in layers.items() if not feeds_a_layer(node)]


def prune_and_train(
    model: Path,
    feed: dict[str, np.ndarray],
    data: Path,
    output: Path,
    *,
    sparsity: float,
    loss: str,
    batch_size: int,
    seconds: float,
) -> dict[str, object]:
    """Torch-Pruning at `sparsity`, trained like `--recover`; writes `output`, returns facts."""
    import torch_pruning as tp

    module = to_torch(model, feed, output.parent)
    example = tuple(torch.from_numpy(a) for a in feed.values())
    before, _ = tp.utils.count_ops_and_params(module, example)
    try:
        pruner = tp.pruner.MagnitudePruner(
            module,
            example,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=sparsity,
            ignored_layers=last_layers(module),
            round_to=simd_block()[0],
        )
        pruner.step()
        after, _ = tp.utils.count_ops_and_params(module, example)  # runs the pruned module
    except Exception as error:  # any failure of the peer is its result
        raise PeerFailed(f"Torch-Pruning: {type(error).__name__}: {error}") from None
    # the rate `--recover` gives a student that starts trained
    config = DistillConfig(loss=loss, batch_size=batch_size, time_budget=seconds, lr=TRAINED_LR)
    report = distill([model], module, data, output, config=config, latency_runs=0)
    return {
        "macs_kept": round(after / before, 3),
        "epochs": len(report.training.history),
        "stop_reason": report.training.stop_reason,
    }
