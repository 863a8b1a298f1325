"""Same inputs, same bytes: `inspect --json` and `optimize` across processes and hash seeds.

Each run happens in a fresh interpreter with its own PYTHONHASHSEED, so an output that depends
on set or dict order of strings, object ids or time would differ. (The property tests check
in-process determinism on random graphs; tests/test_property_cleanup.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys

from modelzoo import if_model, shared_weights_model

from onnxsmith.io import save_model
from onnxsmith.samples import tiny_cnn

RUN_BOTH_VERBS = """
import contextlib, sys
from onnxsmith.cli.main import main
out_dir = sys.argv[1]
for model in sys.argv[2:]:
    out = f"{out_dir}/{model.rsplit('/', 1)[-1]}"
    with open(out + ".inspect.json", "w") as report, contextlib.redirect_stdout(report):
        assert main(["inspect", model, "--json"]) == 0
    extra = ["--external-data"] if "tiny_cnn" in model else []
    assert main(["optimize", model, "-o", out, *extra]) == 0
"""


def test_inspect_and_optimize_are_byte_identical_across_processes(tmp_path):
    models = [
        str(save_model(build(), tmp_path / f"{build.__name__}.onnx"))
        for build in (tiny_cnn, if_model, shared_weights_model)
    ]
    runs = []
    for seed in (1, 2):
        out = tmp_path / f"run{seed}"
        out.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        argv = [sys.executable, "-P", "-c", RUN_BOTH_VERBS, str(out), *models]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        runs.append({f.name: f.read_bytes() for f in sorted(out.iterdir())})
    assert len(runs[0]) == 7  # 3 reports, 3 models, 1 external data file
    for name, content in runs[0].items():
        assert runs[1][name] == content, f"{name} differs between runs"
