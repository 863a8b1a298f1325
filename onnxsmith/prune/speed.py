"""Does pruning a channel group make the target machine faster? Measured on the group's region.

A group's region is every node on a path from its producers to its consumers (the layers
whose tensors shrink). It is cut out of the original and the pruned model, fed the
activations the original model computes at its boundary, and timed interleaved. Timing the
region instead of the whole model keeps each group's effect above the run-to-run noise of a
full model, whose other layers dominate.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper

from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.input_stats import with_outputs
from onnxsmith.runtime.session import create_session, run
from onnxsmith.runtime.timer import Rounds, Timer, TimingJob
from onnxsmith.runtime.timing import ratio_ci95


@dataclasses.dataclass(frozen=True)
class GroupSpeed:
    """Latency of a group's region after pruning, relative to before (median, 95 % CI)."""

    ratio: float
    low: float
    high: float


def measure_group_speed(
    timer: Timer,
    original: ir.Model,
    trials: Mapping[str, tuple[ir.Model, Sequence[str], Sequence[str]]],
    feed: Feed,
    *,
    seconds: float = 0.4,
    threads: int | None = None,
    on_group: Callable[[int, str, GroupSpeed, float], None] | None = None,
) -> dict[str, GroupSpeed]:
    """Times each trial's region against the same region of `original`, where `timer` does.

    Args:
        timer: where the regions run (this machine, or a cluster target).
        original: the unpruned model.
        trials: group name -> (model with only that group pruned, producer names,
            consumer names).
        feed: one input feed for `original` (its activations feed the regions).
        seconds: timing budget per group.
        threads: intra-op threads for the sessions (None: ORT's default).
        on_group: called after each group with (index from 1, name, speed, seconds taken).
    """
    regions = {
        name: _region(original, producers, consumers)
        for name, (_, producers, consumers) in trials.items()
    }
    boundary = sorted({v for nodes, inputs, _ in regions.values() for v in inputs})
    captured = _capture(original, boundary, feed)
    speeds = {}
    for index, (name, (nodes, inputs, outputs)) in enumerate(regions.items(), start=1):
        if not nodes:
            continue
        start = time.perf_counter()
        region_feed = {v: captured[v] for v in inputs}
        before = _extract(original, nodes, region_feed, outputs)
        after = _extract(trials[name][0], nodes, region_feed, outputs)
        # One group per call, so progress shows; on a cluster node a region is a small model.
        job = TimingJob((after, before), (region_feed,), Rounds(warmup=3, seconds=seconds), threads)
        ((after_ms, before_ms),) = timer.time([job])
        speeds[name] = GroupSpeed(*ratio_ci95(after_ms, before_ms))
        if on_group is not None:
            on_group(index, name, speeds[name], time.perf_counter() - start)
    return speeds


def _region(
    model: ir.Model, producers: Sequence[str], consumers: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """(node names, input value names, output value names) of the producers→consumers region."""
    nodes = list(model.graph)
    by_name = {n.name: n for n in nodes}
    start = [by_name[p] for p in producers if p in by_name]
    end = [by_name[c] for c in consumers if c in by_name]
    downstream: set[ir.Node] = set(start)
    for node in nodes:  # topological order: one sweep finds everything below the producers
        if node in downstream:
            continue
        if any(i is not None and i.producer() in downstream for i in node.inputs):
            downstream.add(node)
    upstream: set[ir.Node] = set(end)
    for node in reversed(nodes):
        if node in upstream:
            continue
        if any(u in upstream for o in node.outputs for u, _ in o.uses()):
            upstream.add(node)
    region = [n for n in nodes if n in downstream and n in upstream]
    produced = {o for n in region for o in n.outputs}
    inputs = sorted(
        {
            i.name
            for n in region
            for i in n.inputs
            if i is not None and i not in produced and i.const_value is None and i.name
        }
    )
    outputs = sorted({o.name for n in end for o in n.outputs if o.name})
    return [n.name or "" for n in region], inputs, outputs


def _capture(model: ir.Model, names: Sequence[str], feed: Feed) -> dict[str, np.ndarray]:
    session = create_session(with_outputs(model, names))
    values = run(session, feed, "the region measurement")
    return {**feed, **dict(zip([o.name for o in session.get_outputs()], values, strict=True))}


def _extract(
    model: ir.Model, nodes: Sequence[str], inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
) -> ir.Model:
    """A standalone model of the named nodes, fed `inputs` (name -> example array).

    Serializes only the region's nodes and weights: serializing the whole model twice per group
    was most of the measurement's overhead on a 5 M-parameter detector.
    """
    keep = set(nodes)
    chosen = [n for n in model.graph if n.name in keep]
    used = {v for n in chosen for v in n.inputs if v is not None}
    dtypes = {v.name: v.dtype for n in model.graph for v in n.outputs if v.dtype is not None}
    graph = helper.make_graph(
        [ir.serde.serialize_node(n) for n in chosen],
        f"{model.graph.name}.region",
        [
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape
            )
            for name, array in inputs.items()
        ],
        [
            helper.make_tensor_value_info(name, int(dtypes.get(name, ir.DataType.FLOAT)), None)
            for name in outputs
        ],
        [
            ir.serde.serialize_tensor(v.const_value)
            for v in model.graph.initializers.values()
            if v in used and v.const_value is not None
        ],
    )
    opsets = [
        helper.make_opsetid(domain, version) for domain, version in model.opset_imports.items()
    ]
    region = helper.make_model(graph, opset_imports=opsets)
    region.ir_version = model.ir_version
    return ir.from_proto(region)


def _weight(value: ir.Value) -> onnx.TensorProto:
    assert value.const_value is not None
    proto = ir.serde.serialize_tensor(value.const_value)
    proto.name = value.name or ""
    return proto
