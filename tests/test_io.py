"""Model IO: strict loading, atomic and deterministic saving, external data, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import digest

from onnxsmith.errors import ModelLoadError, ModelSaveError
from onnxsmith.io import load_model, save_model
from onnxsmith.provenance import record_step, steps_applied
from onnxsmith.samples import tiny_cnn


def test_round_trip_keeps_producer_and_metadata(tmp_path):
    model = tiny_cnn()
    model.metadata_props["owner"] = "team-a"
    path = save_model(model, tmp_path / "m.onnx")
    loaded = load_model(path)
    assert loaded.producer_name == "onnxsmith.samples"
    assert loaded.metadata_props["owner"] == "team-a"


def test_same_model_saves_byte_identical(tmp_path):
    a = save_model(tiny_cnn(seed=3), tmp_path / "a.onnx")
    b = save_model(tiny_cnn(seed=3), tmp_path / "b.onnx")
    assert digest(a) == digest(b)


def test_provenance_records_steps_in_order(tmp_path):
    model = tiny_cnn()
    record_step(model, "optimize", {"opset": 17})
    record_step(model, "quantize", {"method": "minmax"})
    loaded = load_model(save_model(model, tmp_path / "m.onnx"))
    assert [s["step"] for s in steps_applied(loaded)] == ["optimize", "quantize"]
    assert loaded.metadata_props["onnxsmith.version"]


def test_refuses_to_overwrite_its_source(cnn_path):
    before = digest(cnn_path)
    with pytest.raises(ModelSaveError, match="overwrite the input"):
        save_model(load_model(cnn_path), cnn_path)
    assert digest(cnn_path) == before


def test_refuses_to_overwrite_listed_inputs(tmp_path, cnn_path):
    with pytest.raises(ModelSaveError):
        save_model(tiny_cnn(), tmp_path / "other.onnx", inputs=[tmp_path / "other.onnx"])


def test_missing_output_folder_is_an_error(tmp_path):
    with pytest.raises(ModelSaveError, match="does not exist"):
        save_model(tiny_cnn(), tmp_path / "nope" / "m.onnx")


def test_save_leaves_no_temp_files(tmp_path):
    save_model(tiny_cnn(), tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_external_data_on_request_loads_back(tmp_path):
    path = save_model(tiny_cnn(), tmp_path / "m.onnx", external_data=True)
    assert (tmp_path / "m.onnx.data").stat().st_size > 0
    proto = onnx.load(str(path), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    loaded = load_model(path)
    w = loaded.graph.initializers["conv1.w"].const_value.numpy()
    assert w.shape == (16, 1, 3, 3) and np.isfinite(w).all()


def _external(tmp_path: Path) -> Path:
    return save_model(tiny_cnn(), tmp_path / "m.onnx", external_data=True)


def _point_external_data(path: Path, location: str) -> None:
    proto = onnx.load(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(proto.SerializeToString())


def _corrupt_cases(tmp_path: Path):
    good = tmp_path / "good.onnx"
    save_model(tiny_cnn(), good)
    raw = good.read_bytes()
    cases = {}
    for fraction in (0.1, 0.5, 0.9, 0.99):
        cases[f"truncated-{fraction}"] = raw[: int(len(raw) * fraction)]
    cases["random-bytes"] = np.random.default_rng(0).bytes(4096)
    cases["wrong-magic"] = b"\x89PNG\r\n\x1a\n" + raw[8:]
    cases["json"] = json.dumps({"graph": {"node": []}}).encode()
    cases["empty"] = b""
    cases["text"] = b"this is not a model\n" * 20
    return cases


CORRUPT_KINDS = [
    "truncated-0.1",
    "truncated-0.5",
    "truncated-0.9",
    "truncated-0.99",
    "random-bytes",
    "wrong-magic",
    "json",
    "empty",
    "text",
]


@pytest.mark.parametrize("kind", CORRUPT_KINDS)
def test_corrupt_files_raise_one_line_error_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.onnx"
    path.write_bytes(_corrupt_cases(tmp_path)[kind])
    before = path.read_bytes()
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert path.read_bytes() == before


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="is a directory"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "absent.onnx")


def test_missing_external_data(tmp_path):
    path = _external(tmp_path)
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        load_model(path)


def test_truncated_external_data(tmp_path):
    path = _external(tmp_path)
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(path)


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "link.data"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    path = _external(folder)
    (folder / "link.data").symlink_to("/etc/passwd")
    _point_external_data(path, location)
    with pytest.raises(ModelLoadError, match="outside the model folder"):
        load_model(path)


def test_unsupported_ir_version(tmp_path, cnn_path):
    proto = onnx.load(str(cnn_path))
    proto.ir_version = 99
    path = tmp_path / "future.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelLoadError, match="IR version 99"):
        load_model(path)


def test_empty_graph(tmp_path):
    graph = onnx.helper.make_graph([], "empty", [], [])
    path = tmp_path / "empty_graph.onnx"
    path.write_bytes(onnx.helper.make_model(graph).SerializeToString())
    with pytest.raises(ModelLoadError, match="empty"):
        load_model(path)


def test_initializer_declared_with_another_rank_takes_its_data_shape(tmp_path):
    """PyTorch stores a scalar constant as shape (1,) and declares it rank 0; ORT's quantizer
    runs strict shape inference, which stopped at "differ in rank: (1) vs (0)"."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.array([2.0], np.float32), "two")],
        value_info=[helper.make_tensor_value_info("two", TensorProto.FLOAT, [])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.shape_inference.infer_shapes(onnx.load(path), strict_mode=True)
    model = load_model(path)
    assert model.graph.initializers["two"].shape == (1,)
    save_model(model, tmp_path / "out.onnx")
    onnx.shape_inference.infer_shapes(onnx.load(tmp_path / "out.onnx"), strict_mode=True)
