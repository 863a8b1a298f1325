"""Teacher outputs for distillation: run every ONNX teacher once, keep the result on disk.

The data dir is read one feed at a time; its samples (stacked along axis 0) and the ensemble's
targets go into memory-mapped `.npy` files in a work dir, so training epochs index them without
re-running teachers or holding the set in memory. A key of the teachers, the data and the
options sits beside them; a later run with the same key reuses the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from onnxsmith.runtime.data import DataDir, Feed
from onnxsmith.runtime.session import create_session, run

from onnxsmith.errors import DataError, UsageError, name_list
from onnxsmith.io import load_model
from onnxsmith.signature import TensorSpec, fixed_batch, input_specs, output_specs

KINDS = ("probabilities", "raw")
_CHUNK = 256  # samples per teacher run when the teachers take any batch size


@dataclasses.dataclass(frozen=True)
class Teachers:
    """Teacher model files, checked to share one interface."""

    paths: tuple[Path, ...]
    inputs: tuple[TensorSpec, ...]
    output: TensorSpec  # the output learned from (same name and shape in every teacher)
    weights: tuple[float, ...]  # normalized to sum 1


@dataclasses.dataclass(frozen=True)
class TeacherOutputs:
    """Stacked samples and what the ensemble says about them, memory-mapped.

    `targets` are the weighted mean of the teachers' temperature-softened probabilities
    (kind `probabilities`) or of their raw outputs (kind `raw`); `predictions[..., t]` is
    teacher t's argmax (shape (N, *positions, teachers); (N, 0) for kind `raw`).
    """

    inputs: dict[str, np.ndarray]
    targets: np.ndarray
    predictions: np.ndarray
    files: tuple[Path, ...]  # the data files, in the order their samples were stacked
    file_sizes: tuple[int, ...]  # samples in each of them
    reused: bool

    def __len__(self) -> int:
        return len(self.targets)


def load_teachers(
    paths: Sequence[str | os.PathLike[str]],
    *,
    weights: Sequence[float] | None = None,
    output: str | None = None,
    step: str = "distill",
) -> Teachers:
    """Loads the teachers' interfaces and checks they agree.

    Raises:
        UsageError: no teachers, bad weights, or an unknown output name.
        DataError: teachers that differ in inputs or in the learned output.
    """
    if not paths:
        raise UsageError(f"{step}: give at least one teacher .onnx")
    if weights is None:
        weights = [1.0] * len(paths)
    if len(weights) != len(paths) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UsageError(
            f"{step}: --weights needs {len(paths)} non-negative numbers (one per teacher) with "
            f"a positive sum, got {list(weights)}"
        )
    models = [load_model(p) for p in paths]
    inputs = input_specs(models[0])
    outputs = [
        _learned_output(m, Path(p), output, step) for m, p in zip(models, paths, strict=True)
    ]
    for model, path, out in zip(models[1:], paths[1:], outputs[1:], strict=True):
        if _signature(input_specs(model)) != _signature(inputs):
            raise DataError(
                f"{step}: teacher {path} takes {_describe(input_specs(model))}, {paths[0]} takes "
                f"{_describe(inputs)} — ensemble members must take the same inputs"
            )
        shape, first = out.shape, outputs[0].shape
        if (
            shape is not None
            and first is not None
            and (shape[1:] != first[1:] or out.dtype != outputs[0].dtype)
        ):
            raise DataError(
                f"{step}: teacher {path} outputs {out.describe()}, {paths[0]} outputs "
                f"{outputs[0].describe()} — ensemble members must predict the same classes"
            )
    total = float(sum(weights))
    return Teachers(
        paths=tuple(Path(p) for p in paths),
        inputs=tuple(inputs),
        output=outputs[0],
        weights=tuple(float(w) / total for w in weights),
    )


def _learned_output(model, path: Path, name: str | None, step: str) -> TensorSpec:
    specs = output_specs(model)
    if name is None:
        return specs[0]
    for spec in specs:
        if spec.name == name:
            return spec
    raise UsageError(
        f"{step}: teacher {path} has no output {name!r} — its outputs are "
        f"{name_list(s.name for s in specs)}"
    )


def _signature(specs: Sequence[TensorSpec]) -> list[tuple[str, str, int | None]]:
    return [(s.name, str(s.dtype), None if s.shape is None else len(s.shape)) for s in specs]


def _describe(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(s.describe() for s in specs)


def teacher_outputs(
    teachers: Teachers,
    data: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    kind: str,
    temperature: float = 1.0,
    step: str = "distill",
) -> TeacherOutputs:
    """Runs every teacher over `data` once (or reuses a matching cache in `work_dir`).

    Args:
        teachers: from `load_teachers`.
        data: a data dir (see `runtime.data.DataDir`); every feed's inputs share axis 0.
        work_dir: folder for the memory-mapped arrays and the cache key.
        kind: `probabilities` (softened by `temperature`) or `raw` outputs.
        temperature: softmax temperature for `probabilities`.

    Raises:
        DataError: the data does not fit the teachers, or shapes vary between files.
    """
    if kind not in KINDS:
        raise UsageError(f"{step}: kind {kind!r} is not one of {name_list(KINDS)}")
    if temperature <= 0:
        raise UsageError(f"{step}: --temperature must be > 0, got {temperature}")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    source = DataDir(Path(data), list(teachers.inputs), step=step)
    key = _cache_key(teachers, source, kind, temperature)
    cached = _open_cache(work, key, teachers)
    if cached is not None:
        return cached
    (work / "key.json").unlink(missing_ok=True)
    # New files are written aside and moved in at the end: arrays mapped from an earlier run
    # keep their contents, and an interrupted run leaves no half-written cache behind.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=work))
    try:
        source_sizes = _compute(teachers, source, staging, kind, temperature, step)
        for file in staging.iterdir():
            os.replace(file, work / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record = {"key": key, "files": [str(f) for f in source.files], "file_sizes": source_sizes}
    (work / "key.json").write_text(json.dumps(record) + "\n")
    cached = _open_cache(work, key, teachers)
    assert cached is not None
    return dataclasses.replace(cached, reused=False)


def _compute(
    teachers: Teachers, source: DataDir, work: Path, kind: str, temperature: float, step: str
) -> list[int]:
    """Writes inputs, targets and predictions into `work`; returns samples per data file."""
    sizes, shapes, dtypes = _survey(source, teachers, step)
    total = sum(sizes)
    inputs = {
        spec.name: np.lib.format.open_memmap(
            work / f"input_{i}.npy",
            mode="w+",
            dtype=dtypes[spec.name],
            shape=(total, *shapes[spec.name]),
        )
        for i, spec in enumerate(teachers.inputs)
    }
    sessions = [create_session(p) for p in teachers.paths]
    targets = predictions = None
    start = 0
    for feed in _chunks(source, teachers):
        count = len(next(iter(feed.values())))
        outputs = [
            _output(s, feed, teachers.output.name, str(p))
            for s, p in zip(sessions, teachers.paths, strict=True)
        ]
        if targets is None or predictions is None:
            targets, predictions = _allocate(work, total, outputs, kind, teachers, step)
        _check_batch(outputs, count, teachers, step)
        for name, array in feed.items():
            inputs[name][start : start + count] = array
        targets[start : start + count] = _combine(outputs, teachers.weights, kind, temperature)
        if kind == "probabilities":
            predictions[start : start + count] = np.stack([o.argmax(-1) for o in outputs], -1)
        start += count
    assert targets is not None and predictions is not None  # the data dir is never empty
    for array in (*inputs.values(), targets, predictions):
        array.flush()  # type: ignore[attr-defined]  # np.memmap
    return sizes


def _survey(
    source: DataDir, teachers: Teachers, step: str
) -> tuple[list[int], dict[str, tuple[int, ...]], dict[str, np.dtype]]:
    """Samples per data file, and each input's per-sample shape and dtype (one for all files)."""
    sizes: list[int] = []
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, np.dtype] = {}
    for label, feed in source.items():
        counts = {name: (a.shape[0] if a.ndim else 0) for name, a in feed.items()}
        if len(set(counts.values())) != 1 or 0 in counts.values():
            raise DataError(
                f"{step}: {label} inputs have {counts} samples on axis 0 — every input of a "
                "feed needs the same leading batch axis"
            )
        for name, array in feed.items():
            if shapes.setdefault(name, array.shape[1:]) != array.shape[1:]:
                raise DataError(
                    f"{step}: {label} input {name!r} has per-sample shape {array.shape[1:]}, "
                    f"earlier files have {shapes[name]} — distillation stacks samples; pad or "
                    "crop every file to one shape"
                )
            dtypes[name] = array.dtype
        sizes.append(next(iter(counts.values())))
    if not source.path.is_dir():  # one file holding every sample
        sizes = [sum(sizes)]
    return sizes, shapes, dtypes


def _chunks(source: DataDir, teachers: Teachers) -> Iterator[Feed]:
    """Feeds in file order, concatenated up to `_CHUNK` samples when teachers take any batch."""
    fixed = fixed_batch(teachers.inputs) is not None
    pending: list[Feed] = []
    for feed in source:
        if fixed:
            yield feed
            continue
        pending.append(feed)
        if sum(len(next(iter(f.values()))) for f in pending) >= _CHUNK:
            yield _concat(pending)
            pending = []
    if pending:
        yield _concat(pending)


def _concat(feeds: list[Feed]) -> Feed:
    return {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}


def _output(session, feed: Feed, name: str, label: str) -> np.ndarray:
    names = [o.name for o in session.get_outputs()]
    return run(session, feed, label)[names.index(name)]


def _allocate(
    work: Path, total: int, outputs: list[np.ndarray], kind: str, teachers: Teachers, step: str
) -> tuple[np.ndarray, np.ndarray]:
    shape = outputs[0].shape[1:]
    if kind == "probabilities" and (len(shape) == 0 or outputs[0].dtype.kind != "f"):
        raise DataError(
            f"{step}: teacher output {teachers.output.name!r} is {outputs[0].dtype} with "
            f"per-sample shape {shape} — KL distillation needs float logits with a class axis; "
            "use --loss mse or cosine for other outputs"
        )
    targets = np.lib.format.open_memmap(
        work / "targets.npy", mode="w+", dtype=np.float32, shape=(total, *shape)
    )
    votes = (*shape[:-1], len(teachers.paths)) if kind == "probabilities" else (0,)
    predictions = np.lib.format.open_memmap(
        work / "predictions.npy", mode="w+", dtype=np.int64, shape=(total, *votes)
    )
    return targets, predictions


def _check_batch(outputs: list[np.ndarray], count: int, teachers: Teachers, step: str) -> None:
    for output, path in zip(outputs, teachers.paths, strict=True):
        if output.shape[:1] != (count,) or output.shape[1:] != outputs[0].shape[1:]:
            raise DataError(
                f"{step}: teacher {path} returned {teachers.output.name!r} with shape "
                f"{output.shape} for {count} samples, {teachers.paths[0]} returned "
                f"{outputs[0].shape} — ensemble members must predict the same classes"
            )


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis of `logits / temperature`, computed in float64."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def _combine(
    outputs: list[np.ndarray], weights: Sequence[float], kind: str, temperature: float
) -> np.ndarray:
    """The weighted mean of the teachers' outputs (softened probabilities or raw), float32."""
    if kind == "probabilities":
        parts = [softmax(o, temperature) for o in outputs]
    else:
        parts = [o.astype(np.float64) for o in outputs]
    mean = np.zeros_like(parts[0])
    for weight, part in zip(weights, parts, strict=True):
        mean += weight * part
    return mean.astype(np.float32)


def _cache_key(teachers: Teachers, source: DataDir, kind: str, temperature: float) -> str:
    """Identifies teachers and data by path, size and mtime (hashing contents costs a read)."""
    from onnxsmith.version import __version__

    def stamp(path: Path) -> list[object]:
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]

    parts = {
        "teachers": [stamp(p) for p in teachers.paths],
        "weights": teachers.weights,
        "output": teachers.output.name,
        "data": [stamp(f) for f in source.files],
        "kind": kind,
        "temperature": temperature,
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _open_cache(work: Path, key: str, teachers: Teachers) -> TeacherOutputs | None:
    try:
        saved = json.loads((work / "key.json").read_text())
        if saved["key"] != key:
            return None
        inputs = {
            spec.name: np.load(work / f"input_{i}.npy", mmap_mode="r")
            for i, spec in enumerate(teachers.inputs)
        }
        targets = np.load(work / "targets.npy", mmap_mode="r")
        predictions = np.load(work / "predictions.npy", mmap_mode="r")
    except (OSError, ValueError, KeyError):
        return None
    return TeacherOutputs(
        inputs,
        targets,
        predictions,
        files=tuple(Path(f) for f in saved["files"]),
        file_sizes=tuple(saved["file_sizes"]),
        reused=True,
    )
