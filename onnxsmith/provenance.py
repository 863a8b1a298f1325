"""Provenance metadata: which onnxsmith made a model, with which steps and options.

Stored in `metadata_props` so it travels with the file; no timestamps, so that the same input
and options give byte-identical output.
"""

from __future__ import annotations

import json
from typing import Any

import onnx_ir as ir

VERSION_KEY = "onnxsmith.version"
STEPS_KEY = "onnxsmith.steps"


def record_step(model: ir.Model, step: str, options: dict[str, Any]) -> None:
    """Appends `step` with its key options to the model's provenance."""
    from onnxsmith.version import __version__

    steps = steps_applied(model)
    steps.append({"step": step, "options": options})
    model.metadata_props[VERSION_KEY] = __version__
    model.metadata_props[STEPS_KEY] = json.dumps(steps, sort_keys=True, default=str)


def steps_applied(model: ir.Model) -> list[dict[str, Any]]:
    """The steps recorded so far (empty for a model onnxsmith never touched)."""
    raw = model.metadata_props.get(STEPS_KEY)
    if not raw:
        return []
    try:
        steps = json.loads(raw)
    except json.JSONDecodeError:
        return []
    return steps if isinstance(steps, list) else []
