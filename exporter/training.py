"""The distillation training loop, with defaults that train until the student stops improving.

- Early stopping watches a held-out metric: `--eval` data when given, else 10 % of the
  training samples held out (seeded) and scored by the distillation loss; the best epoch is
  kept (the starting weights count as epoch 0, so a pretrained student never ends worse).
- No fixed epoch count: training runs until `patience` epochs bring no improvement (the
  learning rate halves after each third of that), up to `--epochs` or `MAX_EPOCHS`, or until
  the time budget is spent. The report says which ended it.
- Without `--lr`, a student from scratch gets its rate from a short learning-rate range test
  (Smith, 2017: the loss over a few dozen steps at exponentially growing rates; a tenth of the
  rate with the lowest loss), so a 2 k-parameter MLP and a larger CNN each get a rate that
  fits. A student that starts trained gets each weight tensor's rate scaled to its size
  (`parameter_groups`) and the rate of a short probe (`probe_rate`).
- Seeded and deterministic on CPU. A time budget can end it at a different step, of course,
  and it also lets the steps run in the mode measured fastest (step_mode.py): bfloat16 or
  channels-last round differently.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from onnxsmith.exporter.feature_hints import hint_loss
from onnxsmith.exporter.step_mode import StepMode, candidates, fastest
from onnxsmith.exporter.task_losses import PROBABILITY_EPS, detection_loss, soft_dice_loss
from onnxsmith.exporter.teacher_outputs import TeacherOutputs
from torch.utils import _pytree as pytree

from onnxsmith.errors import DataError, UsageError, name_list

LOSSES = ("kl", "mse", "cosine", "bce", "bce-dice", "kl-probs", "detection")
MAX_EPOCHS = 1000
LR_RANGE = (1e-6, 1.0)  # rates swept by the range test
LR_LIMITS = (1e-4, 3e-2)  # what the range test may pick: Adam's sane interval
# A student that starts from trained weights (an ONNX student, `prune --recover`) gets no range
# test: from trained weights the sweep's loss is batch noise over a flat curve, and its pick
# starved recovery (PP-OCR cls, 3,000 lines, 300 s: top-1 agreement 0.8825 at its 1e-4, 0.935
# at 3e-4, 0.96 at 1e-3). How far its start is from the teacher decides the rate instead: a
# student far off learns fastest at Adam's default 1e-3, one close to it loses at that rate what
# it had (PP-OCRv4 det pruned by sensitivity, held-out loss 0.016: after 32 steps 0.061 at 1e-3,
# 0.0148 at 3e-5). So each rate of `TRAINED_RATES` trains `PROBE_STEPS` steps from the start,
# and the one whose held-out metric ends best is kept.
TRAINED_RATES = (1e-3, 3e-4, 1e-4, 3e-5)
PROBE_STEPS = 16
LR_RANGE_STEPS = 60
LR_RANGE_SHARE = 0.2  # of the time budget, at most, for the range test
MIN_IMPROVEMENT = 1e-3  # relative; smaller changes of the watched metric are noise


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Training settings; `alpha` weighs the distillation term, 1 - alpha the hard labels.

    `epochs`, `lr` and `time_budget` at None mean: until early stopping, from the range test,
    unbounded.
    """

    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int | None = None
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 0.0
    loss: str = "kl"
    seed: int = 0
    patience: int = 10  # epochs without a better held-out metric before stopping
    holdout: float = 0.1  # share of the training samples held out when there is no eval set
    time_budget: float | None = None  # seconds of training, range test included
    bf16: bool | None = None  # bfloat16 autocast of steps; None: measured (step_mode.py)
    # > 0: an ONNX student pruned from the one teacher also learns the teacher's Conv outputs
    # on the channels it kept, this much against the output loss (feature_hints.py)
    hint_weight: float = 0.0

    def validate(self) -> None:
        """Raises UsageError naming the first setting out of range."""
        checks = [
            (self.loss in LOSSES, f"--loss must be one of {name_list(LOSSES)}"),
            (self.temperature > 0, "--temperature must be > 0"),
            (0 <= self.alpha <= 1, "--alpha must lie in [0, 1]"),
            (self.epochs is None or self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.lr is None or self.lr > 0, "--lr must be > 0"),
            (self.patience >= 1, "--patience must be >= 1"),
            (0 <= self.holdout < 1, "--holdout must lie in [0, 1)"),
            (self.time_budget is None or self.time_budget > 0, "--time-budget must be > 0"),
            (self.hint_weight >= 0, "hint_weight must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"distill: {message}")


@dataclasses.dataclass(frozen=True)
class Split:
    """Some samples (`rows` of the cached teacher outputs) with their labels and feature-hint
    targets, if any (both aligned with `outputs`, not with `rows`)."""

    outputs: TeacherOutputs
    labels: np.ndarray | None
    name: str
    rows: np.ndarray
    hints: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def inputs(self) -> dict[str, np.ndarray]:
        return {n: np.asarray(a[self.rows]) for n, a in self.outputs.inputs.items()}

    def targets(self) -> np.ndarray:
        return np.asarray(self.outputs.targets[self.rows])

    def predictions(self) -> np.ndarray:
        return np.asarray(self.outputs.predictions[self.rows])

    def hard_labels(self) -> np.ndarray | None:
        return None if self.labels is None else self.labels[self.rows]


def whole(outputs: TeacherOutputs, labels: np.ndarray | None, name: str) -> Split:
    return Split(outputs, labels, name, np.arange(len(outputs)))


def hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split | None]:
    """(training part, held-out part): `fraction` of the samples, chosen by `seed`.

    Nothing is held out when that would leave no sample on either side.
    """
    count = round(len(split) * fraction)
    if count < 1 or count >= len(split):
        return split, None
    order = np.random.default_rng(seed).permutation(len(split))
    held = np.sort(split.rows[order[:count]])
    kept = np.sort(split.rows[order[count:]])
    return (
        dataclasses.replace(split, rows=kept),
        dataclasses.replace(split, rows=held, name=f"{count} held-out training samples"),
    )


@dataclasses.dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss, the watched metric, whether it is the best so far."""

    epoch: int
    loss: float
    metric: float
    best: bool
    seconds: float
    lr: float


@dataclasses.dataclass(frozen=True)
class Training:
    """How training went and why it ended."""

    history: tuple[EpochStats, ...]
    best_epoch: int  # 0: the starting weights were never beaten
    metric: str  # what early stopping watched
    stop_reason: str
    lr: float
    lr_source: str
    seconds: float
    step_mode: str  # how steps ran (float32 / bfloat16, layout) and why

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason.startswith("no improvement")


StepCallback = Callable[[int, int, int, float], None]  # epoch, step, steps, loss
EpochCallback = Callable[[EpochStats], None]


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def metric_name(evaluation: Split | None, watch_loss: bool, config: DistillConfig) -> str:
    """What early stopping watches: the eval metric, the held-out loss, or the training loss."""
    if evaluation is None:
        return "training loss"
    if watch_loss:
        return "held-out loss"
    if config.loss != "kl":
        return "cosine"
    return "accuracy" if evaluation.labels is not None else "agreement"


def train_student(
    student: torch.nn.Module,
    train: Split,
    evaluation: Split | None,
    input_names: Sequence[str],
    config: DistillConfig,
    *,
    checkpoint: Path,
    watch_loss: bool = False,
    trained: bool = False,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
) -> Training:
    """Trains `student` in place and leaves it at its best epoch, in eval mode.

    Args:
        watch_loss: stop on the distillation loss of `evaluation` (a held-out part of the
            training data) instead of its accuracy / agreement / cosine.
        trained: the student starts from trained weights (no range test: `TRAINED_LR`).
    """
    parameters = [p for p in student.parameters() if p.requires_grad]
    if not parameters:
        raise UsageError(
            f"distill: the student {type(student).__name__} has no trainable parameters — "
            "pass a model with learnable layers"
        )
    fixed = _fixed_batch(student)
    if fixed is not None and fixed != config.batch_size:
        config = dataclasses.replace(config, batch_size=fixed)  # the only size it runs
    start = time.perf_counter()
    deadline = math.inf if config.time_budget is None else start + config.time_budget
    name = metric_name(evaluation, watch_loss, config)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with _deterministic():
        _check_output(student, train, input_names)
        mode, why = step_mode(student, train, input_names, config)
        if config.lr is not None:
            lr, source = config.lr, "given by --lr"
        elif trained:
            lr, source = probe_rate(
                student, train, evaluation, input_names, config, mode, watch_loss
            )
        else:
            share = None if config.time_budget is None else config.time_budget * LR_RANGE_SHARE
            lr = find_lr(student, train, input_names, config, mode, seconds=share)
            source = "picked by a learning-rate range test"
        optimizer = torch.optim.AdamW(
            parameter_groups(student, relative=trained), weight_decay=config.weight_decay
        )
        set_rate(optimizer, lr)
        generator = torch.Generator().manual_seed(config.seed)
        steps = (len(train) + config.batch_size - 1) // config.batch_size
        limit = config.epochs or MAX_EPOCHS
        best_score = _watch(student, train, evaluation, input_names, config, watch_loss)
        torch.save(student.state_dict(), checkpoint)
        best_epoch, stale, reason = 0, 0, ""
        history: list[EpochStats] = []
        for epoch in range(1, limit + 1):
            began = time.perf_counter()
            student.train()
            order = torch.randperm(len(train), generator=generator).numpy()
            losses = []
            for step in range(steps):
                index = np.sort(order[step * config.batch_size : (step + 1) * config.batch_size])
                loss = _step(student, train, input_names, index, config, mode, optimizer)
                losses.append(loss)
                if on_step is not None:
                    on_step(epoch, step + 1, steps, loss)
                if time.perf_counter() > deadline:
                    reason = f"time budget of {config.time_budget:g} s spent"
                    break
            score = _watch(student, train, evaluation, input_names, config, watch_loss)
            improved = score > best_score + MIN_IMPROVEMENT * abs(best_score) + 1e-12
            if improved:
                best_score, best_epoch, stale = score, epoch, 0
                torch.save(student.state_dict(), checkpoint)
            else:
                stale += 1
            shown = -score if watch_loss or evaluation is None else score
            stats = EpochStats(
                epoch, float(np.mean(losses)), shown, improved, time.perf_counter() - began, lr
            )
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
            if reason:
                break
            if stale >= config.patience:
                reason = f"no improvement of the {name} for {config.patience} epochs"
                break
            if stale and stale % max(1, config.patience // 3) == 0:
                lr /= 2  # a plateau: a smaller step may still find a better minimum
                set_rate(optimizer, lr)
        else:
            reason = f"reached --epochs {limit}" if config.epochs else f"reached {limit} epochs"
    student.load_state_dict(torch.load(checkpoint, weights_only=True))
    student.eval()
    return Training(
        history=tuple(history),
        best_epoch=best_epoch,
        metric=name,
        stop_reason=reason,
        lr=history[0].lr if history else lr,
        lr_source=source,
        seconds=time.perf_counter() - start,
        step_mode=f"{mode.describe()} ({why})",
    )


def _step(
    student: torch.nn.Module,
    split: Split,
    input_names: Sequence[str],
    index: np.ndarray,
    config: DistillConfig,
    mode: StepMode,
    optimizer: torch.optim.Optimizer | None = None,
) -> float:
    """One forward and backward pass on `split`'s samples at `index`; with `optimizer`, also
    the update. Returns the loss."""
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    inputs, targets, hard = batch(split, input_names, index)
    with mode.autocast():
        outputs = student(*mode.layout(inputs))
    loss = distillation_loss(first_tensor(outputs).float(), targets, hard, config)
    if split.hints:  # the student returns its output, then the hinted tensors in this order
        rows = split.rows[index]
        wanted = [torch.from_numpy(h[rows].astype(np.float32)) for h in split.hints.values()]
        loss = loss + config.hint_weight * hint_loss(outputs[1:], wanted)
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    return float(loss.item())


def step_mode(
    student: torch.nn.Module, train: Split, input_names: Sequence[str], config: DistillConfig
) -> tuple[StepMode, str]:
    """How steps run: without a time budget as configured (float32 unless `bf16`), so a run
    repeats bit for bit; with one, the fastest mode measured on a few steps (step_mode.py)."""
    if config.time_budget is None:
        return StepMode(bf16=bool(config.bf16)), "as configured (no time budget)"
    index = np.arange(min(config.batch_size, len(train)))
    images = any(train.outputs.inputs[name].ndim == 4 for name in input_names)
    student.train()
    return fastest(
        candidates(config.bf16, images),
        lambda mode: _step(student, train, input_names, index, config, mode),
        student,
    )


def parameter_groups(student: torch.nn.Module, *, relative: bool) -> list[dict[str, Any]]:
    """The student's trainable parameters as optimizer groups, each with a `scale` of the rate.

    `relative`: each weight tensor (2 or more dimensions) steps at the rate times its RMS over
    the median weight's RMS, at most 1. Adam moves every parameter by about the rate whatever
    its size, and folding BatchNormalization leaves weights whose size has nothing to do with
    their effect: the PP-OCRv4 detector's head conv has an RMS of 3e-5 (the median, 0.2), and
    one step at 1e-4 there took the converted original's output error from 0 to 2.3 (relative
    squared error). Biases and other constants step at the rate.
    """
    parameters = [p for p in student.parameters() if p.requires_grad]
    if not relative:
        return [{"params": parameters, "scale": 1.0}]
    sizes = [float(p.detach().float().pow(2).mean().sqrt()) for p in parameters]
    weights = [size for p, size in zip(parameters, sizes, strict=True) if p.ndim >= 2]
    median = float(np.median(weights)) if weights else 1.0
    return [
        {"params": [p], "scale": min(1.0, size / median) if p.ndim >= 2 and median > 0 else 1.0}
        for p, size in zip(parameters, sizes, strict=True)
    ]


def set_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Every group's rate: `rate` times the group's `scale` (`parameter_groups`)."""
    for group in optimizer.param_groups:
        group["lr"] = rate * group["scale"]


def probe_rate(
    student: torch.nn.Module,
    train: Split,
    evaluation: Split | None,
    input_names: Sequence[str],
    config: DistillConfig,
    mode: StepMode,
    watch_loss: bool,
) -> tuple[float, str]:
    """The rate of `TRAINED_RATES` whose `PROBE_STEPS` steps from the student's trained start
    (the same batches for each) end with the best watched metric, and a line that says so.
    The student's weights are restored afterwards."""
    state = copy.deepcopy(student.state_dict())
    generator = torch.Generator().manual_seed(config.seed + 2)
    count = min(PROBE_STEPS, math.ceil(len(train) / config.batch_size))
    batches = [
        np.sort(torch.randperm(len(train), generator=generator)[: config.batch_size].numpy())
        for _ in range(count)
    ]
    scores = {}
    for rate in TRAINED_RATES:
        optimizer = torch.optim.AdamW(
            parameter_groups(student, relative=True), weight_decay=config.weight_decay
        )
        set_rate(optimizer, rate)
        student.train()
        for index in batches:
            _step(student, train, input_names, index, config, mode, optimizer)
        scores[rate] = _watch(student, train, evaluation, input_names, config, watch_loss)
        student.load_state_dict(state)
    best = max(TRAINED_RATES, key=lambda rate: scores[rate])
    sign = -1 if watch_loss or evaluation is None else 1
    tried = ", ".join(f"{rate:g}: {sign * score:.4g}" for rate, score in scores.items())
    return best, f"probed for a student that starts trained, {count} steps each ({tried})"


def find_lr(
    student: torch.nn.Module,
    train: Split,
    input_names: Sequence[str],
    config: DistillConfig,
    mode: StepMode,
    seconds: float | None = None,
) -> float:
    """A tenth of the rate at which the smoothed loss of a short exponential sweep is lowest.

    The student's weights (and buffers) are restored afterwards. With `seconds`, the sweep
    stops there (a large student on large inputs), judged on the rates it reached.
    """
    stop = math.inf if seconds is None else time.perf_counter() + seconds
    state = copy.deepcopy(student.state_dict())
    low, high = LR_RANGE
    factor = (high / low) ** (1 / (LR_RANGE_STEPS - 1))
    optimizer = torch.optim.AdamW(
        [p for p in student.parameters() if p.requires_grad], lr=low, weight_decay=0.0
    )
    generator = torch.Generator().manual_seed(config.seed + 1)
    rates: list[float] = []
    smoothed: list[float] = []
    average = 0.0
    student.train()
    for i in range(LR_RANGE_STEPS):
        rate = low * factor**i
        for group in optimizer.param_groups:
            group["lr"] = rate
        index = np.sort(
            torch.randperm(len(train), generator=generator)[: config.batch_size].numpy()
        )
        loss = _step(student, train, input_names, index, config, mode, optimizer)
        if not math.isfinite(loss):
            break
        average = 0.9 * average + 0.1 * loss
        smoothed.append(average / (1 - 0.9 ** (i + 1)))
        rates.append(rate)
        if (i > 5 and smoothed[-1] > 4 * min(smoothed)) or time.perf_counter() > stop:
            break
    student.load_state_dict(state)
    if not rates:
        return LR_LIMITS[0]
    best = rates[int(np.argmin(smoothed))] / 10
    return float(min(max(best, LR_LIMITS[0]), LR_LIMITS[1]))


def _watch(
    student: torch.nn.Module,
    train: Split,
    evaluation: Split | None,
    input_names: Sequence[str],
    config: DistillConfig,
    watch_loss: bool,
) -> float:
    """The watched metric, higher is better (losses are negated)."""
    if evaluation is None:
        return -mean_loss(student, train, input_names, config)
    if watch_loss:
        return -mean_loss(student, evaluation, input_names, config)
    return evaluate(student, evaluation, input_names, config)


def batch(
    split: Split, input_names: Sequence[str], index: np.ndarray
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """Inputs, ensemble targets and labels of `split`'s samples at positions `index`."""
    rows = split.rows[index]
    inputs = [torch.from_numpy(np.asarray(split.outputs.inputs[n][rows])) for n in input_names]
    targets = torch.from_numpy(np.asarray(split.outputs.targets[rows]))
    hard = None if split.labels is None else torch.from_numpy(split.labels[rows])
    return inputs, targets, hard


def first_tensor(output: Any) -> torch.Tensor:
    """The student's prediction: its output, or the first tensor of a tuple or dict."""
    for leaf in pytree.tree_leaves(output):
        if isinstance(leaf, torch.Tensor):
            return leaf
    raise DataError("distill: the student returns no tensor — return the logits")


def _check_output(student: torch.nn.Module, train: Split, input_names: Sequence[str]) -> None:
    inputs, targets, _ = batch(
        train, input_names, np.arange(min(_fixed_batch(student) or 2, len(train)))
    )
    with torch.no_grad():
        prediction = first_tensor(student.eval()(*inputs))
    if prediction.shape != targets.shape:
        raise DataError(
            f"distill: the student returns shape {tuple(prediction.shape)} for a batch where the "
            f"teachers return {tuple(targets.shape)} — make the student's output match (e.g. "
            f"{targets.shape[-1]} classes)"
        )


def _fixed_batch(student: torch.nn.Module) -> int | None:
    """The batch size an ONNX student's graph fixes (OnnxModule), None for any other."""
    return getattr(student, "fixed_batch", None)


def distillation_loss(
    prediction: torch.Tensor,
    targets: torch.Tensor,
    labels: torch.Tensor | None,
    config: DistillConfig,
) -> torch.Tensor:
    """Hinton KD (KL(targets ‖ softmax(pred/T)) · T²) mixed with CE by `alpha`; or MSE, cosine,
    BCE between outputs that already are probabilities (Sigmoid maps) and targets, or Hinton KD
    on the logs of Softmax outputs (`kl-probs`)."""
    if config.loss == "mse":
        return F.mse_loss(prediction, targets)
    if config.loss in ("bce", "bce-dice"):
        # log-scale gradients where MSE on a probability saturates (a confidently wrong class)
        bounded = prediction.clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)
        bce = F.binary_cross_entropy(bounded, targets.clamp(0, 1))
        return bce if config.loss == "bce" else bce + soft_dice_loss(prediction, targets)
    if config.loss == "detection":
        return detection_loss(prediction, targets)
    if config.loss == "kl-probs":
        # Softmax outputs: their logs are logits up to a constant, so Hinton's softened KL applies
        prediction = torch.log(prediction.clamp_min(PROBABILITY_EPS))
        targets = F.softmax(torch.log(targets.clamp_min(PROBABILITY_EPS)) / config.temperature, -1)
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


def predictions(
    student: torch.nn.Module, split: Split, input_names: Sequence[str]
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(positions, student output) over `split` in chunks, in eval mode without gradients."""
    chunk = _fixed_batch(student) or 256
    student.eval()
    with torch.no_grad():
        for start in range(0, len(split), chunk):
            index = np.arange(start, min(start + chunk, len(split)))
            inputs, _, _ = batch(split, input_names, index)
            yield index, first_tensor(student(*inputs))


def mean_loss(
    student: torch.nn.Module, split: Split, input_names: Sequence[str], config: DistillConfig
) -> float:
    """The distillation loss over all of `split` (sample-weighted mean of its chunks)."""
    total = 0.0
    for index, output in predictions(student, split, input_names):
        _, targets, hard = batch(split, input_names, index)
        total += float(distillation_loss(output, targets, hard, config)) * len(index)
    return total / len(split)


def evaluate(
    student: torch.nn.Module, split: Split, input_names: Sequence[str], config: DistillConfig
) -> float:
    """Accuracy on labels, else argmax agreement with the ensemble (cosine for raw outputs)."""
    parts = [output.numpy() for _, output in predictions(student, split, input_names)]
    return score(np.concatenate(parts), split, config.loss)


def score(prediction: np.ndarray, split: Split, loss: str) -> float:
    """The eval metric of `prediction` (student outputs for every sample of `split`)."""
    targets = split.targets()
    if loss != "kl":
        return cosine(prediction, targets)
    labels = split.hard_labels()
    reference = labels if labels is not None else targets.argmax(-1)
    return float((prediction.argmax(-1) == reference).mean())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-sample cosine similarity of two stacks of outputs."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(((a * b).sum(1) / np.maximum(norms, 1e-12)).mean())
