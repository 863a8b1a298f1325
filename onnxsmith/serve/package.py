"""A self-describing folder: the model, its metadata, and a tiny `predict.py`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from onnxsmith.io import load_model
from onnxsmith.provenance import steps_applied
from onnxsmith.runtime.predict_script import PREDICT_PY
from onnxsmith.signature import input_specs, output_specs


def _tensor(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "dtype": str(spec.dtype), "shape": list(spec.shape or [])}


def write_package(source: Path, out: Path, *, report: Path | None = None) -> Path:
    """Copies the model into `out` with `metadata.json` and `predict.py`; returns metadata path.

    `report` is a JSON report from `bench`/`quantize` etc.; its contents go under `metrics`.
    """
    model = load_model(source)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out / "model.onnx")
    data = source.with_name(source.name + ".data")
    if data.exists():
        shutil.copyfile(data, out / data.name)
    metadata = {
        "model": "model.onnx",
        "inputs": [_tensor(s) for s in input_specs(model)],
        "outputs": [_tensor(s) for s in output_specs(model)],
        "opsets": dict(model.opset_imports),
        "steps": steps_applied(model),
        "preprocessing": model.metadata_props.get(
            "preprocessing", "feed arrays with the input names, dtypes and shapes above"
        ),
        "metrics": json.loads(report.read_text()) if report else None,
    }
    meta_path = out / "metadata.json"
    meta_path.write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
    (out / "predict.py").write_text(PREDICT_PY.format(model="model.onnx"))
    return meta_path
