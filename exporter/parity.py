"""Torch vs ONNX Runtime on the example inputs and on other sizes of every dynamic axis.

An export that matches torch on the example alone can still be wrong elsewhere: a size the code
branched on, a declared output dim frozen to the example's value, or input *values* the tracer
baked in as constants (the TorchScript export of a Hugging Face BERT matches torch on its
example and is off by ~1 on any other sentence). So besides the example, every case shuffles the
example's values along the last axis (token ids stay valid ids, masks stay 0/1, images keep
their value range), once at the example's shape and once per other size of each symbolic axis
(batch 1, about half, a few more), reached by cropping or tiling the example along that axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
import torch
from onnxsmith.exporter.reasons import one_line
from onnxsmith.runtime.session import create_session, run

from onnxsmith.compare import diff_outputs
from onnxsmith.errors import SessionError, UsageError

Axes = Mapping[int, str]  # axis → symbolic name, for one input


@dataclasses.dataclass(frozen=True)
class Case:
    """One set of inputs and what torch returns for it (`error` when torch itself fails)."""

    label: str
    inputs: tuple[torch.Tensor, ...]
    expected: tuple[np.ndarray, ...] | None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class ParityRow:
    """Largest difference on one output for one case; `note` says why a row is not a number."""

    case: str
    output: str
    shape: str
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """Every case × output, with the tolerance it was held to (|a-b| <= atol + rtol·|torch|)."""

    rows: tuple[ParityRow, ...]
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rows)

    def first_failure(self) -> str:
        """One clause naming the worst failing row, for error messages."""
        bad = [r for r in self.rows if not r.ok]
        if not bad:
            return ""
        row = max(bad, key=lambda r: (bool(r.note), r.max_abs))
        if row.note:
            return f"output {row.output!r} at {row.case}: {row.note}"
        return (
            f"output {row.output!r} at {row.case} differs from torch by {row.max_abs:.3g} "
            f"(tolerance atol {self.atol:g} + rtol {self.rtol:g}·|x|)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "passed": self.passed,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }


def axis_sizes(inputs: Sequence[torch.Tensor], axes: Sequence[Axes]) -> dict[str, int]:
    """Example size of each symbolic name; one name must have one size everywhere.

    Raises:
        UsageError: an axis is out of range or a name has two sizes.
    """
    sizes: dict[str, int] = {}
    for index, (tensor, named) in enumerate(zip(inputs, axes, strict=True)):
        for axis, name in named.items():
            if not -tensor.dim() <= axis < tensor.dim():
                raise UsageError(
                    f"export: dynamic axis {axis} of input #{index} is out of range for shape "
                    f"{tuple(tensor.shape)} — use an axis below {tensor.dim()}"
                )
            size = int(tensor.shape[axis])
            if sizes.setdefault(name, size) != size:
                raise UsageError(
                    f"export: dynamic axis {name!r} has size {sizes[name]} in one input and "
                    f"{size} in another — give axes that differ in size different names"
                )
    return sizes


def resize(
    inputs: Sequence[torch.Tensor], axes: Sequence[Axes], name: str, size: int
) -> tuple[torch.Tensor, ...]:
    """The inputs with every axis called `name` cropped or tiled to `size`."""
    resized = []
    for tensor, named in zip(inputs, axes, strict=True):
        for axis, axis_name in named.items():
            if axis_name == name:
                index = torch.arange(size) % tensor.shape[axis]
                tensor = tensor.index_select(axis, index.to(tensor.device))
        resized.append(tensor)
    return tuple(resized)


def other_sizes(size: int) -> list[int]:
    """Sizes to check besides the example's: 1, about half, and a few more."""
    return sorted({1, max(1, size // 2), size + 3} - {size})


def shuffle(inputs: Sequence[torch.Tensor], seed: int) -> tuple[torch.Tensor, ...]:
    """Each tensor's values permuted along its last axis, independently per row."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = []
    for tensor in inputs:
        if tensor.dim() == 0 or tensor.shape[-1] < 2:
            shuffled.append(tensor)
            continue
        order = torch.argsort(torch.rand(tensor.shape, generator=generator), dim=-1)
        shuffled.append(torch.gather(tensor, -1, order.to(tensor.device)))
    return tuple(shuffled)


def build_cases(
    flat: torch.nn.Module, inputs: tuple[torch.Tensor, ...], axes: Sequence[Axes]
) -> list[Case]:
    """The example, the example shuffled, and one shuffled case per other size of each axis."""
    cases = [_case(flat, "example", inputs), _case(flat, "shuffled", shuffle(inputs, seed=0))]
    for name, size in axis_sizes(inputs, axes).items():
        for other in other_sizes(size):
            resized = shuffle(resize(inputs, axes, name, other), seed=len(cases))
            cases.append(_case(flat, f"{name}={other}", resized))
    return cases


def _case(flat: torch.nn.Module, label: str, inputs: tuple[torch.Tensor, ...]) -> Case:
    try:
        with torch.no_grad():
            outputs = flat(*inputs)
    except Exception as e:  # the user's model may raise anything at a size it does not support
        return Case(label, inputs, None, f"torch fails at this size ({one_line(e)})")
    return Case(label, inputs, tuple(to_numpy(o) for o in outputs))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.numpy()


def check_parity(
    model: ir.Model,
    cases: Sequence[Case],
    input_names: Sequence[str],
    output_names: Sequence[str],
    *,
    atol: float,
    rtol: float,
) -> ParityReport:
    """Runs `model` in ONNX Runtime on every case and compares with torch's outputs.

    Besides values, each output's declared ONNX shape must hold: a fixed dim must equal the
    actual size, a symbolic dim shared with an input must equal that input's size.

    Raises:
        SessionError: ONNX Runtime cannot load the model.
    """
    session = create_session(model)
    graph_inputs = {v.name for v in model.graph.inputs}
    declared = [v.shape for v in model.graph.outputs]
    rows: list[ParityRow] = []
    for case in cases:
        if case.expected is None:
            rows += [
                ParityRow(case.label, n, "-", 0.0, 0.0, True, case.error or "")
                for n in output_names
            ]
            continue
        feed = {
            name: to_numpy(t)
            for name, t in zip(input_names, case.inputs, strict=True)
            if name in graph_inputs
        }
        try:
            actual = run(session, feed, "the exported model")
        except SessionError as e:
            rows += [
                ParityRow(case.label, n, "-", np.inf, np.inf, False, str(e)) for n in output_names
            ]
            continue
        bindings = _bindings(model, feed)
        diffs = diff_outputs(output_names, case.expected, actual, atol=atol, rtol=rtol)
        for diff, want, got, shape in zip(diffs, case.expected, actual, declared, strict=True):
            note = _shape_note(shape, got.shape, want.shape, bindings)
            rows.append(
                ParityRow(
                    case.label,
                    diff.name,
                    "x".join(map(str, got.shape)) or "scalar",
                    diff.max_abs,
                    diff.max_rel,
                    diff.within() and not note,
                    note,
                )
            )
    return ParityReport(tuple(rows), atol, rtol)


def _bindings(model: ir.Model, feed: Mapping[str, np.ndarray]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for value in model.graph.inputs:
        if value.name is not None and value.name in feed and value.shape is not None:
            for dim, size in zip(value.shape, feed[value.name].shape, strict=False):
                if isinstance(dim, ir.SymbolicDim) and dim.value is not None:
                    sizes[dim.value] = size
    return sizes


def _shape_note(
    declared: ir.Shape | None,
    got: tuple[int, ...],
    want: tuple[int, ...],
    bindings: Mapping[str, int],
) -> str:
    if got != want:
        return f"shape {got} but torch gives {want}"
    if declared is None:
        return ""
    # A negative declared dim (Paddle's exporter writes -1) is as unknown as a symbolic one.
    expected = [
        (d if d >= 0 else None) if isinstance(d, int) else bindings.get(d.value or "")
        for d in declared
    ]
    if len(expected) != len(got) or any(
        e is not None and e != g for e, g in zip(expected, got, strict=False)
    ):
        shown = "x".join(str(d) for d in declared)
        return f"declared shape [{shown}] but the model returns {got}"
    return ""
