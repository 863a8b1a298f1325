"""merge_models: every mode against the same combination computed from separate ORT sessions.

Tolerance: max abs error 1e-5 for float outputs (the members' nodes are the same kernels merged
or not; only the combiner's float sums are reassociated, errors ~1e-7 on these logits) and
exact equality for vote indices and cascade stages.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from merge_models_zoo import (
    cnn,
    outputs,
    postprocess,
    preprocess,
    probs_cnn,
    softmax,
    vote_by_hand,
    with_function,
)
from modelzoo import if_model, to_ir

from onnxsmith.errors import PassError, UsageError
from onnxsmith.io import load_model, save_model
from onnxsmith.merge import merge_models, merge_record, set_threshold

ATOL = 1e-5
OPSETS = (11, 13, 17)


@pytest.fixture(scope="module")
def members() -> list[ir.Model]:
    """Three different CNNs at three opsets."""
    return [cnn(seed, opset) for seed, opset in zip((0, 1, 2), OPSETS, strict=True)]


@pytest.fixture(scope="module")
def feeds() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"image": rng.normal(size=(b, 1, 8, 8)).astype(np.float32)} for b in (1, 5)]


def full_check(model: ir.Model) -> None:
    onnx.checker.check_model(ir.to_proto(model), full_check=True)


def all_names(model: ir.Model) -> list[str]:
    names = []
    for graph in model.graphs():
        names += [v.name for v in graph.inputs if v.name]
        names += [v.name for n in graph for v in n.outputs if v.name]
    return names


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("mean", {}),
        ("mean", {"softmax": True}),
        ("max", {}),
        ("weighted", {"weights": [2.0, 1.0, 1.0]}),
        ("vote", {}),
        ("vote", {"softmax": True}),
    ],
)
def test_parallel_modes_match_separate_sessions(members, feeds, mode, options):
    merged = merge_models(members, mode, **options)
    full_check(merged)
    for feed in feeds:
        got = dict(zip([v.name for v in merged.graph.outputs], outputs(merged, feed), strict=True))
        scores = [outputs(m, feed)[0] for m in members]
        if options.get("softmax"):
            scores = [softmax(s) for s in scores]
        if mode == "weighted":
            expected = sum(w / 4 * s for w, s in zip(options["weights"], scores, strict=True))
        elif mode == "max":
            expected = np.max(scores, axis=0)
        else:
            expected = np.mean(scores, axis=0)
        assert got["logits"].shape == (feed["image"].shape[0], 10)
        assert np.abs(got["logits"] - expected).max() <= ATOL
        if mode == "vote":
            assert got["logits_vote"].dtype == np.int64
            np.testing.assert_array_equal(got["logits_vote"], vote_by_hand(scores))


def test_vote_ties_go_to_the_higher_mean_score():
    def shifted(bias: list[float]) -> ir.Model:
        return to_ir(
            onnx.helper.make_graph(
                [onnx.helper.make_node("Add", ["x", "bias"], ["y"])],
                "shift",
                [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", 10])],
                [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 10])],
                [onnx.numpy_helper.from_array(np.asarray(bias, np.float32), "bias")],
            )
        )

    first, second = [0.0] * 10, [0.0] * 10
    first[2], first[7] = 3.0, 1.0  # votes for 2
    second[7] = 2.5  # votes for 7; mean: class 2 -> 1.5, class 7 -> 1.75
    merged = merge_models([shifted(first), shifted(second)], "vote")
    mean, vote = outputs(merged, {"x": np.zeros((2, 10), np.float32)})
    assert mean[0, 7] > mean[0, 2]
    np.testing.assert_array_equal(vote, [7, 7])


def test_symbolic_batch_and_metadata(members, tmp_path):
    paths = [save_model(m, tmp_path / f"m{i}.onnx") for i, m in enumerate(members)]
    loaded = [load_model(p) for p in paths]
    merged = merge_models(loaded, "weighted", weights=[1, 1, 2])
    (image,) = merged.graph.inputs
    assert [str(d) for d in image.shape] == ["batch", "1", "8", "8"]
    assert str(merged.graph.outputs[0].shape[0]) == "batch"
    record = merge_record(merged)
    assert record["mode"] == "weighted" and record["weights"] == [0.25, 0.25, 0.5]
    assert record["opset"] == 17
    assert [m["file"] for m in record["members"]] == ["m0.onnx", "m1.onnx", "m2.onnx"]
    assert [m["opset"] for m in record["members"]] == list(OPSETS)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert [m["sha256"] for m in record["members"]] == digests
    assert merged.opset_imports[""] == 17


def test_inputs_are_not_modified(members):
    before = [ir.to_proto(m).SerializeToString() for m in members]
    merge_models(members, "mean")
    with pytest.raises(UsageError):
        merge_models(members, "mean", opset=12)
    assert [ir.to_proto(m).SerializeToString() for m in members] == before


def test_identical_members_are_stored_once(tmp_path):
    single = save_model(cnn(0), tmp_path / "one.onnx").stat().st_size
    same = save_model(merge_models([cnn(0)] * 3, "mean"), tmp_path / "same.onnx")
    different = save_model(merge_models([cnn(s) for s in range(3)], "mean"), tmp_path / "d.onnx")
    assert same.stat().st_size < 1.2 * single
    assert different.stat().st_size > 2.5 * single


def test_distinct_input_names_stay_separate_or_are_mapped(feeds):
    a, b = cnn(0), cnn(1, input_name="input")
    separate = merge_models([a, b], "mean")
    assert [v.name for v in separate.graph.inputs] == ["image", "input"]
    mapped = merge_models([a, b], "mean", mapping=["input=image"])
    assert [v.name for v in mapped.graph.inputs] == ["image"]
    feed = feeds[1]
    expected = (outputs(a, feed)[0] + outputs(b, {"input": feed["image"]})[0]) / 2
    assert np.abs(outputs(mapped, feed)[0] - expected).max() <= ATOL
    assert merge_record(mapped)["members"][1]["feeds"] == {"input": ["", "image"]}


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (cnn(1, side=16), "axis 2 is 8 vs 16"),
        (postprocess(input_name="image"), "rank 4"),
    ],
)
def test_mismatched_inputs_are_one_line_errors_with_a_map_hint(second, message):
    with pytest.raises(PassError) as info:
        merge_models([cnn(0), second], "mean")
    text = str(info.value)
    assert "\n" not in text and message in text and "--map 1:image=image_1" in text


def test_mismatched_outputs_are_clear_errors():
    ten, five = cnn(0), tiny_five_classes()
    with pytest.raises(PassError, match=r"output 'logits' .* axis 1 is 10 vs 5 .*--output"):
        merge_models([ten, five], "mean")
    with pytest.raises(PassError, match=r"outputs differ: .*'probs', 'label'.*--output NAME"):
        merge_models([postprocess(), with_two_outputs()], "mean")
    with pytest.raises(PassError, match=r"'label' .* is int64; only float outputs"):
        merge_models([postprocess(), postprocess()], "mean", output="label")
    with pytest.raises(PassError, match=r"vote needs one score output"):
        merge_models([postprocess(), postprocess()], "vote")


def tiny_five_classes() -> ir.Model:
    from onnxsmith.samples import tiny_cnn

    return tiny_cnn(seed=3, classes=5)


def with_two_outputs() -> ir.Model:
    model = postprocess()
    model.graph.outputs[1].name = "argmax"
    return model


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"mode": "median"}, "unknown mode 'median'"),
        ({"mode": "weighted"}, "needs --weights"),
        ({"mode": "mean", "weights": [1, 1, 1]}, "weighted only"),
        ({"mode": "weighted", "weights": [1, -1, 1]}, "non-negative"),
        ({"mode": "weighted", "weights": [1, 1]}, "one per model"),
        ({"mode": "cascade"}, "needs --threshold"),
        ({"mode": "mean", "threshold": 0.5}, "cascade only"),
        ({"mode": "stack"}, "needs fitted weights"),
        ({"mode": "mean", "mapping": ["nope"]}, "not OLD=NEW"),
        ({"mode": "mean", "mapping": ["ghost=image"]}, "no member has an input or output named"),
        ({"mode": "mean", "mapping": ["7:image=x"]}, "there is no member 7"),
        ({"mode": "mean", "opset": 12}, "never downgrades"),
    ],
)
def test_bad_options_are_usage_errors(members, options, error):
    with pytest.raises(UsageError, match=error):
        merge_models(members, **options)


def test_an_op_that_blocks_the_upgrade_is_named():
    old = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Upsample", ["image", "scales"], ["up"], mode="nearest")],
            "old",
            [onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, ["b", 1, 8, 8])],
            [onnx.helper.make_tensor_value_info("up", onnx.TensorProto.FLOAT, None)],
            [onnx.numpy_helper.from_array(np.ones(4, np.float32), "scales")],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 9)],
    )
    with pytest.raises(PassError, match=r"cannot be brought to the common opset 13 .*'Upsample'"):
        merge_models([ir.from_proto(old), cnn(0, 13)], "mean", output="up")


def test_names_are_unique_and_prefixed_when_members_are_identical():
    merged = merge_models([cnn(0), cnn(0)], "mean")
    names = all_names(merged)
    assert len(names) == len(set(names))
    assert any(n.startswith("m0/") for n in names) and any(n.startswith("m1/") for n in names)


def test_if_subgraph_members_are_renamed_consistently():
    a, b = if_model(0), if_model(1)
    merged = merge_models([a, b], "mean")
    full_check(merged)
    subgraphs = [g for g in merged.graphs() if g is not merged.graph]
    assert len(subgraphs) == 4
    assert sorted(g.name[:3] for g in subgraphs) == ["m0/", "m0/", "m1/", "m1/"]
    names = all_names(merged)
    assert len(names) == len(set(names))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    for cond in (True, False):
        feed = {"x": x, "cond": np.array(cond)}
        expected = (outputs(a, feed)[0] + outputs(b, feed)[0]) / 2
        assert np.abs(outputs(merged, feed)[0] - expected).max() <= ATOL


def test_functions_are_renamed_per_member():
    merged = merge_models([with_function(2.0), with_function(3.0)], "mean")
    full_check(merged)
    assert sorted(f.name for f in merged.functions.values()) == ["m0/Scale", "m1/Scale"]
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(outputs(merged, {"x": x})[0], 2.5 * x, atol=ATOL)


def test_chain_by_name_across_opsets(feeds):
    stages = [preprocess(17), cnn(0, 13), postprocess(11)]
    merged = merge_models(stages, "chain")
    full_check(merged)
    assert [v.name for v in merged.graph.inputs] == ["raw"]
    assert [v.name for v in merged.graph.outputs] == ["probs", "label"]
    irs = [m["ir_version"] for m in merge_record(merged)["members"]]
    assert len(set(irs)) == 2 and merged.ir_version == max(irs)
    raw = np.random.default_rng(2).integers(0, 16, (3, 1, 8, 8)).astype(np.uint8)
    (image,) = outputs(stages[0], {"raw": raw})
    (logits,) = outputs(stages[1], {"image": image})
    probs, label = outputs(stages[2], {"logits": logits})
    got_probs, got_label = outputs(merged, {"raw": raw})
    assert np.abs(got_probs - probs).max() <= ATOL
    np.testing.assert_array_equal(got_label, label)


def test_chain_with_map_and_output_choice():
    stages = [cnn(0), postprocess(input_name="scores")]
    with pytest.raises(
        PassError, match=r"reads none of the earlier outputs .*--map 0:logits=scores"
    ):
        merge_models(stages, "chain")
    merged = merge_models(stages, "chain", mapping=["logits=scores"], output="label")
    assert [v.name for v in merged.graph.outputs] == ["label"]
    image = np.random.default_rng(3).normal(size=(4, 1, 8, 8)).astype(np.float32)
    (logits,) = outputs(stages[0], {"image": image})
    np.testing.assert_array_equal(outputs(merged, {"image": image})[0], logits.argmax(axis=1))


def test_chain_type_mismatch_names_both_sides():
    with pytest.raises(PassError, match=r"output 'image' of member 0 .* cannot feed .* dtype"):
        merge_models([preprocess(), cast_to_double()], "chain")


def cast_to_double() -> ir.Model:
    model = cnn(0)
    model.graph.inputs[0].dtype = ir.DataType.DOUBLE
    return model


def test_cascade_threshold_zero_never_escalates_and_above_one_always(feeds):
    small, big = cnn(0, 11), cnn(1, 17)
    feed = feeds[1]
    (small_out,) = outputs(small, feed)
    (big_out,) = outputs(big, feed)
    never = merge_models([small, big], "cascade", threshold=0.0)
    full_check(never)
    out, stage = outputs(never, feed)
    assert np.abs(out - small_out).max() <= ATOL and not stage.any()
    always = merge_models([small, big], "cascade", threshold=1.01)
    out, stage = outputs(always, feed)
    assert np.abs(out - big_out).max() <= ATOL and stage.tolist() == [1] * 5


def test_cascade_escalates_per_sample(feeds):
    small, big = cnn(0), cnn(1)
    feed = feeds[1]
    (small_out,) = outputs(small, feed)
    (big_out,) = outputs(big, feed)
    confidence = softmax(small_out).max(axis=1)
    ranked = np.sort(confidence)
    threshold = float(ranked[2] + ranked[3]) / 2  # between samples: float noise cannot flip one
    out, stage = outputs(merge_models([small, big], "cascade", threshold=threshold), feed)
    low = confidence < threshold
    assert 0 < low.sum() < 5
    np.testing.assert_array_equal(stage, low.astype(np.int64))
    expected = np.where(low[:, None], big_out, small_out)
    assert np.abs(out - expected).max() <= ATOL


def test_three_stage_cascade_nests_and_threshold_can_be_changed(feeds):
    merged = merge_models([cnn(0), cnn(1), cnn(2)], "cascade", threshold=1.01)
    full_check(merged)
    feed = feeds[1]
    (last,) = outputs(cnn(2), feed)
    out, stage = outputs(merged, feed)
    assert stage.tolist() == [2] * 5 and np.abs(out - last).max() <= ATOL
    set_threshold(merged, 0.0)
    assert not outputs(merged, feed)[1].any()
    with pytest.raises(PassError, match="not a cascade"):
        set_threshold(merge_models([cnn(0), cnn(1)], "mean"), 0.5)


def test_cascade_softmax_is_automatic_for_logits_only():
    logits = merge_models([cnn(0), cnn(1)], "cascade", threshold=0.5)
    probs = merge_models([probs_cnn(0), probs_cnn(1)], "cascade", threshold=0.5)
    assert merge_record(logits)["softmax"] == [True, True]
    assert merge_record(probs)["softmax"] == [False, False]
    image = np.random.default_rng(4).normal(size=(6, 1, 8, 8)).astype(np.float32)
    (small_probs,) = outputs(probs_cnn(0), {"image": image})
    _, stage = outputs(probs, {"image": image})
    np.testing.assert_array_equal(stage, (small_probs.max(axis=1) < 0.5).astype(np.int64))


def test_cascade_needs_a_dynamic_batch():
    fixed = [cnn(0), cnn(1)]
    for model in fixed:
        model.graph.inputs[0].shape = ir.Shape([2, 1, 8, 8])
    with pytest.raises(PassError, match=r"'image' have no dynamic batch axis"):
        merge_models(fixed, "cascade", threshold=0.5)


def test_explicit_opset_below_what_the_mode_needs_is_refused():
    old = [cnn(0, 10), cnn(1, 10)]
    with pytest.raises(UsageError, match=r"--opset 10 is below 11"):
        merge_models(old, "cascade", threshold=0.5, opset=10)
    merged = merge_models(old, "cascade", threshold=0.5)
    assert merged.opset_imports[""] == 11
    assert [m["opset"] for m in merge_record(merged)["members"]] == [10, 10]
