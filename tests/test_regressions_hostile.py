"""One test per bug the hostile corpus and the property tests found in the foundation.

Each failed before its fix with a crash ("internal error"), a hang, a multi-line error, a
modified input or a broken output; the corpus covers them too, these name them.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import digest
from hostile import _endless_loop, _npy_header
from modelzoo import mlp_with_batchnorm
from onnx import TensorProto, helper
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.runtime.data import DataDir
from onnxsmith.runtime.parity import random_feed
from onnxsmith.runtime.session import create_session, run

from onnxsmith.errors import DataError, ModelLoadError, ModelSaveError, SessionError, UsageError
from onnxsmith.io import load_model, save_model
from onnxsmith.pipeline import apply
from onnxsmith.samples import tiny_cnn
from onnxsmith.signature import TensorSpec, input_specs

SPECS = input_specs(tiny_cnn())


def test_inspect_prints_markup_and_escapes_literally(cli, tmp_path):
    """Was: rich MarkupError on '[/]' (internal error); ESC sequences reached the terminal."""
    model = tiny_cnn()
    model.producer_name = "[/]"
    model.metadata_props["note"] = "[bold]x[/bold] \x1b[2J"
    path = save_model(model, tmp_path / "m.onnx")
    code, out, err = cli("inspect", path)
    assert code == 0, err
    assert "[/]" in out and "[bold]x[/bold]" in out
    assert "\x1b" not in out and "\\x1b[2J" in out


def test_error_with_newline_in_a_path_stays_one_line(cli, tmp_path):
    """Was: the path's newline split the error over two lines."""
    code, _, err = cli("inspect", tmp_path / "a\nb.onnx")
    assert code == 1 and err.count("\n") == 1 and "a\\nb.onnx" in err


def test_warnings_and_ort_logs_do_not_reach_stderr(tmp_path):
    """Was: numpy RuntimeWarnings (2 lines each) and ORT's coloured [E:onnxruntime] logs.

    In a real process: pytest captures warnings, and ORT's logger writes to fd 2 directly.
    """
    model = mlp_with_batchnorm()  # huge weights: folding BN into them overflows to inf
    w1 = model.graph.initializers["w1"]
    w1.const_value = ir.tensor(np.full((8, 16), 3e38, np.float32), name="w1")
    overflowing = save_model(model, tmp_path / "overflow.onnx")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, 5])
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])  # fails inside ORT at run time
    graph = helper.make_graph([node], "bad_reshape", [x], [y], [shape])
    failing = tmp_path / "reshape.onnx"
    failing.write_bytes(helper.make_model(graph).SerializeToString())
    both = [
        [str(p), "-o", str(tmp_path / f"o{i}.onnx")] for i, p in enumerate((overflowing, failing))
    ]
    code = "from onnxsmith.cli.main import main; " + "; ".join(
        f"main(['optimize', *{argv!r}])" for argv in both
    )
    argv = [sys.executable, "-P", "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    # The two runs happened: the input overflows to inf/NaN in the same places as the folded
    # model (parity counts that as agreement, and says so), the Reshape fails at run time.
    assert "NaN/inf values" in " ".join(done.stdout.split()) and "skipped" in done.stdout
    assert done.stderr == "", done.stderr  # no numpy warning, no ORT log


def test_huge_declared_input_is_a_data_error_not_memory_error():
    """Was: MemoryError allocating a random feed of 2**40 elements."""
    spec = TensorSpec("x", np.dtype(np.float32), (1 << 20, 1 << 20))
    with pytest.raises(DataError, match="too large for a random feed"):
        random_feed([spec])


@pytest.mark.parametrize(
    "payload, message",
    [
        (_npy_header("<f4", "(1099511627776,)") + bytes(64), "declares shape"),  # MemoryError
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': 'O'}   \n", "not a numpy array"),  # ValueError
        (_npy_header("<f4", "(1,") + bytes(4), "not a numpy array"),  # TokenError
        (b"raw bytes, no npy header", "not a numpy array"),  # AttributeError on bytes
    ],
)
def test_forged_npz_members_are_refused_before_allocation(tmp_path, payload, message):
    with zipfile.ZipFile(tmp_path / "0.npz", "w") as archive:
        archive.writestr("image.npy", payload)
    with pytest.raises(DataError, match=message):
        list(DataDir(tmp_path, SPECS))


def test_npy_file_and_non_zip_file_get_the_right_message(tmp_path):
    """Was: TypeError on a .npy; any non-zip file was reported as 'pickled'."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 1, 8, 8), np.float32))
    (tmp_path / "x.npy").write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"is a \.npy"):
        DataDir(tmp_path / "x.npy", SPECS)
    (tmp_path / "y.npz").write_text("root:x:0:0\n")
    with pytest.raises(DataError, match="no zip header"):
        DataDir(tmp_path / "y.npz", SPECS)


def test_fifo_in_a_data_dir_is_refused_without_opening_it(tmp_path):
    """Was: the reader blocked forever opening the FIFO."""
    os.mkfifo(tmp_path / "0.npz")
    with pytest.raises(DataError, match="not a regular file"):
        DataDir(tmp_path, SPECS)


def _external_model(tmp_path, **entries: str):
    path = save_model(tiny_cnn(), tmp_path / "m.onnx", external_data=True)
    proto = onnx.load(str(path), load_external_data=False)
    tensor = next(t for t in proto.graph.initializer if t.name == "conv1.w")
    for entry in tensor.external_data:
        entry.value = entries.get(entry.key, entry.value)
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"location": "sub/../m.onnx.data"}, "outside the model folder"),  # FileNotFoundError
        ({"location": "m.onnx.data\0x"}, "invalid external data location"),  # ValueError
        ({"offset": "-5"}, "invalid external data entry"),  # ValueError
        ({"offset": "abc"}, "invalid external data entry"),  # ValueError
        ({"length": "4"}, "declares 4 bytes"),  # accepted, then 'repaired' on save
    ],
)
def test_malformed_external_data_entries_are_load_errors(tmp_path, entries, message):
    path = _external_model(tmp_path, **entries)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_oversized_tensor_data_is_a_load_error(tmp_path):
    """Was: accepted by the checker, then `inspect` crashed reshaping 64 bytes into (4,)."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], raw_data=bytes(64))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(ModelLoadError, match="does not match its shape"):
        load_model(path)


def test_output_onto_a_fifo_is_refused(tmp_path):
    """Was: the FIFO was replaced by a regular file (as root, `-o /dev/null` replaced /dev/null)."""
    os.mkfifo(tmp_path / "o.onnx")
    with pytest.raises(ModelSaveError, match="not a regular file"):
        save_model(tiny_cnn(), tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").is_file()


def test_output_onto_the_inputs_external_data_is_refused(tmp_path):
    """Was: `-o m.onnx.data` overwrote the weights the input model reads."""
    source = save_model(tiny_cnn(), tmp_path / "m.onnx", external_data=True)
    before = digest(tmp_path / "m.onnx.data")
    with pytest.raises(ModelSaveError, match="overwrite the input"):
        save_model(load_model(source), tmp_path / "m.onnx.data")
    assert digest(tmp_path / "m.onnx.data") == before


def test_json_report_onto_the_input_or_a_folder_is_refused_before_any_work(cli, cnn_path):
    """Was: `--json model.onnx` overwrote the input; `--json DIR` crashed after writing -o."""
    before = digest(cnn_path)
    out = cnn_path.with_name("o.onnx")
    for target in (cnn_path, cnn_path.parent):
        code, _, err = cli("optimize", cnn_path, "-o", out, "--json", target)
        assert code == 1 and err.count("\n") == 1
        assert not out.exists()
    assert digest(cnn_path) == before


@pytest.mark.parametrize(
    "argv",
    [
        ("prune", "{m}", "-o", "{o}", "--sparsity", "0.3"),
        ("merge", "{m}", "{m}", "-o", "{o}", "--mode", "mean"),
        ("bench", "{m}", "--runs", "3"),
    ],
    ids=["prune", "merge", "bench"],
)
def test_every_json_report_onto_an_input_is_refused_before_any_work(cli, cnn_path, argv):
    """Was: prune, merge, bench (and export, distill) wrote --json with a plain write, so
    `--json model.onnx` replaced the input model with JSON."""
    before = digest(cnn_path)
    out = cnn_path.with_name("o.onnx")
    args = [a.format(m=cnn_path, o=out) for a in argv]
    code, _, err = cli(*args, "--json", cnn_path)
    assert code == 1 and err.count("\n") == 1 and "input" in err
    assert not out.exists()
    assert digest(cnn_path) == before


def test_model_with_external_data_saved_elsewhere_is_self_contained(tmp_path):
    """Was: the copy still pointed at the input's `.data` (broken once it sat elsewhere)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    model = tiny_cnn()  # its Constant nodes keep tensors in attributes
    source = save_model(model, tmp_path / "a" / "m.onnx", external_data=True)
    proto = onnx.load(str(source), load_external_data=False)
    assert any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    copy = save_model(load_model(source), tmp_path / "b" / "m.onnx")
    (tmp_path / "a" / "m.onnx.data").unlink()
    loaded = load_model(copy)
    weight = loaded.graph.initializers["conv1.w"].const_value.numpy()
    expected = model.graph.initializers["conv1.w"].const_value.numpy()
    np.testing.assert_array_equal(weight, expected)


def test_endless_loop_is_stopped_by_the_run_timeout(tmp_path):
    """Was: optimize's parity check ran a 2**62-trip Loop forever."""
    session = create_session(ir.from_proto(onnx.load_model_from_string(_endless_loop())))
    feed = {"x": np.zeros((1, 4), np.float32)}
    with pytest.raises(SessionError, match=r"stopped the run after 0\.5 s"):
        run(session, feed, "loop", timeout=0.5)


def test_bad_run_timeout_setting_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("ONNXSMITH_RUN_TIMEOUT", "soon")
    session = create_session(tiny_cnn())
    with pytest.raises(UsageError, match="ONNXSMITH_RUN_TIMEOUT"):
        run(session, random_feed(SPECS))


def test_parity_check_of_an_external_data_model_never_reads_the_working_directory(
    cli, tmp_path, monkeypatch
):
    """Was: the candidate went to ORT as bytes still naming `m.onnx.data`, which ORT looked
    up in the working directory: parity 'skipped' (or checked against a decoy file there)."""
    folder = tmp_path / "model"
    folder.mkdir()
    source = save_model(tiny_cnn(), folder / "m.onnx", external_data=True)
    decoy = tmp_path / "m.onnx.data"
    decoy.write_bytes(bytes((folder / "m.onnx.data").stat().st_size))
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("optimize", source, "-o", tmp_path / "o.onnx")
    assert code == 0 and "parity: ok" in out, err


def test_folded_transpose_of_a_weight_survives_deduplication():
    """Found by the property tests: folding Transpose(W) leaves a transposed numpy view, and
    onnx_ir's DeduplicateHashedInitializersPass raised 'ndarray is not C-contiguous'."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], np.arange(6, dtype=np.float32))
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "wt"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    proto = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [weight]))
    feed = {"x": np.random.default_rng(0).normal(size=(2, 2)).astype(np.float32)}
    expected = create_session(ir.from_proto(proto)).run(None, feed)[0]
    model, _ = apply(cleanup_passes(), ir.from_proto(proto))
    assert [n.op_type for n in model.graph] == ["MatMul"]
    np.testing.assert_array_equal(create_session(model).run(None, feed)[0], expected)


def test_matmul_add_batchnorm_folds_in_one_run_without_declared_shapes():
    """Found by the property tests: with no value_info the BN after MatMul+Add was folded only
    by a second `optimize` (the MatMul's rank was unknown until the final shape inference)."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.normal(size=(2, 1)),
        "b": [0.1],
        "gamma": [0.5],
        "beta": [0.06],
        "mean": [0.08],
        "var": [1.1],
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("BatchNormalization", ["a", "gamma", "beta", "mean", "var"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])
    initializers = [
        onnx.numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()
    ]
    proto = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializers))
    model, _ = apply(cleanup_passes(), ir.from_proto(proto))
    assert "BatchNormalization" not in [n.op_type for n in model.graph]
