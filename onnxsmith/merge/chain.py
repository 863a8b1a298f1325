"""Sequential merges: each stage's inputs are fed by earlier stages' outputs of the same name."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import onnx_ir as ir

from onnxsmith.errors import PassError, name_list
from onnxsmith.merge.emit import Emitter
from onnxsmith.merge.interface import InputTable, unify
from onnxsmith.merge.members import Member


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a member input is read from: a graph input (`member` None) or a member's output."""

    name: str
    member: Member | None = None


@dataclasses.dataclass
class Chain:
    inputs: dict[str, ir.Value]  # graph inputs by name
    outputs: dict[str, ir.Value]  # the outputs to expose, by name
    sources: list[dict[str, Source]]  # per member: interface input -> where it is read from


def build_chain(em: Emitter, members: Sequence[Member], output: str | None) -> Chain:
    """Wires the stages in order and moves them into `em.graph`.

    A stage input is read from the latest earlier stage with an output of that name, else from
    a graph input of that name (shared by every stage that reads it). Every stage after the
    first must read at least one earlier output. The chain's outputs are the last stage's, or
    `output` (from any stage).
    """
    inputs = InputTable()
    produced: dict[str, tuple[Member, ir.Value]] = {}
    sources: list[dict[str, Source]] = []
    for k, m in enumerate(members):
        feeds: dict[str, ir.Value] = {}
        wiring: dict[str, Source] = {}
        for name, value in m.inputs.items():
            if name in produced:
                source_member, source = produced[name]
                _check_link(source_member, m, name, source, value)
                feeds[name], wiring[name] = source, Source(name, source_member)
                continue
            feeds[name], wiring[name] = inputs.read(m, name), Source(name)
        if k > 0 and not any(s.member is not None for s in wiring.values()):
            previous = members[k - 1]
            raise PassError(
                f"merge: chain stage {m.label} reads none of the earlier outputs (stage "
                f"{previous.label} gives {name_list(previous.outputs)}, it takes "
                f"{name_list(m.inputs)}) — connect them with --map "
                f"{previous.index}:{next(iter(previous.outputs))}={next(iter(m.inputs))}"
            )
        m.move_into(em.graph, em.main, feeds)
        sources.append(wiring)
        for name, value in m.outputs.items():
            produced[name] = (m, value)
    if output is None:
        outputs = dict(members[-1].outputs)
    elif output in produced:
        outputs = {output: produced[output][1]}
    else:
        raise PassError(
            f"merge: no stage has an output {output!r} — the chain's outputs are "
            f"{name_list(sorted(produced))}"
        )
    return Chain(inputs.values, outputs, sources)


def _check_link(source: Member, target: Member, name: str, out: ir.Value, inp: ir.Value) -> None:
    try:
        unify(out, inp)
    except ValueError as e:
        raise PassError(
            f"merge: chain: output {name!r} of {source.label} cannot feed input {name!r} of "
            f"{target.label}: {e} — re-export one of them, or feed another output with "
            f"--map {source.index}:OLD={name}"
        ) from e
