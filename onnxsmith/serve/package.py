"""A self-describing folder: the model, its metadata, and a `predict.py` that runs it anywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from onnxsmith.io import load_model
from onnxsmith.runtime.handoff_scripts import PREDICT_SCRIPT
from onnxsmith.serve.files import copy_model, model_metadata, write_metadata


def write_package(source: Path, out: Path, *, report: Path | None = None) -> Path:
    """Copies the model into `out` with `metadata.json` and `predict.py`; returns metadata path.

    `report` is a JSON report from `bench`/`quantize` etc.; its contents go under `metrics`.
    """
    model = load_model(source)
    copy_model(source, out)
    metrics = json.loads(report.read_text()) if report else None
    metadata = {**model_metadata(model), "metrics": metrics}
    shutil.copyfile(PREDICT_SCRIPT, out / "predict.py")
    return write_metadata(out / "metadata.json", metadata)
