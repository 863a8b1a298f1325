"""Every verb on every real model of the zoo (bench/zoo_models.py), through the CLI.

Each verb must exit ok or with a documented refusal (quantize's "not faster here", prune's
"nothing prunable"), and every model it writes must pass the ONNX checker and run in ONNX
Runtime on a real feed with outputs of the original's shapes. Fidelity and timings are not
asserted here: `bench/zoo.py` measures them on larger real data.

Smallest honest settings (the full sweep, with each verb's defaults, is bench/zoo.py); the 108 cases
took about 400 s of CPU in all on a shared 2-core machine, a quarter of it MiniLM's export, so
expect 3–5 minutes on an idle one: 3 calibration feeds and 1 eval feed per model; prune and quantize
time with `--timing-seconds 0.3`; structured prune with `--no-measure` (no per-group timing, so
every group is pruned), `--criterion activation --no-compensation` (the calibration feeds rank the
channels; the sequential least-squares refit, up to a minute on the larger models today, is left to
bench/zoo.py) and `--allocation uniform` (measuring every group's error took ddddocr's detector to
94 s; test_prune_cli.py measures it on the PP-OCRv4 detector); quantize with `--method minmax
--no-smoothquant --no-latency-aware --no-weight-rounding --max-loss 1000` (one calibration method,
no fallback search — its 16 real eval feeds and each step's accuracy are bench/zoo.py's job — and
the int8 model is written whatever this machine's timing says, so the test checks the model instead
of the machine; the search made the four larger quantize cases take 27–68 s each); bench with 3
rounds, its own model only; MiniLM exported with `onnxsmith export --no-check` (test_export.py
checks that export's parity).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.append(str(Path(__file__).parents[1] / "bench"))  # bench/zoo_models.py, bench/zoo.py
from onnxsmith.runtime.session import create_session
from zoo import REFUSALS, VERBS, Workspace, verb_args
from zoo_models import ZOO, ZooMissing, ZooModel, resolve, write_feeds

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory):
    """One workspace per model, built on first use and shared by its verbs."""
    built: dict[str, Workspace] = {}

    def get(model: ZooModel) -> Workspace:
        if model.name not in built:
            root = tmp_path_factory.mktemp(model.name)
            try:
                path = resolve(model, root, check=False)
            except ZooMissing as e:
                pytest.skip(str(e))
            feeds = model.feeds(4)
            built[model.name] = Workspace(
                path, write_feeds(feeds[:3], root / "calib"), write_feeds(feeds[3:], root / "eval"),
                root,
            )  # fmt: skip
        return built[model.name]

    return get


def runnable(path: Path, feed: dict[str, np.ndarray], like: list[np.ndarray]) -> None:
    """`path` passes the checker (an .ort file: loads) and runs with outputs shaped `like`."""
    if path.suffix == ".onnx":
        onnx.checker.check_model(str(path))
    got = create_session(path).run(None, feed)
    assert [o.shape for o in got] == [o.shape for o in like]
    assert all(np.isfinite(o).all() for o in got if o.dtype.kind == "f")


def written_model(verb: str, output: Path) -> Path:
    """The model file inside what `verb` wrote."""
    if verb == "serve-triton":
        return output / "zoo" / "1" / "model.onnx"
    if verb == "serve-ort":
        (ort_file,) = output.glob("*.ort")
        return ort_file
    return output


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("name", list(ZOO))
def test_verb_on_zoo_model(cli, workspaces, name, verb):
    ws = workspaces(ZOO[name])
    args, output = verb_args(verb, ws, quick=True)
    code, _, err = cli(*args)
    error = err.strip().splitlines()[-1] if err.strip() else ""
    if code == 1 and REFUSALS.search(error):
        assert output is None or not output.exists(), "a refusal must write nothing"
        return
    assert code == 0, error
    if output is not None:
        feed = dict(np.load(next(ws.eval.glob("*.npz"))))
        reference = create_session(ws.model).run(None, feed)
        if verb == "merge":  # mean of two copies: the same outputs
            reference = reference[: len(create_session(output).get_outputs())]
        runnable(written_model(verb, output), feed, reference)
