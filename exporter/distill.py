"""`distill`: train a student on what ONNX teachers predict, then write it as ONNX.

Teachers run once in ONNX Runtime (`teacher_outputs`, cached on disk); the student trains on
their averaged softened outputs with Hinton's loss (KL at temperature T, times T²), mixed with
hard-label cross-entropy when labels are given; MSE or cosine for embeddings, maps and boxes.
The student is a PyTorch module (`FILE.py:FACTORY`), exported with `export_model`, or an ONNX
file, converted to torch from its weights (`onnx_module`) and written back into its own graph;
either way the written model is parity-checked against the trained module. Training
(`training.train_student`) stops on a held-out metric and says why.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from onnxsmith.exporter.export import ExportReport, export_model
from onnxsmith.exporter.feature_hints import feature_hints
from onnxsmith.exporter.onnx_module import OnnxModule, check_conversion, write_back
from onnxsmith.exporter.parity import Case, check_parity
from onnxsmith.exporter.targets import load_target
from onnxsmith.exporter.teacher_outputs import (
    Teachers,
    load_teachers,
    teacher_outputs,
)
from onnxsmith.exporter.training import (
    DistillConfig,
    EpochCallback,
    EpochStats,
    Split,
    StepCallback,
    Training,
    batch,
    cosine,
    hold_out,
    score,
    train_student,
    whole,
)
from onnxsmith.runtime.labels import load_labels
from onnxsmith.runtime.predict import predict
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved

from onnxsmith.errors import DataError, ExportError, UsageError
from onnxsmith.io import load_model, save_model
from onnxsmith.provenance import record_step
from onnxsmith.signature import fixed_batch
from onnxsmith.summary import summarize

__all__ = ["DistillConfig", "DistillReport", "EpochStats", "ModelRow", "distill"]
Student = torch.nn.Module | Callable[[], torch.nn.Module] | str | os.PathLike[str]
PARITY_FEEDS = 8  # training samples the written student is checked on
WRITE_BACK_TOLERANCE = 5e-2  # of each output's largest value (see _write_back)


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
    """Training history, the written student, and how it compares with its teachers."""

    training: Training
    evaluated_on: str
    rows: tuple[ModelRow, ...]
    latency_ratio: tuple[float, float, float] | None  # student / ensemble, 95 % interval
    teachers_reused: bool
    export: ExportReport
    hints: str | None = None  # what the student matched besides the output (feature_hints.py)

    @property
    def history(self) -> tuple[EpochStats, ...]:
        return self.training.history

    def as_dict(self) -> dict[str, Any]:
        training = self.training
        return {
            "history": [dataclasses.asdict(e) for e in training.history],
            "best_epoch": training.best_epoch,
            "stopped_early": training.stopped_early,
            "stop_reason": training.stop_reason,
            "metric": training.metric,
            "lr": training.lr,
            "lr_source": training.lr_source,
            "step_mode": training.step_mode,
            "train_seconds": training.seconds,
            "evaluated_on": self.evaluated_on,
            "models": [dataclasses.asdict(r) for r in self.rows],
            "latency_ratio": self.latency_ratio,
            "teachers_reused": self.teachers_reused,
            "export": self.export.as_dict(),
            "hints": self.hints,
        }


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
        student: an untrained module, a callable building one, a `file.py:factory` /
            `module:factory` target (built after seeding, so its init is reproducible), or an
            `.onnx` file (trained from its weights; it must take the teachers' inputs).
        data: training data dir (see `runtime.data.DataDir`).
        output: where the student's ONNX goes; nothing is written unless parity holds.
        labels: folder with one `.npz` (key `label`) per data file; enables the CE term.
        eval_data: data dir for early stopping and the final comparison (default: 10 % of
            `data`, see `config.holdout`).
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
        ExportError: the trained student cannot be written faithfully.
    """
    config = config or DistillConfig()
    config.validate()
    if labels is not None and config.loss != "kl":
        raise UsageError("distill: --labels needs --loss kl (hard labels are class ids)")
    if eval_labels is not None and eval_data is None:
        raise UsageError("distill: --eval-labels needs --eval DIR")
    if config.hint_weight > 0 and (len(teachers) != 1 or not str(student).endswith(".onnx")):
        raise UsageError(
            "distill: feature hints need one teacher and an ONNX student pruned from it"
        )
    output = Path(output)
    work = Path(work_dir) if work_dir is not None else output.with_suffix(".distill")
    ensemble = load_teachers(teachers, weights=weights, output=teacher_output)
    kind = "probabilities" if config.loss == "kl" else "raw"
    train = _split(ensemble, data, labels, work / "train", kind, config, "training data")
    evaluation: Split | None
    if eval_data is not None:
        evaluation = _split(ensemble, eval_data, eval_labels, work / "eval", kind, config, "eval")
    else:
        train, evaluation = hold_out(train, config.holdout, config.seed)
    names = [s.name for s in ensemble.inputs]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module, onnx_student = _build(student, train, names, ensemble.output.name)
        hints = None
        if config.hint_weight > 0:
            assert isinstance(module, OnnxModule) and onnx_student is not None  # checked above
            hints = feature_hints(load_model(ensemble.paths[0]), onnx_student, train.outputs.inputs)
            if hints is not None:
                module.returned = [*module.returned[:1], *hints.names]
                train = dataclasses.replace(train, hints=hints.targets)
        training = train_student(
            module,
            train,
            evaluation,
            names,
            config,
            checkpoint=work / "best.pt",
            watch_loss=eval_data is None,
            trained=onnx_student is not None,
            on_step=on_step,
            on_epoch=on_epoch,
        )
    if onnx_student is None:
        onnx_model, exported = _export(module, ensemble, train)
    else:
        assert isinstance(module, OnnxModule)
        onnx_model, exported = _write_back(onnx_student, module, train, names)
    record_step(
        onnx_model,
        "distill",
        {
            "teachers": [p.name for p in ensemble.paths],
            "weights": ensemble.weights,
            "best_epoch": training.best_epoch,
            "stop_reason": training.stop_reason,
            **dataclasses.asdict(config),
            "lr": training.lr,
        },
    )
    save_model(onnx_model, output, inputs=ensemble.paths)
    reference = evaluation or train
    rows, ratio = compare(ensemble, output, reference, kind, latency_runs)
    return DistillReport(
        training=training,
        evaluated_on=reference.name,
        rows=rows,
        latency_ratio=ratio,
        teachers_reused=train.outputs.reused,
        export=exported,
        hints=None if hints is None else hints.describe(),
    )


def _split(
    ensemble: Teachers,
    data: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None,
    work: Path,
    kind: str,
    config: DistillConfig,
    name: str,
) -> Split:
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
    return whole(outputs, hard, name)


def _build(
    student: Student, train: Split, input_names: Sequence[str], output: str
) -> tuple[torch.nn.Module, ir.Model | None]:
    """The student module, and its ONNX graph when it came from an `.onnx` file."""
    if isinstance(student, (str, os.PathLike)) and str(student).endswith(".onnx"):
        return _from_onnx(Path(student), train, input_names, output)
    if isinstance(student, str):
        student = load_target(student, step="distill").model
    elif not isinstance(student, torch.nn.Module) and callable(student):
        student = student()
    if not isinstance(student, torch.nn.Module):
        raise UsageError(
            f"distill: the student is a {type(student).__name__} — pass a torch.nn.Module, a "
            "callable returning one, FILE.py:FACTORY or STUDENT.onnx"
        )
    return student, None


def _from_onnx(
    path: Path, train: Split, input_names: Sequence[str], output: str
) -> tuple[OnnxModule, ir.Model]:
    """Converts an ONNX student to torch and checks the conversion on training samples."""
    model = load_model(path)
    module = OnnxModule(model, f"distill: student {path}")
    if sorted(module.input_names) != sorted(input_names):
        raise DataError(
            f"distill: student {path} takes inputs {module.input_names}, the teachers take "
            f"{list(input_names)} — the student must take the teachers' inputs"
        )
    if output not in module.output_names:
        raise DataError(
            f"distill: student {path} has no output {output!r} (the teachers' learned output); "
            f"its outputs are {module.output_names} — rename it or pass --teacher-output"
        )
    module.input_names = list(input_names)  # fed in the teachers' order
    module.returned = [output]  # what training sees
    check_conversion(model, module, _feeds(train, input_names))
    return module, model


def _feeds(split: Split, input_names: Sequence[str]) -> list[dict[str, np.ndarray]]:
    count = min(PARITY_FEEDS, len(split))
    inputs, _, _ = batch(split, input_names, np.arange(count))
    return [{n: t.numpy()[i : i + 1] for n, t in zip(input_names, inputs, strict=True)}
            for i in range(count)]  # fmt: skip


def _write_back(
    model: ir.Model, module: OnnxModule, train: Split, input_names: Sequence[str]
) -> tuple[ir.Model, ExportReport]:
    """The ONNX student with its trained weights, checked against the module in ORT."""
    start = time.perf_counter()
    trained = write_back(model, module)
    cases = []
    with torch.no_grad():
        for i, feed in enumerate(_feeds(train, input_names)):
            inputs = tuple(torch.from_numpy(feed[n]) for n in module.input_names)
            values = module.run(inputs)
            expected = tuple(values[n].numpy() for n in module.output_names)
            cases.append(Case(f"training sample {i}", inputs, expected))
    # A wrong write-back (a weight in the wrong place) moves the outputs by their own scale;
    # float32 summation order in a deep CNN moved a trained 320×448 text map (PP-OCRv4 det) by
    # up to 0.3 % of it, and 2.25 % after another training run (a pixel on the Sigmoid's steep
    # part). The conversion itself was checked at 1e-3 before training.
    peaks = [float(np.max(np.abs(e))) for case in cases for e in case.expected or () if e.size]
    tolerance = WRITE_BACK_TOLERANCE * max(peaks, default=1.0)
    parity = check_parity(
        trained, cases, module.input_names, module.output_names, atol=tolerance, rtol=0.0
    )
    if not parity.passed:
        raise ExportError(
            f"{module.label}: the trained weights written back into the graph do not "
            f"reproduce the trained module — {parity.first_failure()}; nothing written"
        )
    report = ExportReport(
        exporter="ONNX student (weights written back into its graph)",
        attempts=(),
        opset=model.opset_imports.get("", 0),
        inputs=tuple(module.input_names),
        outputs=tuple(module.output_names),
        pipeline=None,
        parity=parity,
        warnings=(),
        nodes=len(list(trained.graph)),
        weight_bytes=sum(w.numel() * 4 for w in module.weights),
        seconds=time.perf_counter() - start,
    )
    return trained, report


def _export(module: torch.nn.Module, ensemble: Teachers, train: Split) -> tuple[Any, ExportReport]:
    """Exports the student with the teachers' input/output names and symbolic axes."""
    names = [s.name for s in ensemble.inputs]
    inputs, _, _ = batch(train, names, np.arange(min(8, len(train))))
    axes: dict[str, dict[int, str]] = {}
    for spec in ensemble.inputs:
        for axis, dim in enumerate(spec.shape or ()):
            if not isinstance(dim, int):
                # PaddlePaddle names every free axis "?": free, not equal to one another
                named = dim if isinstance(dim, str) and dim.strip("?") else None
                axes.setdefault(spec.name, {})[axis] = named or f"{spec.name}_dim{axis}"
    return export_model(
        module,
        tuple(inputs),
        input_names=names,
        output_names=[ensemble.output.name],
        dynamic_axes=axes,
    )


def compare(
    ensemble: Teachers, student_path: Path, split: Split, kind: str, latency_runs: int
) -> tuple[tuple[ModelRow, ...], tuple[float, float, float] | None]:
    """Teachers, ensemble and the written student on `split`, all run in ONNX Runtime."""
    inputs = split.inputs()
    sessions = [create_session(p) for p in (*ensemble.paths, student_path)]
    index = [o.name for o in sessions[-1].get_outputs()].index(ensemble.output.name)
    student = predict(sessions[-1], inputs, output=index, label=str(student_path))
    targets, labels = split.targets(), split.hard_labels()
    latencies = _latencies(sessions, inputs, ensemble, latency_runs)
    sizes = [_size(p) for p in (*ensemble.paths, student_path)]
    rows = []
    votes = split.predictions()
    for t, path in enumerate(ensemble.paths):
        accuracy = agreement = None
        if kind == "probabilities":
            agreement = float((votes[..., t] == targets.argmax(-1)).mean())
            if labels is not None:
                accuracy = float((votes[..., t] == labels).mean())
        rows.append(ModelRow(path.name, accuracy, agreement, *sizes[t], _median(latencies, t)))
    ensemble_accuracy = student_accuracy = None
    if kind == "probabilities" and labels is not None:
        ensemble_accuracy = float((targets.argmax(-1) == labels).mean())
        student_accuracy = float((student.argmax(-1) == labels).mean())
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
    unlabeled = dataclasses.replace(split, labels=None)
    agreement = score(student, unlabeled, "kl") if kind == "probabilities" else None
    rows.append(
        ModelRow(
            f"student ({student_path.name})",
            student_accuracy,
            agreement if agreement is not None else cosine(student, targets),
            *sizes[-1],
            _median(latencies, -1),
        )
    )
    ratio = None if latencies is None else ratio_ci95(latencies[-1], np.sum(latencies[:-1], 0))
    return tuple(rows), ratio


def _latencies(
    sessions: list[Any], inputs: dict[str, np.ndarray], ensemble: Teachers, runs: int
) -> list[np.ndarray] | None:
    """Per-session ms over interleaved rounds on single samples (the batch the teachers take)."""
    if runs <= 0:
        return None
    batch = fixed_batch(ensemble.inputs) or 1
    count = min(8, len(next(iter(inputs.values()))) // max(batch, 1))
    feeds = [
        {n: a[i * batch : (i + 1) * batch] for n, a in inputs.items()} for i in range(max(count, 1))
    ]
    return time_interleaved(sessions, feeds, warmup=5, runs=runs)


def _median(latencies: list[np.ndarray] | None, index: int) -> float | None:
    return None if latencies is None else float(np.median(latencies[index]))


def _size(path: Path) -> tuple[int, int]:
    return summarize(load_model(path)).weights.params, path.stat().st_size
