"""`distill`: train a small PyTorch student on what ONNX teachers predict, then export it.

Teachers run once in ONNX Runtime (`runtime.teacher_outputs`, cached on disk); the student
trains on their averaged softened outputs with Hinton's loss (KL at temperature T, times T²),
mixed with hard-label cross-entropy when labels are given; MSE or cosine for embeddings and
regression. Training is seeded and deterministic on CPU, stops early on the eval metric and
keeps the best epoch; the student is then exported with `export_model` (parity-checked).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from onnxsmith.exporter.export import ExportReport, export_model
from onnxsmith.exporter.targets import load_target
from onnxsmith.exporter.teacher_outputs import (
    TeacherOutputs,
    Teachers,
    load_teachers,
    teacher_outputs,
)
from onnxsmith.runtime.labels import load_labels
from onnxsmith.runtime.predict import predict
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved
from torch.utils import _pytree as pytree

from onnxsmith.errors import DataError, UsageError, name_list
from onnxsmith.io import load_model, save_model
from onnxsmith.provenance import record_step
from onnxsmith.summary import summarize

LOSSES = ("kl", "mse", "cosine")
Student = torch.nn.Module | Callable[[], torch.nn.Module] | str


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Training settings; `alpha` weighs the distillation term, 1 - alpha the hard labels."""

    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "kl"
    seed: int = 0
    patience: int = 5  # epochs without a better eval metric before stopping

    def validate(self) -> None:
        """Raises UsageError naming the first setting out of range."""
        checks = [
            (self.loss in LOSSES, f"--loss must be one of {name_list(LOSSES)}"),
            (self.temperature > 0, "--temperature must be > 0"),
            (0 <= self.alpha <= 1, "--alpha must lie in [0, 1]"),
            (self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.lr > 0, "--lr must be > 0"),
            (self.patience >= 1, "--patience must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"distill: {message}")


@dataclasses.dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss, eval metric (None without --eval), best so far."""

    epoch: int
    loss: float
    metric: float | None
    best: bool
    seconds: float


@dataclasses.dataclass(frozen=True)
class ModelRow:
    """One line of the teachers-vs-student comparison."""

    name: str
    accuracy: float | None  # against labels, when there are labels
    agreement: float | None  # argmax agreement with the ensemble (cosine for --loss mse/cosine)
    params: int
    bytes: int
    latency_ms: float | None  # median, batch of one, measured interleaved


@dataclasses.dataclass(frozen=True)
class DistillReport:
    """Training history, the exported student, and how it compares with its teachers."""

    history: tuple[EpochStats, ...]
    best_epoch: int
    stopped_early: bool
    metric: str
    evaluated_on: str
    rows: tuple[ModelRow, ...]
    latency_ratio: tuple[float, float, float] | None  # student / ensemble, 95 % interval
    teachers_reused: bool
    export: ExportReport

    def as_dict(self) -> dict[str, Any]:
        return {
            "history": [dataclasses.asdict(e) for e in self.history],
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "metric": self.metric,
            "evaluated_on": self.evaluated_on,
            "models": [dataclasses.asdict(r) for r in self.rows],
            "latency_ratio": self.latency_ratio,
            "teachers_reused": self.teachers_reused,
            "export": self.export.as_dict(),
        }


@dataclasses.dataclass(frozen=True)
class _Split:
    """Samples with their ensemble targets and, when given, labels."""

    outputs: TeacherOutputs
    labels: np.ndarray | None
    name: str


StepCallback = Callable[[int, int, int, float], None]  # epoch, step, steps, loss
EpochCallback = Callable[[EpochStats], None]


def distill(
    teachers: Sequence[str | os.PathLike[str]],
    student: Student,
    data: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    eval_data: str | os.PathLike[str] | None = None,
    eval_labels: str | os.PathLike[str] | None = None,
    config: DistillConfig | None = None,
    weights: Sequence[float] | None = None,
    teacher_output: str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    latency_runs: int = 100,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> DistillReport:
    """Distills ONNX `teachers` (averaged, or weighted by `weights`) into `student`.

    Args:
        teachers: ONNX files with the same inputs and the same learned output.
        student: an untrained module, a callable building one, or a `file.py:factory` /
            `module:factory` target (built after seeding, so its init is reproducible).
        data: training data dir (see `runtime.data.DataDir`).
        output: where the student's ONNX goes; nothing is written unless export parity holds.
        labels: folder with one `.npz` (key `label`) per data file; enables the CE term.
        eval_data: data dir for the eval metric, early stopping and the final comparison.
        eval_labels: labels for `eval_data` (metric: accuracy; without them: agreement).
        config: training settings.
        weights: one weight per teacher for the average (default: equal).
        teacher_output: the teacher output to learn (default: the first).
        work_dir: cache of teacher outputs and the best checkpoint (default: OUTPUT.distill/).
        latency_runs: interleaved timing rounds for the comparison (0: skip).
        on_step: called after every training step.
        on_epoch: called after every epoch.

    Raises:
        UsageError: inconsistent options.
        DataError: data, labels, teachers and student that do not fit together.
        ExportError: the trained student cannot be exported faithfully.
    """
    config = config or DistillConfig()
    config.validate()
    if labels is not None and config.loss != "kl":
        raise UsageError("distill: --labels needs --loss kl (hard labels are class ids)")
    if eval_labels is not None and eval_data is None:
        raise UsageError("distill: --eval-labels needs --eval DIR")
    output = Path(output)
    work = Path(work_dir) if work_dir is not None else output.with_suffix(".distill")
    ensemble = load_teachers(teachers, weights=weights, output=teacher_output)
    kind = "probabilities" if config.loss == "kl" else "raw"
    train = _split(ensemble, data, labels, work / "train", kind, config, "training data")
    evaluation = None
    if eval_data is not None:
        evaluation = _split(ensemble, eval_data, eval_labels, work / "eval", kind, config, "eval")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = _build(student)
        history, best, stopped = train_student(
            module,
            train,
            evaluation,
            [s.name for s in ensemble.inputs],
            config,
            checkpoint=work / "best.pt",
            on_step=on_step,
            on_epoch=on_epoch,
        )
    onnx_model, exported = _export(module, ensemble, train.outputs)
    record_step(
        onnx_model,
        "distill",
        {
            "teachers": [p.name for p in ensemble.paths],
            "weights": ensemble.weights,
            "best_epoch": best,
            **dataclasses.asdict(config),
        },
    )
    save_model(onnx_model, output, inputs=ensemble.paths)
    reference = evaluation or train
    rows, ratio = compare(ensemble, output, reference, kind, latency_runs)
    return DistillReport(
        history=tuple(history),
        best_epoch=best,
        stopped_early=stopped,
        metric=_metric_name(evaluation, config),
        evaluated_on=reference.name,
        rows=rows,
        latency_ratio=ratio,
        teachers_reused=train.outputs.reused,
        export=exported,
    )


def _split(
    ensemble: Teachers,
    data: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None,
    work: Path,
    kind: str,
    config: DistillConfig,
    name: str,
) -> _Split:
    outputs = teacher_outputs(ensemble, data, work, kind=kind, temperature=config.temperature)
    hard = None
    if labels is not None:
        classes = int(outputs.targets.shape[-1])
        hard = load_labels(labels, outputs.files, outputs.file_sizes, classes)
        if hard.shape != outputs.targets.shape[:-1]:
            raise DataError(
                f"distill: labels have shape {hard.shape}, the teachers predict "
                f"{outputs.targets.shape[:-1]} class ids — save one id per predicted position"
            )
    return _Split(outputs, hard, name)


def _build(student: Student) -> torch.nn.Module:
    if isinstance(student, str):
        student = load_target(student, step="distill").model
    elif not isinstance(student, torch.nn.Module) and callable(student):
        student = student()
    if not isinstance(student, torch.nn.Module):
        raise UsageError(
            f"distill: the student is a {type(student).__name__} — pass a torch.nn.Module, a "
            "callable returning one, or FILE.py:FACTORY"
        )
    return student


def _metric_name(evaluation: _Split | None, config: DistillConfig) -> str:
    if evaluation is None:
        return "train loss"
    if config.loss != "kl":
        return "cosine"
    return "accuracy" if evaluation.labels is not None else "agreement"


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def train_student(
    student: torch.nn.Module,
    train: _Split,
    evaluation: _Split | None,
    input_names: Sequence[str],
    config: DistillConfig,
    *,
    checkpoint: Path,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> tuple[list[EpochStats], int, bool]:
    """Trains `student` in place and leaves it at its best epoch.

    Returns:
        (per-epoch stats, best epoch (1-based), whether early stopping ended training).
    """
    parameters = [p for p in student.parameters() if p.requires_grad]
    if not parameters:
        raise UsageError(
            f"distill: the student {type(student).__name__} has no trainable parameters — "
            "pass a model with learnable layers"
        )
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    total = len(train.outputs)
    steps = (total + config.batch_size - 1) // config.batch_size
    history: list[EpochStats] = []
    best_score, best_epoch, stale = -np.inf, 0, 0
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with _deterministic():
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            student.train()
            order = torch.randperm(total, generator=generator).numpy()
            losses = []
            for step in range(steps):
                index = np.sort(order[step * config.batch_size : (step + 1) * config.batch_size])
                inputs, targets, hard = _batch(train, input_names, index)
                prediction = first_tensor(student(*inputs))
                if epoch == 1 and step == 0:
                    _check_shape(prediction, targets)
                loss = distillation_loss(prediction, targets, hard, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                if on_step is not None:
                    on_step(epoch, step + 1, steps, losses[-1])
            schedule.step()
            mean_loss = float(np.mean(losses))
            metric = (
                None if evaluation is None else evaluate(student, evaluation, input_names, config)
            )
            current = -mean_loss if metric is None else metric
            improved = current > best_score + 1e-9
            if improved:
                best_score, best_epoch, stale = current, epoch, 0
                torch.save(student.state_dict(), checkpoint)
            else:
                stale += 1
            stats = EpochStats(epoch, mean_loss, metric, improved, time.perf_counter() - start)
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
            if evaluation is not None and stale >= config.patience:
                break
    student.load_state_dict(torch.load(checkpoint, weights_only=True))
    student.eval()
    stopped = len(history) < config.epochs
    return history, best_epoch, stopped


def _batch(
    split: _Split, input_names: Sequence[str], index: np.ndarray
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
    inputs = [torch.from_numpy(np.asarray(split.outputs.inputs[n][index])) for n in input_names]
    targets = torch.from_numpy(np.asarray(split.outputs.targets[index]))
    hard = None if split.labels is None else torch.from_numpy(split.labels[index])
    return inputs, targets, hard


def first_tensor(output: Any) -> torch.Tensor:
    """The student's prediction: its output, or the first tensor of a tuple or dict."""
    for leaf in pytree.tree_leaves(output):
        if isinstance(leaf, torch.Tensor):
            return leaf
    raise DataError("distill: the student returns no tensor — return the logits")


def _check_shape(prediction: torch.Tensor, targets: torch.Tensor) -> None:
    if prediction.shape != targets.shape:
        raise DataError(
            f"distill: the student returns shape {tuple(prediction.shape)} for a batch where the "
            f"teachers return {tuple(targets.shape)} — make the student's output match (e.g. "
            f"{targets.shape[-1]} classes)"
        )


def distillation_loss(
    prediction: torch.Tensor,
    targets: torch.Tensor,
    labels: torch.Tensor | None,
    config: DistillConfig,
) -> torch.Tensor:
    """Hinton KD (KL(targets ‖ softmax(pred/T)) · T²) mixed with CE by `alpha`; or MSE, cosine."""
    if config.loss == "mse":
        return F.mse_loss(prediction, targets)
    if config.loss == "cosine":
        similarity = F.cosine_similarity(prediction.flatten(1), targets.flatten(1), dim=1)
        return 1 - similarity.mean()
    classes = prediction.shape[-1]
    temperature = config.temperature
    log_probs = F.log_softmax(prediction.reshape(-1, classes) / temperature, dim=-1)
    kd = F.kl_div(log_probs, targets.reshape(-1, classes), reduction="batchmean")
    kd = kd * temperature**2  # keeps the gradient scale independent of T (Hinton et al.)
    if labels is None:
        return kd
    ce = F.cross_entropy(prediction.reshape(-1, classes), labels.reshape(-1))
    return config.alpha * kd + (1 - config.alpha) * ce


def evaluate(
    student: torch.nn.Module, split: _Split, input_names: Sequence[str], config: DistillConfig
) -> float:
    """Accuracy on labels, else argmax agreement with the ensemble (cosine for raw outputs)."""
    student.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(split.outputs), 512):
            index = np.arange(start, min(start + 512, len(split.outputs)))
            inputs, _, _ = _batch(split, input_names, index)
            parts.append(first_tensor(student(*inputs)).numpy())
    return score(np.concatenate(parts), split, config.loss)


def score(prediction: np.ndarray, split: _Split, loss: str) -> float:
    """The eval metric of `prediction` (student outputs for every sample of `split`)."""
    targets = np.asarray(split.outputs.targets)
    if loss != "kl":
        return _cosine(prediction, targets)
    reference = split.labels if split.labels is not None else targets.argmax(-1)
    return float((prediction.argmax(-1) == reference).mean())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(((a * b).sum(1) / np.maximum(norms, 1e-12)).mean())


def _export(
    module: torch.nn.Module, ensemble: Teachers, outputs: TeacherOutputs
) -> tuple[Any, ExportReport]:
    """Exports the student with the teachers' input/output names and symbolic axes."""
    names = [s.name for s in ensemble.inputs]
    count = min(8, len(outputs))
    example = tuple(torch.from_numpy(np.array(outputs.inputs[n][:count])) for n in names)
    axes: dict[str, dict[int, str]] = {}
    for spec in ensemble.inputs:
        for axis, dim in enumerate(spec.shape or ()):
            if not isinstance(dim, int):
                axes.setdefault(spec.name, {})[axis] = dim or f"{spec.name}_dim{axis}"
    return export_model(
        module,
        example,
        input_names=names,
        output_names=[ensemble.output.name],
        dynamic_axes=axes,
    )


def compare(
    ensemble: Teachers, student_path: Path, split: _Split, kind: str, latency_runs: int
) -> tuple[tuple[ModelRow, ...], tuple[float, float, float] | None]:
    """Teachers, ensemble and the exported student on `split`, all run in ONNX Runtime."""
    outputs = split.outputs
    sessions = [create_session(p) for p in (*ensemble.paths, student_path)]
    index = [o.name for o in sessions[-1].get_outputs()].index(ensemble.output.name)
    student = predict(sessions[-1], outputs.inputs, output=index, label=str(student_path))
    targets = np.asarray(outputs.targets)
    loss = "kl" if kind == "probabilities" else "cosine"
    latencies = _latencies(sessions, outputs, ensemble, latency_runs)
    sizes = [_size(p) for p in (*ensemble.paths, student_path)]
    rows = []
    for t, path in enumerate(ensemble.paths):
        votes = np.asarray(outputs.predictions)
        accuracy = agreement = None
        if kind == "probabilities":
            agreement = float((votes[..., t] == targets.argmax(-1)).mean())
            if split.labels is not None:
                accuracy = float((votes[..., t] == split.labels).mean())
        rows.append(ModelRow(path.name, accuracy, agreement, *sizes[t], _median(latencies, t)))
    ensemble_accuracy = None
    if kind == "probabilities" and split.labels is not None:
        ensemble_accuracy = float((targets.argmax(-1) == split.labels).mean())
    rows.append(
        ModelRow(
            f"ensemble of {len(ensemble.paths)}" if len(ensemble.paths) > 1 else "teacher",
            ensemble_accuracy,
            None,
            sum(s[0] for s in sizes[:-1]),
            sum(s[1] for s in sizes[:-1]),
            None if latencies is None else float(np.median(np.sum(latencies[:-1], 0))),
        )
    )
    student_accuracy = None
    if kind == "probabilities" and split.labels is not None:
        student_accuracy = float((student.argmax(-1) == split.labels).mean())
    unlabeled = _Split(outputs, None, split.name)
    rows.append(
        ModelRow(
            f"student ({student_path.name})",
            student_accuracy,
            score(student, unlabeled, loss),
            *sizes[-1],
            _median(latencies, -1),
        )
    )
    ratio = None if latencies is None else ratio_ci95(latencies[-1], np.sum(latencies[:-1], 0))
    return tuple(rows), ratio


def _latencies(
    sessions: list[Any], outputs: TeacherOutputs, ensemble: Teachers, runs: int
) -> list[np.ndarray] | None:
    """Per-session ms over interleaved rounds on single samples (the batch the teachers take)."""
    if runs <= 0:
        return None
    batch = next(
        (s.shape[0] for s in ensemble.inputs if s.shape and isinstance(s.shape[0], int)), 1
    )
    count = min(8, len(outputs) // max(batch, 1))
    feeds = [
        {n: np.asarray(a[i * batch : (i + 1) * batch]) for n, a in outputs.inputs.items()}
        for i in range(max(count, 1))
    ]
    return time_interleaved(sessions, feeds, warmup=5, runs=runs)


def _median(latencies: list[np.ndarray] | None, index: int) -> float | None:
    return None if latencies is None else float(np.median(latencies[index]))


def _size(path: Path) -> tuple[int, int]:
    return summarize(load_model(path)).weights.params, path.stat().st_size
