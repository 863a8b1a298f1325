"""Channel groups, PruneChannelsPass and PruneMagnitudePass: the five kinds of test each.

Parity tolerances:
- sparsity 0 is exact (the passes leave the model byte-identical, so ORT computes the same).
- Removing channels whose weights and biases are exactly zero must not change the outputs:
  atol/rtol 1e-5. The pruned kernels sum the same non-zero terms in another blocking order,
  which moves float32 results by ~1e-6 on activations of order 1; slicing a wrong index on
  any tensor gives errors of order 0.1-1.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import prune_zoo
import pytest
from onnx_ir.passes.common import ShapeInferencePass
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.passes.prune import (
    ChannelPlan,
    GroupCost,
    PruneChannelsPass,
    PruneMagnitudePass,
    Sensitivity,
    analyze_channels,
    plan_channels,
    unit_scores,
)
from onnxsmith.runtime.parity import random_feed
from onnxsmith.runtime.session import create_session

from onnxsmith.errors import PassError
from onnxsmith.linear import constant
from onnxsmith.pipeline import apply
from onnxsmith.samples import tiny_cnn
from onnxsmith.signature import input_specs

ATOL = RTOL = 1e-5
MODELS = {
    "resnet": prune_zoo.resnet_like,
    "mobilenet": prune_zoo.mobilenet_like,
    "mlp": prune_zoo.mlp,
    "transformer": prune_zoo.transformer_block,
    "concat_flatten": prune_zoo.concat_flatten,
}


def cleaned(name: str) -> ir.Model:
    return apply(cleanup_passes(), MODELS[name]())[0]


def serialize(model: ir.Model) -> bytes:
    return ir.to_proto(model).SerializeToString()


def outputs(model: ir.Model, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return create_session(model).run(None, feed)


def feed_for(model: ir.Model, seed: int = 1) -> dict[str, np.ndarray]:
    return random_feed(input_specs(model), seed=seed, batch=3, size=8)


def half_plan(model: ir.Model, multiple: int = 8) -> ChannelPlan:
    analysis = analyze_channels(model)
    return plan_channels(analysis, unit_scores(analysis, "l1"), 0.5, multiple)[0]


def zero_removed_units(model: ir.Model, plan: ChannelPlan) -> None:
    """Zeros the output channels `plan` removes in every producer, its bias Add and every
    depthwise conv, so that those channels carry exact zeros."""
    analysis = analyze_channels(model, ops=plan.ops)
    removed: set[int] = set()
    for name, kept in plan.keep.items():
        removed.update(np.delete(analysis.unit_roots[name], list(kept)).tolist())
    writers = {n for n, _, _ in analysis.producers} | {n for n, _ in analysis.group_attrs}
    writers |= {u for n in list(writers) for u, _ in n.outputs[0].uses() if u.op_type == "Add"}
    for s in analysis.slices:
        if s.node not in writers or s.source is not s.node.outputs[0]:
            continue
        value = s.node.inputs[s.index]
        array = constant(value).copy()  # type: ignore[union-attr]
        mask = analysis.kept_mask(s.source, removed)
        index = [slice(None)] * array.ndim
        index[s.axis] = ~mask
        array[tuple(index)] = 0
        value.const_value = ir.tensor(array, name=value.name)  # type: ignore[union-attr]


def conv_channel_counts(model: ir.Model) -> list[int]:
    return [
        constant(n.inputs[1]).shape[0]  # type: ignore[union-attr]
        for n in model.graph
        if n.op_type == "Conv"
    ]


class TestChannelGroups:
    def test_residual_adds_tie_stem_and_block_into_one_group(self):
        groups = {g.name: g for g in analyze_channels(cleaned("resnet")).groups}
        tied = [g for g in groups.values() if len(g.producers) == 2]
        assert len(tied) == 2  # identity block and projection shortcut
        assert all(g.skipped is None and g.units in (16, 32) for g in tied)
        assert [g for g in groups.values() if g.skipped] == [
            g for g in groups.values() if "graph output 'logits'" in (g.skipped or "")
        ]

    def test_depthwise_convs_follow_and_squeeze_excitation_ties(self):
        analysis = analyze_channels(cleaned("mobilenet"))
        assert len(analysis.group_attrs) == 3  # three depthwise convs rewrite `group`
        gated = [g for g in analysis.groups if len(g.producers) == 2]
        assert len(gated) == 1 and gated[0].units == 48  # pointwise conv + excitation conv

    def test_attention_heads_are_units_and_residual_stream_is_skipped(self):
        analysis = analyze_channels(cleaned("transformer"))
        heads = [g for g in analysis.groups if len(g.producers) == 3]
        assert len(heads) == 1 and (heads[0].units, heads[0].width) == (4, 8)
        hidden = [g for g in analysis.groups if g.units == 128]
        assert len(hidden) == 1 and hidden[0].skipped is None
        skipped = [g for g in analysis.groups if g.skipped]
        assert len(skipped) == 2
        assert all("not pruned with them" in (g.skipped or "") for g in skipped)

    def test_unknown_op_skips_its_group_and_the_rest_still_prunes(self):
        model = cleaned("mlp")
        relu = next(n for n in model.graph if n.op_type == "Relu")
        relu.op_type, relu.domain = "Mystery", "com.example"
        model.opset_imports["com.example"] = 1
        groups = analyze_channels(model).groups
        first = groups[0]
        assert first.skipped and "com.example::Mystery" in first.skipped
        assert any(g.skipped is None for g in groups)


class TestPruneChannelsPass:
    @pytest.mark.parametrize("name", sorted(MODELS))
    def test_applies_valid_under_ort_with_smaller_weights(self, name):
        model = cleaned(name)
        feed = feed_for(model)
        expected = outputs(model, feed)
        before = len(serialize(model))
        result = PruneChannelsPass(half_plan(model))(model)
        assert result.modified and result.stats["channels_removed"] > 0
        onnx.checker.check_model(ir.to_proto(model), full_check=True)
        got = outputs(model, feed)
        assert [g.shape for g in got] == [e.shape for e in expected]
        assert np.abs(got[0] - expected[0]).max() > 1e-3  # pruning changed the function
        assert len(serialize(model)) < 0.8 * before

    @pytest.mark.parametrize("name", sorted(MODELS))
    def test_removing_zeroed_channels_is_exact(self, name):
        model = cleaned(name)
        plan = half_plan(model)
        zero_removed_units(model, plan)
        feed = feed_for(model)
        expected = outputs(model, feed)
        PruneChannelsPass(plan)(model)
        np.testing.assert_allclose(outputs(model, feed)[0], expected[0], atol=ATOL, rtol=RTOL)

    def test_groups_without_batchnorm_folding_prune_bn_parameters(self):
        model = apply([ShapeInferencePass()], prune_zoo.resnet_like())[0]
        PruneChannelsPass(half_plan(model))(model)
        bn = next(n for n in model.graph if n.op_type == "BatchNormalization")
        assert constant(bn.inputs[1]).shape == (8,)  # type: ignore[union-attr]
        outputs(model, feed_for(model))

    def test_kept_channel_counts_are_multiples_of_the_block(self):
        model = cleaned("resnet")
        original = conv_channel_counts(model)
        PruneChannelsPass(half_plan(model, multiple=8))(model)
        counts = conv_channel_counts(model)
        assert counts != original and all(c % 8 == 0 for c in counts)

    def test_keep_all_plan_is_a_no_op_and_sparsity_zero_is_exact(self):
        model = cleaned("mobilenet")
        feed = feed_for(model)
        before, expected = serialize(model), outputs(model, feed)
        analysis = analyze_channels(model)
        plan, _ = plan_channels(analysis, unit_scores(analysis, "l1"), 0.0, 8)
        assert not PruneChannelsPass(plan)(model).modified
        assert serialize(model) == before
        np.testing.assert_array_equal(outputs(model, feed)[0], expected[0])

    def test_idempotent_same_plan_same_bytes_and_replanning_at_zero_changes_nothing(self):
        first, second = cleaned("transformer"), cleaned("transformer")
        plan = half_plan(first)
        PruneChannelsPass(plan)(first)
        PruneChannelsPass(plan)(second)
        assert serialize(first) == serialize(second)
        analysis = analyze_channels(first)
        again, _ = plan_channels(analysis, unit_scores(analysis, "l1"), 0.0, 8)
        assert not PruneChannelsPass(again)(first).modified
        assert serialize(first) == serialize(second)

    @pytest.mark.parametrize(
        "change, message",
        [
            (lambda p: {"nope": (0,)}, "does not have"),
            (lambda p: {k: () for k in p.keep}, "keep at least one unit"),
            (lambda p: {k: (10_000,) for k in p.keep}, "keep at least one unit"),
        ],
    )
    def test_bad_plan_raises_and_leaves_model_untouched(self, change, message):
        model = cleaned("resnet")
        plan = half_plan(model)
        bad = ChannelPlan(keep=change(plan), units={**plan.units, "nope": 1})
        before = serialize(model)
        with pytest.raises(PassError, match=message):
            PruneChannelsPass(bad)(model)
        assert serialize(model) == before

    def test_plan_for_a_skipped_group_or_a_pruned_model_raises(self):
        model = cleaned("resnet")
        analysis = analyze_channels(model)
        skipped = next(g for g in analysis.groups if g.skipped)
        bad = ChannelPlan(keep={skipped.name: (0,)}, units={skipped.name: skipped.units})
        with pytest.raises(PassError, match="cannot be pruned"):
            PruneChannelsPass(bad)(model)
        plan = half_plan(model)
        PruneChannelsPass(plan)(model)
        with pytest.raises(PassError, match="pruned already"):
            PruneChannelsPass(plan)(model)


class TestPruneMagnitudePass:
    def test_per_layer_sparsity_including_weights_in_constant_nodes(self):
        model = tiny_cnn()
        result = PruneMagnitudePass(0.5, scope="layer")(model)
        assert result.modified and set(result.stats["per_layer"].values()) == {0.5}
        holder = next(
            n for n in model.graph if n.op_type == "Constant" and n.outputs[0].name == "conv2.w"
        )
        weight = holder.attributes["value"].as_tensor().numpy()
        assert np.mean(weight == 0) == 0.5
        outputs(model, {"image": np.zeros((1, 1, 8, 8), np.float32)})

    def test_global_scope_meets_total_sparsity_with_uneven_layers(self):
        result = PruneMagnitudePass(0.6, scope="global")(prune_zoo.mlp())
        per_layer = result.stats["per_layer"].values()
        assert result.stats["sparsity"] == pytest.approx(0.6, abs=1e-3)
        assert max(per_layer) - min(per_layer) > 0.01

    def test_sparsity_zero_is_a_no_op_with_exact_outputs(self):
        model = prune_zoo.resnet_like()
        feed = feed_for(model)
        before, expected = serialize(model), outputs(model, feed)
        assert not PruneMagnitudePass(0.0)(model).modified
        assert serialize(model) == before
        np.testing.assert_array_equal(outputs(model, feed)[0], expected[0])

    def test_idempotent(self):
        model = prune_zoo.mobilenet_like()
        PruneMagnitudePass(0.4)(model)
        once = serialize(model)
        assert not PruneMagnitudePass(0.4)(model).modified
        assert serialize(model) == once

    def test_outputs_move_more_with_more_sparsity(self):
        errors = []
        for sparsity in (0.2, 0.8):
            model = prune_zoo.mlp()
            feed = feed_for(model)
            expected = outputs(model, feed)[0]
            PruneMagnitudePass(sparsity)(model)
            errors.append(np.abs(outputs(model, feed)[0] - expected).mean())
        assert 0 < errors[0] < errors[1]

    def test_nothing_prunable_raises_and_leaves_model_untouched(self):
        model = prune_zoo.mlp()
        before = serialize(model)
        with pytest.raises(PassError, match="no ConvTranspose layer"):
            PruneMagnitudePass(0.5, ops=("ConvTranspose",))(model)
        assert serialize(model) == before

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"sparsity": 1.5}, "outside"),
            ({"sparsity": 0.5, "criterion": "fisher"}, "unknown"),
            ({"sparsity": 0.5, "criterion": "activation"}, "needs calibration"),
        ],
    )
    def test_bad_options_raise(self, kwargs, message):
        with pytest.raises(PassError, match=message):
            PruneMagnitudePass(**kwargs)


class TestSensitivityAllocation:
    """`plan_channels` with measured costs: channels go where the error grows least."""

    def test_error_curve_is_monotone_and_linear_between_and_beyond_measurements(self):
        cost = GroupCost(removed=(8, 16), error=(0.4, 0.2), macs_per_unit=1.0)
        assert cost.error_at(0) == 0.0
        assert cost.error_at(4) == pytest.approx(0.2)
        assert cost.error_at(16) == pytest.approx(0.4)  # a noisy dip does not count as a gain
        cost = GroupCost(removed=(8, 16), error=(0.1, 0.3), macs_per_unit=1.0)
        assert cost.error_at(12) == pytest.approx(0.2)
        assert cost.error_at(24) == pytest.approx(0.5)

    def test_sensitive_group_keeps_its_channels_and_both_targets_are_met(self):
        analysis = analyze_channels(cleaned("mobilenet"))
        scores = unit_scores(analysis, "l1")
        groups = [g for g in analysis.groups if not g.skipped]
        uniform, _ = plan_channels(analysis, scores, 0.3, 8)
        pruned = [g for g in groups if len(uniform.keep[g.name]) < g.units]
        assert len(pruned) >= 3
        sensitive, cheap = pruned[0], pruned[1]
        # the sensitive group: large error for any unit; `cheap`: free but saves no compute
        costs = {
            g.name: GroupCost(
                removed=(g.units // 4, g.units // 2),
                error=(1.0, 2.0) if g is sensitive else (0.0, 0.0) if g is cheap else (0.01, 0.02),
                macs_per_unit=0.0 if g is cheap else 100.0,
            )
            for g in pruned
        }
        total_macs = 100.0 * sum(g.units for g in pruned)
        plan, decisions = plan_channels(
            analysis, scores, 0.3, 8, sensitivity=Sensitivity(costs, total_macs)
        )
        removed = {g.name: g.units - len(plan.keep[g.name]) for g in groups}
        assert removed[sensitive.name] == 0
        assert removed[cheap.name] > cheap.units - len(uniform.keep[cheap.name])
        channels = sum(g.width * removed[g.name] for g in groups)
        assert channels >= round(0.3 * sum(g.channels for g in groups))
        uniform_macs = sum(
            costs[g.name].macs_per_unit * (g.units - len(uniform.keep[g.name])) for g in pruned
        )
        macs = sum(costs[g.name].macs_per_unit * removed[g.name] for g in pruned)
        assert macs >= min(0.3 * total_macs, uniform_macs)
        for decision in decisions:
            if decision.status == "pruned":
                assert decision.kept % 8 == 0

    def test_without_measured_costs_a_group_keeps_everything(self):
        analysis = analyze_channels(cleaned("resnet"))
        scores = unit_scores(analysis, "l1")
        groups = [g for g in analysis.groups if not g.skipped]
        measured = groups[1:]
        costs = {g.name: GroupCost((g.units // 2,), (0.1,), 10.0) for g in measured}
        plan, _ = plan_channels(analysis, scores, 0.3, 8, sensitivity=Sensitivity(costs, 1e9))
        assert len(plan.keep[groups[0].name]) == groups[0].units
        assert any(len(plan.keep[g.name]) < g.units for g in measured)
