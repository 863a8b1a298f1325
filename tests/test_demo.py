"""The demo in its CI-sized mode: every step runs and every number in its table is measured."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")


@pytest.mark.torch
@pytest.mark.slow
def test_quick_demo_runs_every_step(cli, tmp_path):
    out = tmp_path / "demo"
    code, stdout, err = cli("demo", "--quick", "--out", out)
    assert code == 0, err
    report = json.loads((out / "report" / "report.json").read_text())
    paths = [m["path"] for m in report["models"]]
    assert paths[0].endswith("teacher0.onnx") and any("ensemble" in p for p in paths)
    fp32 = report["models"][0]
    assert fp32["ratio_p50_vs_first"] == pytest.approx(1.0)
    assert fp32["metric"]["labels"]["top1"] > 0.8  # digits are easy even after 3 epochs
    assert (out / "report" / "report.html").stat().st_size > 10_000
    assert (out / "triton" / "digits_student" / "config.pbtxt").exists()
    assert "all measured in this run" in stdout
