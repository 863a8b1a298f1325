"""Shared fixtures: small models written to tmp_path, and a CLI runner."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from onnxsmith.cli.main import main
from onnxsmith.io import save_model
from onnxsmith.samples import tiny_cnn

# Property-test budgets. `ci` (default) is derandomized, so CI always checks the same cases and
# never flakes; `fuzz` (`make fuzz`) explores new ones. No deadline: the first ORT session of a
# process is slow. Cases tried per profile are recorded in bench/RESULTS.md `## reliability`.
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=20, deadline=None, derandomize=True, suppress_health_check=_SLOW_IS_FINE
)
settings.register_profile(
    "fuzz", max_examples=400, deadline=None, suppress_health_check=_SLOW_IS_FINE
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def cnn_path(tmp_path: Path) -> Path:
    return save_model(tiny_cnn(seed=0), tmp_path / "cnn.onnx")


@pytest.fixture
def cli(capsys):
    """Runs `onnxsmith ARGS...` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
