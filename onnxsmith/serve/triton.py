"""Triton Inference Server model repositories (`config.pbtxt` + `1/model.onnx`).

The config is written as protobuf text in Triton's `ModelConfig` schema; the tests parse it
with the schema that `tritonclient` ships.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from onnxsmith.errors import UsageError
from onnxsmith.io import load_model
from onnxsmith.serve.files import copy_model, model_names
from onnxsmith.signature import TensorSpec, input_specs, output_specs

_TRITON_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "bool": "TYPE_BOOL",
}


@dataclasses.dataclass(frozen=True)
class TritonModel:
    """One model of the repository and the interface Triton sees."""

    name: str
    source: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    batched: bool  # every input and output has a symbolic leading dim


def _triton_type(spec: TensorSpec) -> str:
    if spec.dtype is None or np.dtype(spec.dtype).name not in _TRITON_TYPES:
        raise UsageError(
            f"serve-export: tensor {spec.name!r} has dtype {spec.dtype}, which Triton's "
            "onnxruntime backend does not take — cast it in the model"
        )
    return _TRITON_TYPES[np.dtype(spec.dtype).name]


def _is_batched(specs: Sequence[TensorSpec]) -> bool:
    return all(s.shape and not isinstance(s.shape[0], int) for s in specs)


def _dims(spec: TensorSpec, batched: bool) -> str:
    shape = spec.shape[1:] if batched and spec.shape else spec.shape or ()
    return ", ".join(str(d) if isinstance(d, int) and d > 0 else "-1" for d in shape)


def _tensor_block(kind: str, specs: Sequence[TensorSpec], batched: bool) -> list[str]:
    lines = [f"{kind} ["]
    for i, spec in enumerate(specs):
        end = "," if i < len(specs) - 1 else ""
        lines += [
            "  {",
            f'    name: "{spec.name}"',
            f"    data_type: {_triton_type(spec)}",
            f"    dims: [ {_dims(spec, batched)} ]",
            f"  }}{end}",
        ]
    return [*lines, "]"]


def model_config(model: TritonModel, *, max_batch_size: int, instances: int) -> str:
    """`config.pbtxt` for one ONNX model on the onnxruntime backend."""
    lines = [
        f'name: "{model.name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {max_batch_size if model.batched else 0}",
        *_tensor_block("input", model.inputs, model.batched),
        *_tensor_block("output", model.outputs, model.batched),
        f"instance_group [ {{ count: {instances}\n  kind: KIND_CPU }} ]",
    ]
    if model.batched:
        lines.append("dynamic_batching { }")
    return "\n".join(lines) + "\n"


def ensemble_config(name: str, members: Sequence[TritonModel], *, max_batch_size: int) -> str:
    """An ensemble running `members` in order.

    A member input named like an earlier member's output is wired to it (a chain); every other
    input is an ensemble input, shared by name (parallel members). Outputs nobody consumes are
    the ensemble's outputs, named `MEMBER_OUTPUT`.
    """
    tensor_of: dict[str, str] = {}  # member output name -> ensemble tensor carrying it
    inputs: dict[str, TensorSpec] = {}
    outputs: dict[str, TensorSpec] = {}
    steps = []
    for member in members:
        maps = []
        for spec in member.inputs:
            tensor = tensor_of.get(spec.name, spec.name)
            if spec.name in tensor_of:
                outputs.pop(tensor, None)
            else:
                inputs.setdefault(spec.name, spec)
            maps.append(f'input_map {{ key: "{spec.name}" value: "{tensor}" }}')
        for spec in member.outputs:
            tensor = f"{member.name}_{spec.name}"
            tensor_of[spec.name] = tensor
            outputs[tensor] = dataclasses.replace(spec, name=tensor)
            maps.append(f'output_map {{ key: "{spec.name}" value: "{tensor}" }}')
        body = "\n      ".join(maps)
        steps.append(
            f'    {{\n      model_name: "{member.name}"\n      model_version: -1'
            f"\n      {body}\n    }}"
        )
    batched = all(m.batched for m in members)
    lines = [
        f'name: "{name}"',
        'platform: "ensemble"',
        f"max_batch_size: {max_batch_size if batched else 0}",
        *_tensor_block("input", list(inputs.values()), batched),
        *_tensor_block("output", list(outputs.values()), batched),
        "ensemble_scheduling {",
        "  step [",
        ",\n".join(steps),
        "  ]",
        "}",
    ]
    return "\n".join(lines) + "\n"


def describe(source: Path, name: str) -> TritonModel:
    model = load_model(source)
    inputs, outputs = input_specs(model), output_specs(model)
    return TritonModel(name, source, inputs, outputs, _is_batched([*inputs, *outputs]))


def write_repository(
    sources: Sequence[Path],
    out: Path,
    *,
    names: Sequence[str] | None = None,
    max_batch_size: int = 32,
    instances: int = 1,
    ensemble: str | None = None,
) -> list[Path]:
    """Writes `out/NAME/config.pbtxt` and `out/NAME/1/model.onnx` per model (+ an ensemble).

    Returns the config files written. External data files are copied beside each model.
    """
    chosen = model_names(sources, names)
    members = [describe(Path(s), n) for s, n in zip(sources, chosen, strict=True)]
    written = []
    for member in members:
        copy_model(member.source, out / member.name / "1")
        config = out / member.name / "config.pbtxt"
        config.write_text(model_config(member, max_batch_size=max_batch_size, instances=instances))
        written.append(config)
    if ensemble and len(members) > 1:
        folder = out / ensemble
        (folder / "1").mkdir(parents=True, exist_ok=True)
        config = folder / "config.pbtxt"
        config.write_text(ensemble_config(ensemble, members, max_batch_size=max_batch_size))
        written.append(config)
    return written
