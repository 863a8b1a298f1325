"""`prune --recover`: distill a pruned model from its unpruned original, on unlabeled data.

Structured pruning with a least-squares refit loses accuracy that every trusted pruner wins
back by fine-tuning with the PyTorch source and training code. Here the pruned ONNX graph is
the student (converted to torch from its own weights), the original is the teacher, and the
loss compares their outputs on the given inputs: no labels, no source. The trained weights go
back into the pruned graph, so its latency is unchanged.

The loss follows the outputs. A YOLO head (the fidelity check decodes its boxes): BCE on the
scores, again over the anchors where either model detects, plus 1 − GIoU of the boxes the
original detects (`detection`, task_losses.py; NudeNet YOLOv8n on a fixed plan: F1 0.708, the
squared error 0.612), and its Conv outputs also learn the original's on the channels they kept
(feature hints, feature_hints.py: 0.792). Where every output lies in [0, 1] (a Softmax classifier, a
Sigmoid text or segmentation map): the binary cross-entropy against the original's
probabilities, whose gradient does not vanish on a confidently wrong output as the squared
error's does; plus the soft Dice overlap where the fidelity check judges the output as a dense
map by mask IoU (PP-OCRv4 det: 0.907 → 0.917). Anything else (logits, embeddings): the
mean squared difference. (Hinton's softened KL on the logs of a Softmax output, `kl-probs`,
measured no better on PP-OCR's direction classifier: 0.8325 against BCE's 0.8375 top-1
agreement, bench/RESULTS.md.)
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
from onnxsmith.exporter.distill import distill
from onnxsmith.exporter.training import DistillConfig, EpochStats
from onnxsmith.runtime.data import DataDir
from onnxsmith.runtime.fidelity.choose import choose_metric
from onnxsmith.runtime.fidelity.dense import probabilities
from onnxsmith.runtime.session import create_session

from onnxsmith.io import load_model, save_model
from onnxsmith.signature import input_specs

# Feature hints (feature_hints.py) against the output loss, for YOLO heads only. On fixed plans,
# 300 s (bench/RESULTS.md): YOLOv8n F1 0.708 → 0.792; PP-OCRv4 det mask IoU 0.894 → 0.838
# (0.860 at weight 0.1); PP-OCR cls 0.9275 → 0.9275. A detection head's loss supervises a few
# anchors, and the hints give every layer a target; a dense map or a classifier's probabilities
# already supervise enough, and there the hints only compete with the output.
HINT_WEIGHT = 1.0
DEFAULT_TIME_BUDGET = 300.0  # seconds of training: `--recover` stays under 10 minutes


@dataclasses.dataclass(frozen=True)
class RecoverSettings:
    """What `--recover` is told: the data, the time budget, the seed, an epoch cap."""

    data: Path
    time_budget: float = DEFAULT_TIME_BUDGET
    seed: int = 0
    epochs: int | None = None  # None: until the held-out loss stops improving


def recovery_loss(original: ir.Model, data: Path) -> str:
    """The loss for the original's outputs on the first feed of `data` (module docstring)."""
    first = next(iter(DataDir(data, input_specs(original), step="prune --recover-data")))
    outputs = create_session(original).run(None, first)
    floats = [np.asarray(o) for o in outputs if np.asarray(o).dtype.kind == "f"]
    if not floats:
        return "mse"
    metric = choose_metric(original.graph.outputs[0].name or "", floats[:1]).metric
    if metric == "detection_f1":
        return "detection"
    if not all(probabilities([o]) for o in floats):
        return "mse"
    # a map the fidelity check judges by mask IoU also trains on the overlap (soft Dice)
    return "bce-dice" if metric == "mask_iou" else "bce"


BATCH_ELEMENTS = 1 << 21  # input floats per training batch: 64 text lines, 4 document pages


def batch_size(original: ir.Model, data: Path) -> int:
    """64 samples per batch, fewer for large inputs (a batch of 64 320×448 pages took 12 GB
    and minutes per step on 2 cores), at least 4."""
    first = next(iter(DataDir(data, input_specs(original), step="prune --recover-data")))
    per_sample = sum(int(np.prod(a.shape[1:])) for a in first.values() if np.asarray(a).ndim > 0)
    return int(min(64, max(4, BATCH_ELEMENTS // max(per_sample, 1))))


def recover_pruned(
    original: ir.Model,
    pruned: ir.Model,
    settings: RecoverSettings,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> tuple[ir.Model, dict[str, Any]]:
    """Trains `pruned` to reproduce `original`'s outputs; returns it and a summary.

    Raises:
        ExportError: the pruned graph has ops the torch conversion lacks, or the conversion
            or the written-back weights disagree with ONNX Runtime.
        DataError: the data does not fit the model.
    """
    loss = recovery_loss(original, settings.data)
    config = DistillConfig(
        loss=loss,
        batch_size=batch_size(original, settings.data),
        seed=settings.seed,
        time_budget=settings.time_budget,
        epochs=settings.epochs,
        hint_weight=HINT_WEIGHT if loss == "detection" else 0.0,
    )
    with tempfile.TemporaryDirectory(prefix="onnxsmith-recover-") as folder:
        work = Path(folder)
        teacher = save_model(original, work / "original.onnx")
        student = save_model(pruned, work / "pruned.onnx")
        report = distill(
            [teacher],
            student,
            settings.data,
            work / "recovered.onnx",
            config=config,
            latency_runs=0,
            on_epoch=on_epoch,
        )
        # Materialized before the folder goes; its provenance is the pruned model's (the
        # prune step records the recovery).
        recovered = ir.from_proto(ir.to_proto(load_model(work / "recovered.onnx")))
    recovered.metadata_props.clear()
    recovered.metadata_props.update(pruned.metadata_props)
    training = report.training
    summary = {
        "data": str(settings.data),
        "epochs": len(training.history),
        "best_epoch": training.best_epoch,
        "stop_reason": training.stop_reason,
        "watched": training.metric,
        "lr": training.lr,
        "lr_source": training.lr_source,
        "loss": config.loss,
        "step_mode": training.step_mode,
        "hints": report.hints,
        "train_seconds": round(training.seconds, 1),
        "time_budget": settings.time_budget,
        "held_out": report.evaluated_on,
        "held_out_cosine": report.rows[-1].agreement,
    }
    return recovered, summary
