"""`merge_models`: N models into one graph — parallel, chained, cascaded or stacked."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common

from onnxsmith.errors import PassError, UsageError, name_list
from onnxsmith.merge import cascade as cascade_mode
from onnxsmith.merge.chain import Source, build_chain
from onnxsmith.merge.combine import combine
from onnxsmith.merge.emit import Emitter
from onnxsmith.merge.fit import STACK_METHODS, StackFit
from onnxsmith.merge.interface import (
    Rename,
    apply_mapping,
    check_same_type,
    parse_mapping,
    select_outputs,
    share_inputs,
)
from onnxsmith.merge.members import Member, member_label, prepare_members
from onnxsmith.merge.opset import common_opset, merged_imports, merged_ir_version

MODES = ("mean", "weighted", "vote", "max", "chain", "cascade", "stack")
METADATA_KEY = "onnxsmith.merge"
# The lowest opset each mode's own nodes need (OneHot/Where: 9, ScatterND: 11).
_MIN_OPSET = {"vote": 9, "cascade": cascade_mode.MIN_OPSET}


def merge_models(
    models: Sequence[ir.Model],
    mode: str,
    *,
    weights: Sequence[float] | None = None,
    output: str | None = None,
    softmax: bool | None = None,
    threshold: float | None = None,
    stack: StackFit | None = None,
    mapping: Sequence[str | Rename] = (),
    axis: int = -1,
    opset: int | None = None,
) -> ir.Model:
    """Merges `models` into one model; the inputs are not modified.

    Members are brought to the highest member opset (upgraded, never downgraded), every name is
    prefixed with `m<i>/`, inputs with the same name, dtype and compatible shape are shared,
    and identical initializers are stored once.

    Args:
        models: two or more members, in order (chain and cascade run them in this order).
        mode: mean, weighted, vote or max (element-wise over matching outputs), chain (each
            stage feeds the next by name), cascade (later members run only for samples whose
            max softmax probability is below `threshold`), stack (fitted weights, see `stack`).
        weights: one per member for `weighted`; normalized to sum to 1.
        output: the output to combine, vote, gate or expose (default: all matching outputs;
            required when vote/cascade/stack members have several).
        softmax: softmax over `axis` before combining. For cascade, None (default) applies it
            to outputs not already produced by a Softmax.
        threshold: cascade confidence threshold (0 never escalates, above 1 always does).
        stack: weights fitted by `onnxsmith.merge.stacking.fit_stack` (mode stack).
        mapping: `OLD=NEW` or `K:OLD=NEW` renames of member inputs/outputs before matching.
        axis: the class axis for softmax, vote and cascade confidence.
        opset: target ai.onnx opset (at least every member's); default the highest.

    Raises:
        UsageError: bad options. PassError: members that cannot be merged as asked.
    """
    _check_options(models, mode, weights, softmax, threshold, stack)
    labels = [member_label(m, i) for i, m in enumerate(models)]
    target = common_opset(models, labels, _MIN_OPSET.get(mode, 1), opset)
    imports = merged_imports(models, labels, target)
    members = prepare_members(models, target)
    renames = [r if isinstance(r, Rename) else parse_mapping([r])[0] for r in mapping]
    apply_mapping(members, renames)

    graph = ir.Graph([], [], nodes=[], opset_imports=imports, name="merged")
    em = Emitter(graph, graph, target)
    record: dict[str, Any] = {"mode": mode, "opset": target, "axis": axis}
    if mode == "chain":
        chain = build_chain(em, members, output)
        inputs, outputs = chain.inputs, chain.outputs
        sources = chain.sources
    else:  # every member reads the shared inputs
        inputs = share_inputs(members)
        names = _matched_outputs(members, mode, output)
        if mode == "cascade":
            assert threshold is not None  # checked in _check_options
            outputs, extra = _cascade(em, members, names[0], inputs, softmax, threshold, axis)
        else:
            outputs, extra = _parallel(
                em, members, mode, names, inputs, weights, softmax, stack, axis
            )
        record.update(extra)
        sources = [{name: Source(name) for name in m.inputs} for m in members]
    graph.inputs.extend(inputs.values())
    for name, value in outputs.items():
        graph.outputs.append(_expose(em, value, name, inputs))

    model = ir.Model(
        graph,
        ir_version=merged_ir_version(models, imports),
        producer_name="onnxsmith",
        functions=[f for m in members for f in m.model.functions.values()],
    )
    for p in (
        common.RemoveUnusedNodesPass(),
        common.DeduplicateHashedInitializersPass(),
        common.TopologicalSortPass(),
        common.NameFixPass(),
    ):
        p(model)
    record["outputs"] = list(outputs)
    record["members"] = [_describe(m, sources[i], list(outputs)) for i, m in enumerate(members)]
    model.metadata_props[METADATA_KEY] = json.dumps(record, sort_keys=True)
    return model


def merge_record(model: ir.Model) -> dict[str, Any]:
    """What `merge_models` recorded in a merged model's metadata."""
    raw = model.metadata_props.get(METADATA_KEY)
    if raw is None:
        raise UsageError(f"{METADATA_KEY} metadata is missing — the model was not merged here")
    return json.loads(raw)


def _matched_outputs(members: Sequence[Member], mode: str, output: str | None) -> list[str]:
    names = select_outputs(members, output)
    if mode in ("vote", "cascade", "stack") and len(names) > 1:
        raise PassError(
            f"merge: {mode} needs one score output, the members have {name_list(names)} — "
            "pick one with --output NAME"
        )
    for name in names:
        check_same_type(members, name)
    return names


def _cascade(
    em: Emitter,
    members: Sequence[Member],
    score: str,
    inputs: dict[str, ir.Value],
    softmax: bool | None,
    threshold: float,
    axis: int,
) -> tuple[dict[str, ir.Value], dict[str, Any]]:
    cascade_mode.check_cascade(members, score, inputs)
    use_softmax = [
        softmax if softmax is not None else not cascade_mode.is_probability(m.outputs[score])
        for m in members
    ]
    value = members[0].outputs[score]
    dtype = np.dtype(value.dtype.numpy()) if value.dtype is not None else np.float32
    limit = em.const(np.asarray(threshold, dtype), name=cascade_mode.THRESHOLD_NAME)
    cascade = cascade_mode.Cascade(members, score, limit, use_softmax, axis)
    result, stage = cascade.build(em, inputs)
    outputs = {score: result, score + cascade_mode.STAGE_SUFFIX: stage}
    return outputs, {"threshold": threshold, "softmax": use_softmax}


def _parallel(
    em: Emitter,
    members: Sequence[Member],
    mode: str,
    names: list[str],
    inputs: dict[str, ir.Value],
    weights: Sequence[float] | None,
    softmax: bool | None,
    stack: StackFit | None,
    axis: int,
) -> tuple[dict[str, ir.Value], dict[str, Any]]:
    for m in members:
        m.move_into(em.graph, em.main, inputs)
    extra: dict[str, Any] = {"softmax": bool(softmax)}
    if weights is not None:
        weights = [w / float(sum(weights)) for w in weights]
        extra["weights"] = weights
    if stack is not None:
        extra["stack"] = {"method": stack.method, "weights": list(stack.weights)}
    outputs: dict[str, ir.Value] = {}
    for name in names:
        values = [m.outputs[name] for m in members]
        combined = combine(
            em, mode, values, weights=weights, softmax=bool(softmax), axis=axis, stack=stack
        )
        outputs.update((name + suffix, value) for suffix, value in combined)
    return outputs, extra


def _expose(em: Emitter, value: ir.Value, name: str, inputs: dict[str, ir.Value]) -> ir.Value:
    """`value` as a graph output called `name` (through an Identity if it is already taken)."""
    if name in inputs:
        raise PassError(
            f"merge: output {name!r} has the name of a graph input — rename it with --map "
            f"OLD={name}_out"
        )
    if value.is_graph_output() or value.is_graph_input() or value.is_initializer():
        copy = em.op("Identity", [value])
        copy.type, copy.shape = value.type, value.shape
        value = copy
    value.name = name
    return value


def _describe(member: Member, sources: dict[str, Source], outputs: list[str]) -> dict[str, Any]:
    feeds = {}
    for name, source in sources.items():
        if source.member is None:
            feeds[member.input_names[name]] = ["", source.name]
        else:
            feeds[member.input_names[name]] = [
                source.member.tag,
                source.member.output_names[source.name],
            ]
    return {
        "tag": member.tag,
        "file": member.file,
        "sha256": member.sha256,
        "opset": member.opset,
        "ir_version": member.ir_version,
        "feeds": feeds,
        "outputs": {member.output_names[n]: n for n in member.outputs if n in outputs},
    }


def _check_options(
    models: Sequence[ir.Model],
    mode: str,
    weights: Sequence[float] | None,
    softmax: bool | None,
    threshold: float | None,
    stack: StackFit | None,
) -> None:
    if mode not in MODES:
        raise UsageError(f"merge: unknown mode {mode!r} — choose from {', '.join(MODES)}")
    if len(models) < 2:
        raise UsageError(f"merge: {mode} needs at least two models, got {len(models)}")
    if (weights is not None) != (mode == "weighted"):
        raise UsageError(
            "merge: --mode weighted needs --weights (or --fit)"
            if mode == "weighted"
            else f"merge: --weights applies to --mode weighted only, not {mode}"
        )
    if weights is not None:
        bad = [w for w in weights if not math.isfinite(w) or w < 0]
        if len(weights) != len(models) or bad or sum(weights) <= 0:
            raise UsageError(
                f"merge: --weights needs {len(models)} non-negative numbers with a positive sum "
                f"(one per model), got {list(weights)}"
            )
    if (threshold is not None) != (mode == "cascade"):
        raise UsageError(
            "merge: --mode cascade needs --threshold T (0 never escalates, above 1 always)"
            if mode == "cascade"
            else f"merge: --threshold applies to --mode cascade only, not {mode}"
        )
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"merge: --threshold must be a finite number, got {threshold}")
    if (stack is not None) != (mode == "stack"):
        raise UsageError(
            "merge: --mode stack needs fitted weights: pass --fit DIR with --labels DIR or "
            "--teacher MODEL"
            if mode == "stack"
            else f"merge: fitted stacking weights apply to --mode stack only, not {mode}"
        )
    if stack is not None:
        if stack.method not in STACK_METHODS:
            raise UsageError(f"merge: unknown stacking method {stack.method!r}")
        if stack.coef is None and len(stack.weights) != len(models):
            raise UsageError(
                f"merge: the stacking fit has {len(stack.weights)} weights for {len(models)} "
                "models — fit it on the same members"
            )
    if softmax and mode == "chain":
        raise UsageError("merge: --softmax does not apply to --mode chain")
