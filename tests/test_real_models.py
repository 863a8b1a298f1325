"""optimize and inspect on real models shipped by packages (PP-OCR, silero-vad with If subgraphs).

Parity tolerance as in `onnxsmith optimize`: atol 1e-4 / rtol 1e-5 (folded constants and fused
BN reorder float32 roundings; a wrong rewrite gives errors of order 1).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

rapidocr = pytest.importorskip("rapidocr_onnxruntime")
silero = pytest.importorskip("silero_vad")

OCR_MODELS = Path(rapidocr.__file__).parent / "models"
VAD = Path(str(resources.files("silero_vad") / "data" / "silero_vad.onnx"))


@pytest.mark.models
@pytest.mark.parametrize(
    "name", ["ch_PP-OCRv4_det_infer.onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx"]
)
def test_ppocr_optimizes_with_parity(cli, tmp_path, name):
    out = tmp_path / name
    code, stdout, err = cli("optimize", OCR_MODELS / name, "-o", out, "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["parity"] and all(d["worst_excess"] <= 0 for d in report["parity"])
    assert report["nodes"]["after"] < report["nodes"]["before"]
    code, stdout, _ = cli("inspect", out, "--json")
    assert json.loads(stdout)["weights"]["by_location"]["constant_nodes"] == 0


@pytest.mark.models
def test_silero_vad_with_if_subgraphs(cli, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for i, samples in enumerate((512, 512)):
        np.savez(
            data / f"{i}.npz",
            input=rng.normal(0, 0.1, (1, samples)).astype(np.float32),
            state=np.zeros((2, 1, 128), np.float32),
            sr=np.array(16000, np.int64),
        )
    out = tmp_path / "vad.onnx"
    code, _, err = cli("optimize", VAD, "-o", out, "--data", data, "--json", tmp_path / "r.json")
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["parity"] and all(d["worst_excess"] <= 0 for d in report["parity"])
    code, stdout, _ = cli("inspect", out, "--json")
    assert json.loads(stdout)["subgraphs"] > 0
