"""The CLI contract: one-line errors, exit codes 1 and 2, untouched inputs, --debug tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import digest


def test_version(cli):
    with pytest.raises(SystemExit) as info:
        cli("--version")
    assert info.value.code == 0


@pytest.mark.parametrize(
    "args",
    [
        ["optimize", "m.onnx", "-o", "out.onnx", "--no-such-option"],
        ["no-such-verb"],
        ["optimize", "m.onnx"],
        ["optimize", "m.onnx", "-o", "o.onnx", "--opset", "seventeen"],
    ],
)
def test_usage_errors_exit_2_with_one_line(cli, args):
    code, _, err = cli(*args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("onnxsmith: error:")
    assert "--help" in err


def test_inspect_table_and_json(cli, cnn_path):
    code, out, _ = cli("inspect", cnn_path)
    assert code == 0 and "Conv" in out and "weight sparsity" in out
    code, out, _ = cli("inspect", cnn_path, "--json")
    data = json.loads(out)
    assert data["op_histogram"]["Conv"] == 2
    assert data["weights"]["by_location"]["constant_nodes"] > 0
    assert data["inputs"] == ["image: float32[batchx1x8x8]"]


def test_optimize_writes_checked_model_and_json(cli, cnn_path, tmp_path):
    before = digest(cnn_path)
    out = tmp_path / "opt.onnx"
    code, stdout, err = cli("optimize", cnn_path, "-o", out, "--json", tmp_path / "r.json")
    assert code == 0, err
    assert "parity: ok" in stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["nodes"]["after"] < report["nodes"]["before"]
    assert all(d["max_abs"] <= 1e-4 for d in report["parity"])
    assert digest(cnn_path) == before


def test_failure_is_one_line_exit_1_and_leaves_nothing(cli, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    out = tmp_path / "out.onnx"
    code, _, err = cli("optimize", bad, "-o", out)
    assert code == 1
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err
    assert not out.exists()
    assert bad.read_bytes() == b"\x00garbage" * 10


def test_optimize_onto_its_input_is_refused(cli, cnn_path):
    before = digest(cnn_path)
    code, _, err = cli("optimize", cnn_path, "-o", cnn_path)
    assert code == 1 and "overwrite" in err
    assert digest(cnn_path) == before


def test_debug_shows_traceback_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    cmd = [str(Path(sys.executable).with_name("onnxsmith")), "inspect", str(bad)]
    quiet = subprocess.run(cmd, capture_output=True, text=True)
    loud = subprocess.run([*cmd, "--debug"], capture_output=True, text=True)
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and quiet.stderr.count("\n") == 1
    assert "Traceback" in loud.stderr


def test_every_verb_has_help_with_an_example(capsys):
    from onnxsmith.cli.main import COMMANDS, main

    for verb in COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([verb, "--help"])
        assert info.value.code == 0
        assert f"example:\n  onnxsmith {verb}" in capsys.readouterr().out


def test_top_level_help_lists_every_verb(capsys):
    from onnxsmith.cli.main import COMMANDS, main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in COMMANDS)
    assert "ratios with 95 %" in out  # bench's help, which argparse would %-format
