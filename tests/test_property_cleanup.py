"""Property tests: every cleanup pass and the whole optimize recipe on random valid graphs.

For each drawn model (tests/graphgen.py) a transform must keep ORT outputs equal, produce a model
that passes `onnx.checker.check_model(full_check=True)`, and be idempotent (a second run leaves
the serialized model byte-identical).

Tolerance: atol 1e-4, rtol 1e-5 — what `onnxsmith optimize` promises its users. The generator
keeps activations of order 1, so the only legitimate differences are float32 reassociation in
folded constants and fused BatchNormalization (observed below 1e-5); any wrong axis, channel or
dropped node gives errors of order 1.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
import pytest
from graphgen import Generated, models
from hypothesis import given
from hypothesis import strategies as st
from onnxsmith.passes.cleanup import UpgradeOpsetPass, cleanup_passes
from onnxsmith.runtime.parity import compare_models, random_feeds

from onnxsmith.io import load_model, save_model
from onnxsmith.optimize import ATOL, RTOL, optimize_file
from onnxsmith.pipeline import apply
from onnxsmith.signature import input_specs
from onnxsmith.summary import summarize

PASS_NAMES = [type(p).__name__ for p in cleanup_passes()]


def fresh_pass(name: str) -> ir.passes.PassBase:
    return next(p for p in cleanup_passes() if type(p).__name__ == name)


def serialize(model: ir.Model) -> bytes:
    return ir.to_proto(model).SerializeToString()


def assert_exact_and_valid(generated: Generated, model: ir.Model, path: Path | None = None) -> None:
    """Full checker on `model` (on its file when it has one: external data is checked there),
    then ORT outputs of `model` against the drawn model's."""
    onnx.checker.check_model(str(path) if path else ir.to_proto(model), full_check=True)
    reference = ir.from_proto(generated.proto)
    feeds = random_feeds(input_specs(reference))
    diffs = compare_models(reference, model, feeds, atol=ATOL, rtol=RTOL)
    bad = [d for d in diffs if not d.within()]
    assert not bad, f"outputs differ: {bad}"


@pytest.mark.parametrize("name", PASS_NAMES)
@given(generated=models())
def test_property_each_cleanup_pass_is_exact_valid_and_idempotent(name, generated):
    model = ir.from_proto(generated.proto)
    fresh_pass(name)(model)
    assert_exact_and_valid(generated, model)
    once = serialize(model)
    fresh_pass(name)(model)
    assert serialize(model) == once


@given(generated=models(), data=st.data())
def test_property_upgrade_opset_is_exact(generated, data):
    target = data.draw(st.integers(generated.opset, 22), label="target")
    model = ir.from_proto(generated.proto)
    UpgradeOpsetPass(target)(model)
    assert model.opset_imports[""] == target
    assert_exact_and_valid(generated, model)


@given(generated=models(), keep_dropout=st.booleans(), upgrade=st.booleans())
def test_property_optimize_recipe_is_exact_valid_and_idempotent(generated, keep_dropout, upgrade):
    opset = 21 if upgrade else None
    model, _ = apply(
        cleanup_passes(opset=opset, keep_dropout=keep_dropout), ir.from_proto(generated.proto)
    )
    assert_exact_and_valid(generated, model)
    once = serialize(model)
    model, _ = apply(cleanup_passes(opset=opset, keep_dropout=keep_dropout), model)
    assert serialize(model) == once


@given(generated=models(), external_data=st.booleans())
def test_property_optimize_file_round_trips_deterministically(generated, external_data):
    """Save, optimize twice from disk, load back: identical bytes, identical inspect JSON.

    Both runs write `out.onnx` (in two folders): the model names its own `.data` file.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = save_model(ir.from_proto(generated.proto), folder / "in.onnx")
        written = []
        for run in ("a", "b"):
            out = folder / run / "out.onnx"
            out.parent.mkdir()
            optimize_file(source, out, external_data=external_data)
            data = out.with_name(f"{out.name}.data")
            written.append((out.read_bytes(), data.read_bytes() if external_data else b""))
        assert written[0] == written[1]
        loaded = [load_model(folder / run / "out.onnx") for run in ("a", "b")]
        summaries = [summarize(m).as_dict() for m in loaded]
        for s in summaries:
            s.pop("path")  # the only field that names the file
        assert json.dumps(summaries[0]) == json.dumps(summaries[1])
        assert_exact_and_valid(generated, loaded[0], folder / "a" / "out.onnx")
