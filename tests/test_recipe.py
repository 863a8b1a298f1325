"""`onnxsmith run`: recipe validation, paths relative to the recipe, resume, --set overrides."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from onnxsmith.digits import write_feeds
from onnxsmith.errors import NotFasterError
from onnxsmith.io import load_model, save_model
from onnxsmith.samples import tiny_cnn

RECIPE = """
name = "cnn"
model = "cnn.onnx"
output = "out"

[[steps]]
step = "optimize"
opset = 13

[serve]
format = "package"
"""


@pytest.fixture
def recipe(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    save_model(tiny_cnn(), folder / "cnn.onnx")
    path = folder / "recipe.toml"
    path.write_text(RECIPE)
    return path


def test_runs_steps_and_records_them(cli, recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths resolve against the recipe, not the cwd
    code, _, err = cli("run", recipe)
    assert code == 0, err
    folder = recipe.parent / "out"
    record = json.loads((folder / "run.json").read_text())
    optimize = record["steps"]["01-optimize"]
    assert optimize["argv"][:2] == ["optimize", str(recipe.parent / "cnn.onnx")]
    assert "--opset" in optimize["argv"] and len(optimize["output_sha256"]) == 64
    assert optimize["metrics"]["01-optimize.json"]["nodes"]["after"] > 0
    assert (folder / "99-serve" / "metadata.json").exists()


def test_second_run_is_cached_and_set_reruns_downstream(cli, recipe):
    assert cli("run", recipe)[0] == 0
    code, out, _ = cli("run", recipe)
    assert code == 0 and out.count("│ cached") == 2
    code, out, _ = cli("run", recipe, "--set", "steps.1.opset=14")
    assert code == 0 and out.count("│ cached") == 0
    record = json.loads((recipe.parent / "out" / "run.json").read_text())
    argv = record["steps"]["01-optimize"]["argv"]
    assert argv[argv.index("--opset") + 1] == "14"


def test_a_step_with_no_gain_here_passes_its_input_on(cli, recipe, monkeypatch):
    """quantize refusing int8 that runs slower than fp32 is a verdict, not a failure: the chain
    continues on the unchanged model and run.json says why."""
    import onnxsmith.cli.quantize as quantize_verb

    def slower(*args, **kwargs):
        raise NotFasterError("quantize: no int8 mode runs faster than fp32 on this machine")

    monkeypatch.setattr(quantize_verb, "quantize", slower)
    recipe.write_text(RECIPE.replace('opset = 13', 'opset = 13\n\n[[steps]]\nstep = "quantize"')
                      + '\n[data]\ncalib = "calib"\n')  # fmt: skip
    write_feeds(recipe.parent / "calib", np.zeros((4, 1, 8, 8), np.float32))
    code, out, err = cli("run", recipe)
    assert code == 0, err
    assert "passed its input on: quantize: no int8 mode" in out.replace("\n", " ")
    folder = recipe.parent / "out"
    step = json.loads((folder / "run.json").read_text())["steps"]["02-quantize"]
    assert step["status"] == "passed input on" and "no int8 mode" in step["verdict"]
    passed = load_model(folder / "02-quantize.onnx")
    optimized = load_model(folder / "01-optimize.onnx")
    assert [n.op_type for n in passed.graph] == [n.op_type for n in optimized.graph]
    assert (folder / "99-serve" / "metadata.json").exists()  # the chain went on


def test_step_option_paths_resolve_against_the_recipe(cli, recipe, tmp_path, monkeypatch):
    import onnxsmith.cli.quantize as quantize_verb

    seen = {}

    def record(source, output, *, calib, **kwargs):
        seen["calib"] = calib
        raise NotFasterError("quantize: not faster")

    monkeypatch.setattr(quantize_verb, "quantize", record)
    monkeypatch.chdir(tmp_path)  # elsewhere: "calib" alone would not be found from here
    recipe.write_text(RECIPE.replace('opset = 13', 'opset = 13\n\n[[steps]]\nstep = "quantize"'
                      '\ncalib = "calib"'))  # fmt: skip
    write_feeds(recipe.parent / "calib", np.zeros((4, 1, 8, 8), np.float32))
    code, _, err = cli("run", recipe)
    assert code == 0, err
    assert seen["calib"] == str(recipe.parent / "calib")


def test_changed_input_model_reruns(cli, recipe):
    assert cli("run", recipe)[0] == 0
    save_model(tiny_cnn(seed=1), recipe.parent / "cnn.onnx")
    code, out, _ = cli("run", recipe)
    assert code == 0 and "│ cached" not in out


@pytest.mark.parametrize(
    "text, message",
    [
        ('model = "cnn.onnx"\ncolour = "red"', "unknown key 'colour'"),
        ('model = "cnn.onnx"\n[[steps]]\nstep = "polish"', "unknown step 'polish'"),
        ('model = "cnn.onnx"\n[[steps]]\nstep = "optimize"\nspeed = 11', "unknown option 'speed'"),
        ('model = "cnn.onnx"\n[[steps]]\nopset = 13', "needs `step"),
        ('[[steps]]\nstep = "optimize"', "give a starting"),
        ('model = "cnn.onnx"\n[[steps]]\nstep = "optimize"\nopset = "x"', "invalid int value"),
        ("model = = 1", "not valid TOML"),
    ],
)
def test_invalid_recipes_fail_before_running(cli, recipe, text, message):
    recipe.write_text(textwrap.dedent(text))
    code, _, err = cli("run", recipe)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (recipe.parent / "out").exists()


def test_unknown_option_lists_allowed_ones(cli, recipe):
    recipe.write_text(RECIPE.replace("opset = 13", "opst = 13"))
    _, _, err = cli("run", recipe)
    assert "allowed:" in err and "'opset'" in err


def test_missing_recipe_and_bad_set(cli, recipe, tmp_path):
    assert cli("run", tmp_path / "none.toml")[0] == 2
    code, _, err = cli("run", recipe, "--set", "steps.5.opset=1")
    assert code == 2 and "does not address" in err
    code, _, err = cli("run", recipe, "--set", "nonsense")
    assert code == 2 and "key=value" in err


@pytest.mark.parametrize("name", ["edge_cnn", "ensemble", "text_embedding"])
def test_shipped_recipes_validate(cli, name):
    from pathlib import Path

    recipe = Path(__file__).parents[1] / "recipes" / f"{name}.toml"
    code, out, err = cli("run", recipe, "--dry-run")
    assert code == 0, err
    assert "onnxsmith quantize" in out or "onnxsmith merge" in out
