"""Matching members' inputs and outputs by name: `--map` renames, shared inputs, type checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import PassError, UsageError, name_list
from onnxsmith.merge.members import Member


@dataclasses.dataclass(frozen=True)
class Rename:
    """`--map [K:]OLD=NEW`: member K's (or every member's) input or output OLD is matched as NEW."""

    old: str
    new: str
    member: int | None = None

    def __str__(self) -> str:
        scope = "" if self.member is None else f"{self.member}:"
        return f"{scope}{self.old}={self.new}"


def parse_mapping(items: Iterable[str]) -> tuple[Rename, ...]:
    """Parses `OLD=NEW` or `K:OLD=NEW` (K = member index from 0); names may contain ':'."""
    renames = []
    for item in items:
        left, sep, new = item.partition("=")
        scope, colon, old = left.partition(":")
        member = None
        if colon and scope.isdigit():
            member = int(scope)
        else:
            old = left
        if not sep or not old or not new:
            raise UsageError(
                f"merge: --map {item!r} is not OLD=NEW or K:OLD=NEW — e.g. --map y=x to feed "
                "output y into input x, or --map 1:input=image"
            )
        renames.append(Rename(old, new, member))
    return tuple(renames)


def apply_mapping(members: Sequence[Member], renames: Sequence[Rename]) -> None:
    """Renames interface names in place; a rename that matches nothing is an error."""
    for rename in renames:
        if rename.member is not None and not 0 <= rename.member < len(members):
            raise UsageError(
                f"merge: --map {rename}: there is no member {rename.member} (members are 0.."
                f"{len(members) - 1} in command-line order)"
            )
        scope = members if rename.member is None else [members[rename.member]]
        hit = False
        for m in scope:
            for values, names, kind in (
                (m.inputs, m.input_names, "input"),
                (m.outputs, m.output_names, "output"),
            ):
                if rename.old not in values:
                    continue
                if rename.new in values:
                    raise UsageError(
                        f"merge: --map {rename}: {m.label} already has an {kind} named "
                        f"{rename.new!r} — choose another name"
                    )
                _rekey(values, rename.old, rename.new)
                _rekey(names, rename.old, rename.new)
                hit = True
        if not hit:
            known = sorted({n for m in scope for n in [*m.inputs, *m.outputs]})
            raise UsageError(
                f"merge: --map {rename}: no member has an input or output named {rename.old!r} "
                f"— they have {name_list(known, limit=8)}"
            )


def unify(a: ir.Value, b: ir.Value) -> ir.Shape | None:
    """The shape both values fit (a fixed dim wins over a symbolic one).

    Raises:
        ValueError: dtypes, ranks or fixed dims differ; the message says which.
    """
    if a.dtype is not None and b.dtype is not None and a.dtype != b.dtype:
        raise ValueError(f"dtype {_dtype(a)} vs {_dtype(b)}")
    if a.shape is None or b.shape is None:
        return a.shape if b.shape is None else b.shape
    if len(a.shape) != len(b.shape):
        raise ValueError(f"rank {len(a.shape)} ({_dims(a)}) vs {len(b.shape)} ({_dims(b)})")
    dims: list[int | ir.SymbolicDim] = []
    for axis, (x, y) in enumerate(zip(a.shape, b.shape, strict=True)):
        if isinstance(x, int) and isinstance(y, int) and x != y:
            raise ValueError(f"axis {axis} is {x} vs {y} ({_dims(a)} vs {_dims(b)})")
        if isinstance(x, int) or (not isinstance(y, int) and x.value is not None):
            dims.append(x)
        else:
            dims.append(y)
    return ir.Shape(dims)


class InputTable:
    """Graph inputs, created on first use and shared by every member reading the same name."""

    def __init__(self) -> None:
        self.values: dict[str, ir.Value] = {}
        self._owners: dict[str, Member] = {}

    def read(self, member: Member, name: str) -> ir.Value:
        """The graph input `name` for `member`'s input of that name, types checked."""
        value = member.inputs[name]
        if name not in self.values:
            self.values[name] = ir.Value(name=name, type=value.type, shape=value.shape)
            self._owners[name] = member
            return self.values[name]
        try:
            self.values[name].shape = unify(self.values[name], value)
        except ValueError as e:
            raise PassError(
                f"merge: input {name!r} of {member.label} does not match "
                f"{self._owners[name].label}'s: {e} — give it its own input with "
                f"--map {member.index}:{name}={name}_{member.index}"
            ) from e
        return self.values[name]


def share_inputs(members: Sequence[Member]) -> dict[str, ir.Value]:
    """Fresh graph inputs, one per interface input name across `members`, types checked."""
    table = InputTable()
    for m in members:
        for name in m.inputs:
            table.read(m, name)
    return table.values


def select_outputs(members: Sequence[Member], output: str | None) -> list[str]:
    """The interface outputs to combine, the same names in every member.

    Members with one output each are matched whatever their names (renamed to `output` or
    the first member's name); otherwise names must match, or `output` picks one.
    """
    if all(len(m.outputs) == 1 for m in members):
        name = output or next(iter(members[0].outputs))
        for m in members:
            old = next(iter(m.outputs))
            _rekey(m.outputs, old, name)
            _rekey(m.output_names, old, name)
        return [name]
    if output is not None:
        lacking = [m for m in members if output not in m.outputs]
        if lacking:
            m = lacking[0]
            raise PassError(
                f"merge: {m.label} has no output {output!r} (it has {name_list(m.outputs)}) — "
                f"rename one with --map {m.index}:OLD={output}"
            )
        return [output]
    names = list(members[0].outputs)
    for m in members[1:]:
        if set(m.outputs) != set(names):
            raise PassError(
                f"merge: outputs differ: {members[0].label} has {name_list(names)}, {m.label} "
                f"has {name_list(m.outputs)} — pick one with --output NAME or rename with "
                f"--map {m.index}:OLD=NEW"
            )
    return names


def check_same_type(members: Sequence[Member], name: str) -> None:
    """Output `name` must have one float dtype and compatible shapes in every member."""
    first = members[0].outputs[name]
    for m in members:
        value = m.outputs[name]
        if value.dtype is not None and not value.dtype.is_floating_point():
            raise PassError(
                f"merge: output {name!r} of {m.label} is {_dtype(value)}; only float outputs "
                "can be combined — pick a float one with --output NAME"
            )
        try:
            unify(first, value)
        except ValueError as e:
            raise PassError(
                f"merge: output {name!r} of {m.label} does not match {members[0].label}'s: {e} "
                f"— combine matching outputs only (--output NAME, --map {m.index}:OLD=NEW)"
            ) from e


def _rekey(table: dict, old: str, new: str) -> None:
    """Renames a key in place, keeping the order."""
    items = [(new if k == old else k, v) for k, v in table.items()]
    table.clear()
    table.update(items)


def _dtype(value: ir.Value) -> str:
    if value.dtype is None:
        return "?"
    try:
        return str(np.dtype(value.dtype.numpy()))
    except TypeError:
        return value.dtype.name.lower()


def _dims(value: ir.Value) -> str:
    if value.shape is None:
        return "?"
    return "[" + ", ".join(str(d) for d in value.shape) + "]"
