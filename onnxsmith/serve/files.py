"""What every serve-export format shares: model names, copies of the model, its metadata."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxsmith.errors import UsageError
from onnxsmith.io import external_data_files
from onnxsmith.provenance import steps_applied
from onnxsmith.signature import TensorSpec, input_specs, output_specs

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def model_names(sources: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    """`names`, or each file's stem with dots as underscores; unique, one per model, URL-safe."""
    chosen = list(names) if names else [Path(s).stem.replace(".", "_") for s in sources]
    if len(set(chosen)) != len(chosen) or len(chosen) != len(sources):
        raise UsageError(f"serve-export: model names must be unique, one per model: {chosen}")
    bad = [n for n in chosen if not _NAME.fullmatch(n)]
    if bad:
        raise UsageError(
            f"serve-export: model names {bad} must be letters, digits, '_' and '-' — "
            "pass --name NAME per model"
        )
    return chosen


def copy_model(source: Path, folder: Path, filename: str = "model.onnx") -> Path:
    """Copies `source` into `folder` as `filename`, with every external data file it reads
    (whatever their names, at the same paths relative to the model)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / filename)
    home = source.parent.resolve()
    for data in external_data_files(source):
        target = folder / data.relative_to(home)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data, target)
    return folder / filename


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    """Name, numpy dtype and shape (dims: int, symbolic name or null; null shape: any rank)."""
    shape = None if spec.shape is None else list(spec.shape)
    return {"name": spec.name, "dtype": str(spec.dtype), "shape": shape}


def model_metadata(model: ir.Model, filename: str = "model.onnx") -> dict[str, Any]:
    """The metadata a served model carries: its signature, opsets and onnxsmith steps."""
    return {
        "model": filename,
        "inputs": [tensor_metadata(s) for s in input_specs(model)],
        "outputs": [tensor_metadata(s) for s in output_specs(model)],
        "opsets": dict(model.opset_imports),
        "producer": model.producer_name or None,
        "steps": steps_applied(model),
        "preprocessing": model.metadata_props.get(
            "preprocessing", "feed arrays with the input names, dtypes and shapes above"
        ),
    }


def write_metadata(path: Path, metadata: dict[str, Any]) -> Path:
    """`metadata` as indented, key-sorted JSON (non-JSON values as strings)."""
    path.write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
    return path
