"""`export`: a torch module to an ONNX file that provably computes what the module computes.

The dynamo exporter (`torch.onnx.export(dynamo=True)`) is tried first; when it raises, keeps a
dynamic axis fixed, or its model fails the parity check, the TorchScript exporter is tried, and
the report says which one wrote the file and why the other was not used. The model is cleaned up
with the optimize recipe, checked against torch by `parity.check_parity`, and only then saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import torch
from onnxsmith.exporter.flatten import PREFIX, FlatModule
from onnxsmith.exporter.parity import Case, ParityReport, build_cases, check_parity
from onnxsmith.exporter.reasons import one_line
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.passes.cleanup.opset import default_opset

from onnxsmith.errors import ExportError, OnnxsmithError, UsageError, name_list
from onnxsmith.io import save_model, weight_bytes
from onnxsmith.pipeline import PipelineReport, apply, count_nodes
from onnxsmith.provenance import record_step
from onnxsmith.signature import input_specs, output_specs

DynamicAxes = Mapping[str, Mapping[int, str] | Sequence[int]]
EXPORTERS = ("dynamo", "torchscript")


class ExportWarning(UserWarning):
    """Something about the model that makes its export questionable (training mode, tracing)."""


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One exporter's try: how long it took and why it was rejected (None: it was used)."""

    exporter: str
    seconds: float
    error: str | None


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """Which exporter wrote the model, what it looks like, and how close it is to torch."""

    exporter: str
    attempts: tuple[Attempt, ...]
    opset: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    pipeline: PipelineReport | None  # None: --no-optimize
    parity: ParityReport | None  # None: check=False
    warnings: tuple[str, ...]
    nodes: int
    weight_bytes: int
    seconds: float

    @property
    def fallback_reason(self) -> str | None:
        """Why the dynamo exporter was not used (None when it was)."""
        rejected = [a for a in self.attempts if a.exporter == "dynamo" and a.error]
        return rejected[0].error if rejected else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "exporter": self.exporter,
            "fallback_reason": self.fallback_reason,
            "attempts": [dataclasses.asdict(a) for a in self.attempts],
            "opset": self.opset,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "passes": None if self.pipeline is None else self.pipeline.as_dict(),
            "parity": None if self.parity is None else self.parity.as_dict(),
            "warnings": list(self.warnings),
            "nodes": self.nodes,
            "weight_bytes": self.weight_bytes,
            "seconds": self.seconds,
        }


class _Rejected(Exception):
    """An exporter's result that cannot be used; the message says why."""


def export(
    model: torch.nn.Module,
    example_inputs: Any,
    path: str | Path,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: DynamicAxes | None = None,
    dynamic_batch: bool = False,
    opset: int | None = None,
    check: bool = True,
    optimize: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ExportReport:
    """Exports `model` to `path` and checks it against torch in ONNX Runtime.

    Args:
        model: the module; exported in eval mode (its train/eval state is restored after).
        example_inputs: a tensor, a tuple of positional inputs or a dict of keyword inputs
            (nested lists/dicts of tensors are flattened into named inputs).
        path: the `.onnx` file to write; nothing is written unless every check passes.
        input_names: ONNX input names (default: forward's parameter names / dict keys).
        output_names: names for all outputs, or a subset of the default names (dict keys,
            `output_0`, ...) to export only those outputs.
        dynamic_axes: `{input: {axis: symbolic_name}}` (or `{input: [axes]}`); names kept.
        dynamic_batch: make axis 0 of every input symbolic (`batch`).
        opset: ai.onnx opset to export (None: the exporter's default).
        check: compare with torch at the example and at other sizes of every dynamic axis.
        optimize: run the cleanup recipe of `onnxsmith optimize` on the exported graph.
        atol: absolute tolerance of the parity check.
        rtol: relative tolerance of the parity check (times |torch output|).

    Raises:
        ExportError: no exporter produced a model that passes the checks (message says why).
        UsageError: inconsistent arguments (unknown names, bad axes).
    """
    onnx_model, report = export_model(
        model,
        example_inputs,
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        dynamic_batch=dynamic_batch,
        opset=opset,
        check=check,
        optimize=optimize,
        atol=atol,
        rtol=rtol,
    )
    options = {"exporter": report.exporter, "opset": report.opset, "optimize": optimize}
    record_step(onnx_model, "export", options)
    save_model(onnx_model, path)
    return report


def export_model(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: DynamicAxes | None = None,
    dynamic_batch: bool = False,
    opset: int | None = None,
    check: bool = True,
    optimize: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> tuple[ir.Model, ExportReport]:
    """`export` without writing: the checked model in memory, and its report."""
    start = time.perf_counter()
    if not isinstance(model, torch.nn.Module):
        raise UsageError(
            f"export: got a {type(model).__name__}, expected a torch.nn.Module — pass the module"
        )
    if atol < 0 or rtol < 0:
        raise UsageError("export: --atol and --rtol must be >= 0")
    flat = FlatModule(model, example_inputs)
    names = _input_names(flat, input_names)
    notes = _mode_warnings(model)
    with _eval_mode(flat):  # the wrapper too: the TorchScript exporter restores its mode
        try:
            with torch.no_grad():
                raw = flat.call(flat.tensors)
        except Exception as e:
            raise ExportError(
                f"export: the model fails on the example inputs in torch ({one_line(e)}) — fix "
                "the inputs (shapes, dtypes) or the model"
            ) from e
        flat.choose_outputs(raw, output_names)
        axes = _resolve_axes(dynamic_axes, dynamic_batch, names, flat)
        cases = build_cases(flat, flat.tensors, axes) if check else []
        attempts: list[Attempt] = []
        for exporter in EXPORTERS:
            began = time.perf_counter()
            try:
                onnx_model, pipeline, parity, traced = _attempt(
                    exporter, flat, names, axes, cases, opset, optimize, atol, rtol
                )
            except _Rejected as e:
                attempts.append(Attempt(exporter, time.perf_counter() - began, str(e)))
                continue
            attempts.append(Attempt(exporter, time.perf_counter() - began, None))
            break
        else:
            reasons = "; ".join(f"{a.exporter}: {a.error}" for a in attempts)
            raise ExportError(
                f"export: no exporter produced a correct model ({reasons}) — change the code "
                "named there (unsupported op, size-dependent branch), or raise --atol/--rtol "
                "if the differences are only rounding"
            )
    report = ExportReport(
        exporter=exporter,
        attempts=tuple(attempts),
        opset=default_opset(onnx_model),
        inputs=tuple(s.describe() for s in input_specs(onnx_model)),
        outputs=tuple(s.describe() for s in output_specs(onnx_model)),
        pipeline=pipeline,
        parity=parity,
        warnings=tuple(notes + traced),
        nodes=count_nodes(onnx_model),
        weight_bytes=weight_bytes(onnx_model),
        seconds=time.perf_counter() - start,
    )
    return onnx_model, report


def _attempt(
    exporter: str,
    flat: FlatModule,
    names: list[str],
    axes: list[dict[int, str]],
    cases: list[Case],
    opset: int | None,
    optimize: bool,
    atol: float,
    rtol: float,
) -> tuple[ir.Model, PipelineReport | None, ParityReport | None, list[str]]:
    """One exporter end to end; raises `_Rejected` with the reason its model cannot be used."""
    with _captured() as caught:
        try:
            if exporter == "dynamo":
                onnx_model = _dynamo(flat, names, axes, opset)
            else:
                onnx_model = _torchscript(
                    flat, names, axes, _output_axes(cases, flat.output_names), opset
                )
        except Exception as e:  # the exporters raise many unrelated types
            raise _Rejected(one_line(e)) from e
        _check_axes_kept(onnx_model, names, axes)
        _strip_prefix(onnx_model)
        try:
            # dynamo's shape annotations can contradict ONNX shape inference, which then logs
            # a traceback and leaves the model as it is; silenced here, dynamo's shapes stay.
            pipeline = apply(cleanup_passes(), onnx_model)[1] if optimize else None
        except OnnxsmithError as e:
            raise _Rejected(str(e)) from e
    parity = None
    if cases:
        try:
            parity = check_parity(onnx_model, cases, names, flat.output_names, atol=atol, rtol=rtol)
        except OnnxsmithError as e:
            raise _Rejected(str(e)) from e
        if not parity.passed:
            raise _Rejected(f"parity failed: {parity.first_failure()}")
    return onnx_model, pipeline, parity, _tracer_warnings(caught)


def _dynamo(
    flat: FlatModule, names: list[str], axes: list[dict[int, str]], opset: int | None
) -> ir.Model:
    shapes = tuple(dict(a) or None for a in axes)
    program = torch.onnx.export(
        flat,
        flat.tensors,
        dynamo=True,
        input_names=names,
        output_names=flat.output_names,
        opset_version=opset,
        dynamic_shapes=(shapes,) if any(axes) else None,  # one entry: forward(*tensors)
        optimize=True,
        verbose=False,
    )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    model = program.model
    # Dynamo's initializers are views of the module's parameters (some non-contiguous); copy
    # them so the ONNX model no longer changes with the module and hashes/serializes plainly.
    for value in model.graph.initializers.values():
        if value.const_value is not None:
            array = np.ascontiguousarray(value.const_value.numpy())
            value.const_value = ir.Tensor(array, name=value.name)
    return model


def _torchscript(
    flat: FlatModule,
    names: list[str],
    axes: list[dict[int, str]],
    output_axes: dict[str, dict[int, str]],
    opset: int | None,
) -> ir.Model:
    buffer = io.BytesIO()
    dynamic = {n: a for n, a in zip(names, axes, strict=True) if a} | output_axes
    torch.onnx.export(
        flat,
        flat.tensors,
        buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
        dynamo=False,
        input_names=names,
        output_names=flat.output_names,
        opset_version=opset,
        dynamic_axes=dynamic or None,
    )
    # The TorchScript exporter only writes protos; this is the one edge conversion.
    return ir.from_proto(onnx.load_model_from_string(buffer.getvalue()))


def _output_axes(cases: Sequence[Case], output_names: Sequence[str]) -> dict[str, dict[int, str]]:
    """Output axes whose size follows one symbolic input size in torch, named after it.

    The TorchScript exporter otherwise invents names such as `Addoutput_dim_0`; dynamo names
    output dims from its own shape analysis and needs none of this.
    """
    if not cases or cases[0].expected is None:
        return {}
    example = cases[0].expected
    named: dict[tuple[int, int], str] = {}
    ambiguous: set[tuple[int, int]] = set()
    for case in cases:
        if case.expected is None or "=" not in case.label:
            continue
        name, size = case.label.split("=")
        for index, (want, base) in enumerate(zip(case.expected, example, strict=True)):
            for axis, (new, old) in enumerate(zip(want.shape, base.shape, strict=False)):
                if (
                    new == int(size)
                    and new != old
                    and named.setdefault((index, axis), name) != name
                ):
                    ambiguous.add((index, axis))
    axes: dict[str, dict[int, str]] = {}
    for (index, axis), name in named.items():
        if (index, axis) not in ambiguous:
            axes.setdefault(output_names[index], {})[axis] = name
    return axes


def _check_axes_kept(model: ir.Model, names: list[str], axes: list[dict[int, str]]) -> None:
    by_name = {v.name: v for v in model.graph.inputs}
    for name, named in zip(names, axes, strict=True):
        value = by_name.get(name)
        if value is None or value.shape is None:
            continue
        for axis, symbol in named.items():
            dim = value.shape[axis]
            if isinstance(dim, int):
                raise _Rejected(
                    f"it fixed dynamic axis {axis} ({symbol!r}) of input {name!r} to {dim} — "
                    "the model's code depends on that size"
                )


def _strip_prefix(model: ir.Model) -> None:
    """Weight names as in the user's module: `model.fc.weight` → `fc.weight`."""
    taken = set(model.graph.initializers)
    for value in list(model.graph.initializers.values()):
        name = value.name or ""
        if name.startswith(PREFIX) and name[len(PREFIX) :] not in taken:
            value.name = name[len(PREFIX) :]


def _input_names(flat: FlatModule, names: Sequence[str] | None) -> list[str]:
    if names is None:
        names = flat.input_names
    names = list(names)
    if len(names) != len(flat.tensors):
        raise UsageError(
            f"export: {len(names)} input names for {len(flat.tensors)} input tensors "
            f"({name_list(flat.input_names)}) — give one name per tensor"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"export: input names {name_list(names)} repeat — make them unique")
    return names


def _resolve_axes(
    dynamic_axes: DynamicAxes | None, dynamic_batch: bool, names: list[str], flat: FlatModule
) -> list[dict[int, str]]:
    """Per input, axis → symbolic name; output entries are accepted and left to the exporters."""
    spec = dict(dynamic_axes or {})
    unknown = sorted(set(spec) - set(names) - set(flat.output_names))
    if unknown:
        raise UsageError(
            f"export: dynamic axes for unknown {name_list(unknown)} — the inputs are "
            f"{name_list(names)}"
        )
    resolved = []
    for name, tensor in zip(names, flat.tensors, strict=True):
        entry = spec.get(name, {})
        named = (
            {int(a): str(n) for a, n in entry.items()}
            if isinstance(entry, Mapping)
            else {int(a): f"{name}_dim{int(a)}" for a in entry}
        )
        named = {a % tensor.dim() if -tensor.dim() <= a < 0 else a: n for a, n in named.items()}
        if dynamic_batch and tensor.dim() > 0:
            named.setdefault(0, "batch")
        resolved.append(named)
    return resolved


_DROPOUT = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
)
_BATCHNORM = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
)


def _mode_warnings(model: torch.nn.Module) -> list[str]:
    """Modules whose eval-mode output differs from what a model in training mode computes."""
    notes = []
    kinds = sorted(
        {type(m).__name__ for m in model.modules() if isinstance(m, _DROPOUT + _BATCHNORM)}
    )
    if model.training and kinds:
        notes.append(
            f"the model was in training mode; it is exported in eval mode, where "
            f"{name_list(kinds)} behave differently — call model.eval() first to silence this"
        )
    batch_stats = [
        name or type(m).__name__
        for name, m in model.named_modules()
        if isinstance(m, _BATCHNORM) and not m.track_running_stats
    ]
    if batch_stats:
        notes.append(
            f"{name_list(batch_stats)} use batch statistics even in eval mode "
            "(track_running_stats=False), so outputs depend on the whole batch"
        )
    for note in notes:
        warnings.warn(note, ExportWarning, stacklevel=3)
    return notes


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


@contextlib.contextmanager
def _captured() -> Iterator[list[warnings.WarningMessage]]:
    """Silences the exporters' prints, logs and C++ dumps (fds 1 and 2); collects warnings."""
    loggers = [logging.getLogger(name) for name in ("torch", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with (
                warnings.catch_warnings(record=True) as caught,
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                warnings.simplefilter("always")
                yield caught
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _tracer_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The TorchScript tracer's warnings about the user's code (frozen branches, constants).

    Warnings from torch's own modules (nn.LSTM checks its inputs) are left out: the parity
    check at other sizes covers them, and the user cannot act on them.
    """
    torch_dir = Path(torch.__file__).parent
    seen: dict[str, None] = {}
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning) and not Path(w.filename).is_relative_to(
            torch_dir
        ):
            text = str(w.message).strip().splitlines()[0]
            seen[f"{Path(w.filename).name}:{w.lineno}: {text}"] = None
    return [f"TorchScript tracer: {text}" for text in seen]
