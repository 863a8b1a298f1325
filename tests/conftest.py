"""Shared fixtures: small models written to tmp_path, and a CLI runner."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from onnxsmith.cli.main import main
from onnxsmith.io import save_model
from onnxsmith.samples import tiny_cnn


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
