"""Property tests: merge, prune and quantize on random valid graphs (tests/graphgen.py).

What each property checks, and why each tolerance:

- merge (mean, max, weighted, vote; softmax or not) of the drawn model and copies whose float
  constants are scaled: the merged outputs equal the same combination computed in numpy from
  the members run one by one in ORT, within atol/rtol 1e-5 (the members' nodes run as the same
  kernels merged or not; only the combiner's float32 Mean/Sum reassociate, ~1e-7 on outputs of
  order 1). Max and the vote's winning class are exact. chain (the model fed into its scaled
  copy) is compared with the two sessions run in a row, within the same 1e-5. The merged model
  passes the full checker, the members are left untouched, and merging twice gives the same
  bytes.
- prune at sparsity 0 is exact: the passes at 0 (PruneMagnitudePass(0.0), a plan_channels(0.0)
  plan) leave the model byte-identical; `prune_model` at a sparsity that rounds to no weight
  and no channel gives bit-identical ORT outputs (unstructured) or the optimize recipe's
  outputs (structured runs cleanup first: the recipe's 1e-4/1e-5), and pruning its result again
  changes no byte.
- prune at a real sparsity: the result passes the full checker and runs in ORT with the same
  output names and shapes; the sparsity the report states equals the zeros counted in the
  pruned weights (unstructured) or the channels counted in the pruned weight shapes against the
  cleaned original's (structured), and the reported agreement equals one recomputed from ORT
  outputs on the same feed (1e-6: the same float64 sums of the same ORT outputs, in another
  order).
- quantize: the int8 model passes the full checker, holds quantized nodes and runs in ORT with
  the fp32 model's output names and shapes; the cosine the report states per output, and its
  loss, equal a recomputation from ORT outputs of the fp32 and int8 files on the eval feeds
  (1e-6, as above: the same outputs, summed in another order), as does the loss recorded in
  the model's metadata.
- export (torch): a random MLP exported with a dynamic batch matches torch at batch 1 and 3
  (atol 1e-5, rtol 1e-4: torch and ORT sum float32 products in other orders) and is already
  clean (the optimize recipe changes no byte).

The plain tests at the end are the bugs these properties found, each reduced to one model.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from graphgen import Generated, models
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.passes.prune import (
    PruneChannelsPass,
    PruneMagnitudePass,
    analyze_channels,
    plan_channels,
    unit_scores,
)
from onnxsmith.passes.quantize import QuantizeDynamicPass, find_candidates, prepare_passes
from onnxsmith.passes.quantize.prepare import FlattenGemmBiasPass
from onnxsmith.runtime.parity import random_feed, random_feeds
from onnxsmith.runtime.session import create_session, run

from onnxsmith.io import load_model, save_model
from onnxsmith.merge import merge_models, merge_record
from onnxsmith.optimize import ATOL, RTOL
from onnxsmith.pipeline import apply
from onnxsmith.prune import PruneOptions, prune_model
from onnxsmith.quantize import METADATA_KEY as QUANTIZE_METADATA
from onnxsmith.quantize import quantize
from onnxsmith.signature import input_specs
from onnxsmith.summary import QUANTIZED_OPS

MERGE_TOL = 1e-5  # atol and rtol, see the module docstring
RECOMPUTE_TOL = 1e-6
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")  # what prune touches by default
# A sparsity that rounds to zero weights and zero channels in any drawn model.
NEAR_ZERO = 1e-9
FAST_PRUNE = {"measure": False, "seconds": 0.02, "channel_multiple": 1}


def serialize(model: ir.Model) -> bytes:
    return ir.to_proto(model).SerializeToString()


def full_check(model: ir.Model | Path) -> None:
    onnx.checker.check_model(
        str(model) if isinstance(model, Path) else ir.to_proto(model), full_check=True
    )


def outputs(model: ir.Model | Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = create_session(model)
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    got = run(session, {k: v for k, v in feed.items() if k in wanted})
    return dict(zip(names, got, strict=True))


def scaled(proto: onnx.ModelProto, factor: float) -> ir.Model:
    """The drawn model with every float constant of its main graph multiplied by `factor`:
    the same graph computing something else, so that merged members differ."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    tensors = list(copy.graph.initializer)
    for node in copy.graph.node:
        tensors += [a.t for a in node.attribute if a.name == "value" and node.op_type == "Constant"]
    for tensor in tensors:
        array = numpy_helper.to_array(tensor)
        if array.dtype == np.float32 and array.ndim > 0:  # scalars: dropout ratios, halves
            tensor.CopyFrom(
                numpy_helper.from_array((array * factor).astype(np.float32), tensor.name)
            )
    return ir.from_proto(copy)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def assert_close(got: np.ndarray, want: np.ndarray, tol: float, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, atol=tol, rtol=tol, err_msg=what)


# ---- merge ------------------------------------------------------------------------------------


@given(
    generated=models(max_ops=6),
    mode=st.sampled_from(["mean", "max", "weighted", "vote"]),
    members=st.integers(2, 3),
    use_softmax=st.booleans(),
)
def test_property_parallel_merge_matches_members_run_separately(
    generated, mode, members, use_softmax
):
    copies = [scaled(generated.proto, 1 + k / 4) for k in range(members)]
    event(f"outputs: {len(generated.proto.graph.output)}")
    before = [serialize(m) for m in copies]
    weights = [1.0, 2.0, 3.0][:members] if mode == "weighted" else None
    output = generated.proto.graph.output[0].name if mode == "vote" else None
    options = {"weights": weights, "softmax": use_softmax, "output": output}
    merged = merge_models(copies, mode, **options)
    full_check(merged)
    assert [serialize(m) for m in copies] == before, "merge modified a member"
    assert serialize(merge_models(copies, mode, **options)) == serialize(merged)

    for feed in random_feeds(input_specs(copies[0])):
        got = outputs(merged, feed)
        separate = [outputs(m, feed) for m in copies]
        names = [output] if output else list(separate[0])
        expected_names = [*names, *(f"{n}_vote" for n in names if mode == "vote")]
        assert list(got) == expected_names
        for name in names:
            scores = [s[name].astype(np.float64) for s in separate]
            if use_softmax:
                scores = [softmax(s) for s in scores]
            if mode == "max":
                want = np.max(scores, axis=0)
            elif mode == "weighted":
                assert weights is not None
                want = sum(w / sum(weights) * s for w, s in zip(weights, scores, strict=True))
            else:
                want = np.mean(scores, axis=0)
            assert_close(
                got[name], want, 0 if mode == "max" and not use_softmax else MERGE_TOL, name
            )
            if mode == "vote":
                winners, clear = vote(scores, got[name])
                np.testing.assert_array_equal(got[f"{name}_vote"][clear], winners[clear])


def vote(scores: list[np.ndarray], mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority class over the last axis (ties to the higher mean score, then the lower index),
    and where the ballots are clear.

    The tie-break reads the merged model's own mean (checked against numpy's above), so that a
    last-bit difference between two near-equal means cannot flip it. A ballot is unclear when a
    member's two best scores are within 1e-6 but not equal: ORT's float32 softmax may then rank
    them the other way round from this float64 one."""
    classes = scores[0].shape[-1]
    votes = sum(np.eye(classes)[s.argmax(axis=-1)] for s in scores)
    tied = votes == votes.max(axis=-1, keepdims=True)
    clear = np.ones(scores[0].shape[:-1], dtype=bool)
    if classes > 1:
        for s in scores:
            top = np.sort(s, axis=-1)[..., -2:]
            gap = top[..., 1] - top[..., 0]
            clear &= (gap == 0) | (gap > 1e-6)
    return np.where(tied, mean, -np.inf).argmax(axis=-1), clear


def chainable(generated: Generated) -> bool:
    """The first output can feed input `x`: same shape, batch dim included."""
    graph = generated.proto.graph
    dims = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in graph.input]
    out = [d.dim_value or d.dim_param for d in graph.output[0].type.tensor_type.shape.dim]
    return out == dims[0]


@given(generated=models(max_ops=6))
def test_property_chain_merge_matches_sessions_run_in_a_row(generated):
    assume(chainable(generated))
    first, second = scaled(generated.proto, 1.0), scaled(generated.proto, 1.5)
    out = generated.proto.graph.output[0].name
    merged = merge_models([first, second], "chain", mapping=[f"0:{out}=x"])
    full_check(merged)
    for feed in random_feeds(input_specs(first)):
        middle = outputs(first, feed)[out]
        want = outputs(second, {**feed, "x": middle})
        got = outputs(merged, feed)
        assert list(got) == list(want)
        for name in want:
            assert_close(got[name], want[name], MERGE_TOL, name)


# ---- prune ------------------------------------------------------------------------------------


def weights_of(model: ir.Model) -> dict[str, tuple[str, np.ndarray]]:
    """Constant float weights (rank >= 2) of the main graph's Conv/Gemm/MatMul nodes, by value
    name: (the first node reading it, the array). Written here, not taken from the pass, so that
    a weight the pass overlooks shows up as a mismatch."""
    found: dict[str, tuple[str, np.ndarray]] = {}
    for node in model.graph:
        if node.op_type not in WEIGHTED_OPS or len(node.inputs) < 2 or node.inputs[1] is None:
            continue
        value = node.inputs[1]
        if value.is_graph_input() or value.name in found:
            continue
        if value.const_value is not None:
            array = value.const_value.numpy()
        elif (holder := value.producer()) is not None and holder.op_type == "Constant":
            array = holder.attributes["value"].as_tensor().numpy()
        else:
            continue
        if array.dtype.kind == "f" and array.ndim >= 2:
            found[value.name or ""] = (node.name or "", array)
    return found


def cleaned(generated: Generated) -> ir.Model:
    return apply(cleanup_passes(), ir.from_proto(generated.proto))[0]


def prunable_groups(model: ir.Model) -> int:
    return sum(1 for g in analyze_channels(model).groups if not g.skipped)


def with_head(generated: Generated) -> Generated:
    """The drawn model with its first output fed to a Flatten + Gemm head, the only output.

    Channels that reach a graph output cannot be pruned, and in most drawn graphs every
    weighted layer's do: the head gives the last layers a consumer, as a classifier would."""
    proto = onnx.ModelProto()
    proto.CopyFrom(generated.proto)
    graph = proto.graph
    dims = graph.output[0].type.tensor_type.shape.dim
    features = math.prod(d.dim_value for d in dims[1:])
    x = graph.output[0].name
    if len(dims) > 2:
        graph.node.append(helper.make_node("Flatten", [x], ["head_in"], name="head_flatten"))
        x = "head_in"
    rng = np.random.default_rng(features)
    weight = rng.normal(0, 1 / math.sqrt(features), (features, 4)).astype(np.float32)
    graph.initializer.append(numpy_helper.from_array(weight, "head_w"))
    graph.node.append(helper.make_node("Gemm", [x, "head_w"], ["head"], name="head_gemm"))
    batch = dims[0].dim_param or dims[0].dim_value
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("head", TensorProto.FLOAT, [batch, 4]))
    onnx.checker.check_model(proto, full_check=True)
    return Generated(proto)


def agreement(original: ir.Model, pruned: ir.Model, feed: dict) -> tuple[float, float]:
    """(relative error, cosine) over all outputs flattened together, as the report defines."""
    want = np.concatenate([a.astype(np.float64).ravel() for a in outputs(original, feed).values()])
    got = np.concatenate([a.astype(np.float64).ravel() for a in outputs(pruned, feed).values()])
    rel = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-15)
    cosine = want @ got / max(np.linalg.norm(want) * np.linalg.norm(got), 1e-30)
    return float(rel), float(cosine)


@given(generated=models(max_ops=6), clean=st.booleans())
def test_property_prune_passes_at_sparsity_zero_change_no_byte(generated, clean):
    model = cleaned(generated) if clean else ir.from_proto(generated.proto)
    before = serialize(model)
    if weights_of(model):
        assert not PruneMagnitudePass(0.0)(model).modified
        assert serialize(model) == before
    analysis = analyze_channels(model)
    plan, decisions = plan_channels(analysis, unit_scores(analysis, "l1"), 0.0, 1)
    assert all(d.kept == d.channels for d in decisions)
    assert not PruneChannelsPass(plan)(model).modified
    assert serialize(model) == before


# Structured examples need a prunable channel group: about one drawn graph in eight has one.
@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(generated=models(max_ops=8), structured=st.booleans())
def test_property_prune_at_near_zero_sparsity_is_exact_and_idempotent(generated, structured):
    if structured:
        generated = with_head(generated)
        assume(prunable_groups(cleaned(generated)))
    model = ir.from_proto(generated.proto)
    assume(weights_of(model))
    event(f"structured: {structured}")
    options = PruneOptions(NEAR_ZERO, structured=structured, **FAST_PRUNE)
    pruned, report = prune_model(model, options)
    assert serialize(model) == serialize(ir.from_proto(generated.proto)), "input was modified"
    assert report.achieved_sparsity == 0.0
    full_check(pruned)
    for feed in random_feeds(input_specs(model)):
        want, got = outputs(model, feed), outputs(pruned, feed)
        assert list(got) == list(want)
        for name in want:
            if structured:  # cleanup ran first: the optimize recipe's tolerance
                np.testing.assert_allclose(got[name], want[name], atol=ATOL, rtol=RTOL)
            else:
                np.testing.assert_array_equal(got[name], want[name])
    again, _ = prune_model(pruned, options)
    assert serialize(again) == serialize(pruned)


@given(
    generated=models(max_ops=6),
    sparsity=st.sampled_from([0.3, 0.5, 0.9]),
    scope=st.sampled_from(["global", "layer"]),
)
def test_property_unstructured_prune_reports_the_zeros_it_made(generated, sparsity, scope):
    model = ir.from_proto(generated.proto)
    original = weights_of(model)
    assume(original)
    pruned, report = prune_model(model, PruneOptions(sparsity, scope=scope, **FAST_PRUNE))
    full_check(pruned)
    after = weights_of(pruned)
    assert sorted(after) == sorted(original), "pruning added or lost a weight"
    zeros = {name: int(np.sum(a == 0)) for name, (_, a) in after.items()}
    sizes = {name: a.size for name, (_, a) in after.items()}
    assert report.achieved_sparsity == pytest.approx(sum(zeros.values()) / sum(sizes.values()))
    assert report.per_layer == pytest.approx({after[n][0]: zeros[n] / sizes[n] for n in after})
    if scope == "global":  # drawn weights are never exactly 0: the pass zeros round(s * n)
        assert sum(zeros.values()) == round(sparsity * sum(sizes.values()))
    else:
        assert zeros == {n: round(sparsity * sizes[n]) for n in after}
    for name, (_, array) in after.items():  # survivors keep their value
        kept = array != 0
        np.testing.assert_array_equal(array[kept], original[name][1][kept])
    check_pruned_runs_and_agreement(model, pruned, report)


def check_pruned_runs_and_agreement(model: ir.Model, pruned: ir.Model, report) -> None:
    assert [v.name for v in pruned.graph.inputs] == [v.name for v in model.graph.inputs]
    for feed in random_feeds(input_specs(model)):
        want, got = outputs(model, feed), outputs(pruned, feed)
        assert list(got) == list(want)
        assert [a.shape for a in got.values()] == [a.shape for a in want.values()]
    rel, cosine = agreement(model, pruned, random_feed(input_specs(model)))
    assert report.agreement.rel_error == pytest.approx(rel, rel=RECOMPUTE_TOL, abs=1e-12)
    assert report.agreement.cosine == pytest.approx(cosine, rel=RECOMPUTE_TOL)


def out_channels(model: ir.Model) -> dict[str, int]:
    """Output channels of each Conv/Gemm/MatMul with an initializer weight, by node name."""
    counts = {}
    for node in model.graph:
        if node.op_type not in WEIGHTED_OPS or len(node.inputs) < 2 or node.inputs[1] is None:
            continue
        weight = node.inputs[1].const_value
        if weight is None:
            continue
        if node.op_type == "Conv":
            axis = 0
        elif node.op_type == "Gemm":
            axis = 0 if node.attributes.get_int("transB", 0) else 1
        else:
            axis = -1
        counts[node.name or ""] = weight.shape[axis]
    return counts


# About one drawn graph in eight has a prunable channel group (see with_head).
@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(generated=models(max_ops=8), sparsity=st.sampled_from([0.3, 0.5, 0.9]))
def test_property_structured_prune_reports_the_channels_it_removed(generated, sparsity):
    generated = with_head(generated)
    model = ir.from_proto(generated.proto)
    reference = cleaned(generated)
    assume(prunable_groups(reference))
    pruned, report = prune_model(model, PruneOptions(sparsity, structured=True, **FAST_PRUNE))
    full_check(pruned)
    before, after = out_channels(reference), out_channels(pruned)
    removed = total = 0
    for decision in report.groups:
        if decision.status == "skipped":
            continue
        kept = {after[p] for p in decision.producers}
        assert len(kept) == 1, f"{decision.name}: producers disagree on channels {kept}"
        first = decision.producers[0]
        assert (before[first], after[first]) == (decision.channels, decision.kept)
        removed += before[first] - after[first]
        total += before[first]
    assert report.achieved_sparsity == pytest.approx(removed / total)
    event(f"channels removed: {removed > 0}")
    check_pruned_runs_and_agreement(model, pruned, report)


# ---- quantize ---------------------------------------------------------------------------------


def write_feeds(folder: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    folder.mkdir()
    for i, feed in enumerate(feeds):
        np.savez(folder / f"{i:03d}.npz", **feed)
    return folder


def cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per-sample cosine (rows along axis 0; the whole tensor below rank 2); 1 if both are 0."""
    rows = reference.shape[0] if reference.ndim >= 2 else 1
    r = reference.astype(np.float64).reshape(rows, -1)
    c = candidate.astype(np.float64).reshape(rows, -1)
    result = []
    for a, b in zip(r, c, strict=True):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        result.append(1.0 if na == nb == 0 else (a @ b / (na * nb) if na * nb > 0 else 0.0))
    return np.array(result)


@given(
    generated=models(max_ops=6),
    method=st.sampled_from(["minmax", "auto"]),
    smoothquant=st.sampled_from(["off", "auto"]),
    per_channel=st.booleans(),
)
def test_property_quantize_is_valid_and_reports_the_cosine_it_measured(
    generated, method, smoothquant, per_channel
):
    model = ir.from_proto(generated.proto)
    prepared, _ = apply(prepare_passes(model), ir.from_proto(generated.proto))
    assume(find_candidates(prepared))
    specs = input_specs(model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = save_model(model, folder / "fp32.onnx")
        calib = write_feeds(folder / "calib", [random_feed(specs, seed=s) for s in range(8)])
        evaluation = [random_feed(specs, seed=100 + s, batch=1 + s % 2) for s in range(3)]
        eval_dir = write_feeds(folder / "eval", evaluation)
        out = folder / "int8.onnx"
        report = quantize(
            source,
            out,
            calib=calib,
            eval_data=eval_dir,
            metric="cosine",
            method=method,
            smoothquant=smoothquant,
            per_channel=per_channel,
            latency_aware=False,
            timing_seconds=0.05,
        )
        full_check(out)
        quantized = onnx.load(str(out))
        assert any(n.op_type in QUANTIZED_OPS for n in quantized.graph.node)
        assert [i.name for i in quantized.graph.input] == [i.name for i in model.graph.inputs]
        fp32 = [outputs(source, f) for f in evaluation]
        int8 = [outputs(out, f) for f in evaluation]
        assert [list(o) for o in int8] == [list(o) for o in fp32]
        losses = {}
        for name in fp32[0]:
            assert [o[name].shape for o in int8] == [o[name].shape for o in fp32]
            rows = [cosines(r[name], c[name]) for r, c in zip(fp32, int8, strict=True)]
            losses[name] = 1 - float(np.mean(np.concatenate(rows)))
        event(f"int8 modes: {sorted(set(report.result.plan.modes.values()))}")
        score = report.result.score
        measured = {name: f.loss for name, f in score.outputs.items()}
        assert measured == pytest.approx(losses, abs=RECOMPUTE_TOL)
        assert {k: 1 - v for k, v in score.values.items()} == pytest.approx(losses, abs=1e-6)
        recorded = json.loads(load_model(out).metadata_props[QUANTIZE_METADATA])["fidelity"]
        assert {k: f["loss"] for k, f in recorded.items()} == pytest.approx(measured, abs=1e-12)


# ---- export (torch) ---------------------------------------------------------------------------

HAS_TORCH = importlib.util.find_spec("torch") is not None


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="needs the torch extra")
@settings(max_examples=3)  # an export takes 1-3 s on 2 cores (the first ~7 s): a few per run
@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    activation=st.sampled_from(["ReLU", "Tanh", "Sigmoid"]),
    seed=st.integers(0, 2**16),
)
def test_property_export_of_a_random_mlp_matches_torch_at_two_batch_sizes(widths, activation, seed):
    """Tolerance atol 1e-5, rtol 1e-4: torch and ORT float32 GEMMs sum in other orders (~1e-7
    relative on these order-1 activations); a wrong export is off by O(1)."""
    import torch
    from onnxsmith.exporter.export import export

    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b), getattr(torch.nn, activation)()]
    module = torch.nn.Sequential(*layers[:-1]).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlp.onnx"
        export(module, torch.randn(2, widths[0]), path, dynamic_batch=True)
        full_check(path)
        exported = load_model(path)
        (name,) = [v.name for v in exported.graph.inputs]
        for batch in (1, 3):
            x = torch.randn(batch, widths[0])
            with torch.no_grad():
                want = module(x).numpy()
            (got,) = outputs(path, {name: x.numpy()}).values()
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
        once = serialize(exported)  # already cleaned: optimizing it again changes nothing
        assert serialize(apply(cleanup_passes(), exported)[0]) == once


# ---- regressions found by the properties above ------------------------------------------------


def test_merge_leaves_members_constant_nodes_alone():
    """`Model.clone` shares tensors and renaming a lifted Constant renamed the caller's tensor
    to `m0/k`: the member changed and so did the sha256 recorded for it."""
    member = ir.from_proto(
        onnx.parser.parse_model(
            """<ir_version: 8, opset_import: ["" : 17]>
            g (float[1,20] x) => (float[1,20] y) {
                k = Constant <value: tensor = float[1,20] k {0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,
                    15,16,17,18,19}> ()
                y = Add (x, k)
            }"""
        )
    )
    before = serialize(member)
    merged = merge_models([member, member], "mean")
    assert serialize(member) == before
    shas = {m["sha256"] for m in merge_record(merged)["members"]}
    assert len(shas) == 1


def test_optimize_drops_values_read_only_by_a_folded_branch_and_is_idempotent_through_files():
    """Folding If(false) kept `r = Relu(x)`, read only by the discarded branch: the saved model
    held a dead node, which the next `optimize` removed (not idempotent through files)."""
    model = ir.from_proto(
        onnx.parser.parse_model(
            """<ir_version: 8, opset_import: ["" : 17]>
            g (float[2,3] x) => (float[2,3] y) <bool c = {0}> {
                r = Relu (x)
                z = If (c) <
                    then_branch = t () => (float[2,3] a) { a = Relu (r) },
                    else_branch = e () => (float[2,3] b) { b = Sigmoid (r) }
                >
                y = Sigmoid (x)
            }"""
        )
    )
    once, _ = apply(cleanup_passes(), model)
    assert [n.op_type for n in once.graph] == ["Sigmoid"]
    twice, _ = apply(cleanup_passes(), ir.from_proto(ir.to_proto(once)))
    assert serialize(twice) == serialize(once)


def gemm_with_bias(shape: tuple[int, ...], shared: bool = False) -> ir.Model:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm")]
    outputs_ = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])]
    if shared:  # the bias also feeds an Add: it must keep its shape there
        nodes.append(helper.make_node("Add", ["y", "b"], ["z"], name="add"))
        outputs_.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3]))
    graph = helper.make_graph(
        nodes,
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        outputs_,
        [
            numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), "b"),
        ],
    )
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("shape", [(1, 3), (1,), (), (1, 1)])
@pytest.mark.parametrize("shared", [False, True])
def test_quantize_per_channel_gemm_with_a_broadcast_bias(shape, shared):
    """ORT's per-channel static quantizer failed on a Gemm bias of shape (1, N) (and (1,), (),
    (1, 1)); prepare now gives Gemm a (N,) bias, an exact change."""
    model = gemm_with_bias(shape, shared)
    before = serialize(model)
    feed = {"x": np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)}
    want = outputs(model, feed)
    result = FlattenGemmBiasPass()(model)
    assert result.modified and not FlattenGemmBiasPass()(model).modified
    gemm = next(n for n in model.graph if n.op_type == "Gemm")
    assert gemm.inputs[2] is not None and gemm.inputs[2].shape == ir.Shape([3])
    full_check(model)
    got = outputs(model, feed)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    untouched = gemm_with_bias((3,), shared)
    assert not FlattenGemmBiasPass()(untouched).modified
    with tempfile.TemporaryDirectory() as tmp:  # and the quantizer now accepts it
        folder = Path(tmp)
        source = save_model(ir.from_proto(onnx.ModelProto.FromString(before)), folder / "m.onnx")
        calib = write_feeds(
            folder / "calib", [random_feed(input_specs(model), seed=s) for s in range(6)]
        )
        report = quantize(
            source,
            folder / "int8.onnx",
            calib=calib,
            method="minmax",
            smoothquant="off",
            max_loss=1.0,  # no fallback: the static node must stay static
            latency_aware=False,
            timing_seconds=0.05,
        )
        assert report.result.plan.modes == {"gemm": "static"}


def test_per_tensor_dynamic_int8_declares_the_scale_shape_it_stores():
    """A per-tensor weight scale is 0-d; np.ascontiguousarray stored it with shape (1,) under
    a declared scalar, which the full checker refuses."""
    model = QuantizeDynamicPass(["gemm"], per_channel=False)(gemm_with_bias((3,))).model
    full_check(model)
    scale = model.graph.initializers["w_scale"]
    assert scale.const_value is not None and scale.const_value.shape == scale.shape == ir.Shape([])


def test_optimize_folds_batchnorm_after_an_if_in_one_run():
    """MatMul+Add+BatchNormalization after an If: the If's output had no shape until the
    recipe's last pass, so the fold waited for a second `optimize`."""
    model = ir.from_proto(
        onnx.parser.parse_model(
            """<ir_version: 8, opset_import: ["" : 17]>
            g (float[N,2] x, bool c) => (float[N,1] y)
              <float[2,1] w = {0.5, -0.25}, float[1] b = {0.1}, float[1] gamma = {0.5},
               float[1] beta = {0.06}, float[1] mean = {0.08}, float[1] var = {1.1}> {
                h = If (c) <
                    then_branch = t () => (float[N,2] p) { p = Relu (x) },
                    else_branch = e () => (float[N,2] q) { q = Sigmoid (x) }
                >
                m = MatMul (h, w)
                a = Add (m, b)
                y = BatchNormalization (a, gamma, beta, mean, var)
            }"""
        )
    )
    once, _ = apply(cleanup_passes(), model)
    assert "BatchNormalization" not in [n.op_type for n in once.graph]
    twice, _ = apply(cleanup_passes(), ir.from_proto(ir.to_proto(once)))
    assert serialize(twice) == serialize(once)
