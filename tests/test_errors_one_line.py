"""Errors name the right model in one line; ORT's text is cut to its first meaningful line.

Also: parity counts NaN/inf in the same places as agreement, and piped output keeps table rows
whole. Models are one or two nodes built with onnx.helper.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.runtime.session import ort_reason

import onnxsmith.optimize
from onnxsmith.compare import diff_outputs
from onnxsmith.pipeline import StatsResult

F = TensorProto.FLOAT
ORT_OPSET_TOO_NEW = (
    "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:/onnxruntime_src/onnxruntime/"
    "core/graph/model_load_utils.h:46 void onnxruntime::model_load_utils::ValidateOpsetForDomain("
    "const std::unordered_map<std::__cxx11::basic_string<char>, int>&, const onnxruntime::logging"
    "::Logger&, bool, const std::string&, int) ONNX Runtime only *guarantees* support for models "
    "stamped with official released onnx opset versions. Opset 99 is under development and "
    "support for this is limited. Current official support for domain ai.onnx is till opset 28.\n"
)
ORT_RUN_FAILURE = (
    "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while running "
    "Reshape node. Name:'r' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/"
    "tensor/reshape_helper.h:47 onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::"
    "TensorShape&, onnxruntime::TensorShapeVector&, bool) input_shape_size == size was false. "
    "The input tensor cannot be reshaped to the requested shape.\n\nStacktrace:\n/a/b.cc:12 f()"
)


def one_node(op: str, opset: int, path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", F, ["N", 4])],
        [helper.make_tensor_value_info("y", F, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_ort_reason_drops_status_cpp_paths_signatures_and_stack():
    assert ort_reason(RuntimeError(ORT_OPSET_TOO_NEW)) == (
        "opset 99 of ai.onnx is newer than this onnxruntime supports (max 28); export the model "
        "with opset 28 or lower"
    )
    run = ort_reason(RuntimeError(ORT_RUN_FAILURE))
    assert run.startswith("Non-zero status code returned while running Reshape node")
    assert "input_shape_size == size was false" in run
    assert not any(s in run for s in ("onnxruntime_src", "::", "Stacktrace", "\n", "[ONNX"))


def test_model_ort_cannot_load_is_refused_up_front_unless_no_check(cli, tmp_path):
    source = one_node("Relu", 99, tmp_path / "future.onnx")
    output = tmp_path / "out.onnx"
    code, out, err = cli("optimize", source, "-o", output)
    assert code == 1 and err.count("\n") == 1 and not output.exists()
    assert str(source) in err and "newer than this onnxruntime supports (max " in err
    assert "--no-check" in err and "onnxruntime_src" not in err and "parity" not in out
    code, out, _ = cli("optimize", source, "-o", output, "--no-check")
    assert code == 0 and output.exists() and "skipped (--no-check)" in out


def test_debug_shows_ort_full_text(cli, tmp_path):
    source = one_node("Relu", 99, tmp_path / "future.onnx")
    code, _, err = cli("optimize", source, "-o", tmp_path / "o.onnx", "--debug")
    assert code == 1 and "ValidateOpsetForDomain" in err  # ORT's own text, on the chain


class MistypePass(ir.passes.InPlacePass):
    """Breaks the model the way a buggy pass would: a float value declared int64."""

    def call(self, model: ir.Model) -> StatsResult:
        model.graph.outputs[0].dtype = ir.DataType.INT64
        return StatsResult(model, modified=True)


def test_a_broken_result_names_the_pass_not_the_input(cli, tmp_path, monkeypatch):
    source = one_node("Relu", 13, tmp_path / "m.onnx")
    monkeypatch.setattr(
        onnxsmith.optimize, "cleanup_passes", lambda **kw: [*cleanup_passes(**kw), MistypePass()]
    )
    code, _, err = cli("optimize", source, "-o", tmp_path / "o.onnx")
    assert code == 1 and err.count("\n") == 1
    assert "the model after MistypePass" in err and "report this line" in err
    assert str(source) not in err  # the input is fine; the message must not blame it


def test_nan_and_inf_in_the_same_places_agree():
    nan, inf = np.nan, np.inf
    want = [np.array([nan, inf, -inf, 1.0], np.float32)]
    same = diff_outputs(["y"], want, [want[0].copy()], atol=0, rtol=0)[0]
    assert same.within() and same.same_nonfinite == 3 and same.max_abs == 0
    for bad in ([1.0, inf, -inf, 1.0], [nan, -inf, -inf, 1.0], [nan, inf, -inf, nan]):
        diff = diff_outputs(["y"], want, [np.array(bad, np.float32)], atol=1, rtol=1)[0]
        assert not diff.within(), bad


def test_optimize_of_sqrt_on_negative_feeds_passes_and_says_why(cli, tmp_path):
    """Was: the ONNX backend's `test_operator_sqrt` refused, NaN ≠ NaN."""
    source = one_node("Sqrt", 13, tmp_path / "sqrt.onnx")
    code, out, err = cli("optimize", source, "-o", tmp_path / "o.onnx")
    assert code == 0, err
    assert "NaN/inf values in the same places in both models count as agreement" in " ".join(
        out.split()
    )


def test_piped_tables_keep_whole_cells(tmp_path):
    """Was: at 80 columns, rich folded cells mid-word (`cls_pr / uned.o / nnx`) in CI logs."""
    source = one_node("Relu", 13, tmp_path / "a_model_with_a_rather_long_file_name_here.onnx")
    argv = [sys.executable, "-P", "-m", "onnxsmith.cli.main", "optimize", str(source), "-o"]
    done = subprocess.run(
        [*argv, str(tmp_path / "o.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("LiftConstantsToInitializersPass" in line for line in lines)
    assert any("RemoveInitializersFromInputsPass" in line for line in lines)


@pytest.mark.parametrize("opset", [99])
def test_inspect_still_reads_a_model_ort_cannot_load(cli, tmp_path, opset):
    code, out, _ = cli("inspect", one_node("Relu", opset, tmp_path / "m.onnx"))
    assert code == 0 and "ai.onnx=99" in out
