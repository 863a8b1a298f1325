"""Upgrades the default-domain opset, never downgrades."""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnxscript.version_converter import convert_version

from onnxsmith.errors import PassError, name_list
from onnxsmith.pipeline import StatsResult

_DEFAULT_DOMAINS = ("", "ai.onnx")


def default_opset(model: ir.Model) -> int:
    """The model's ai.onnx opset version."""
    for domain in _DEFAULT_DOMAINS:
        if domain in model.opset_imports:
            return model.opset_imports[domain]
    raise PassError("the model imports no ai.onnx opset — it is not a standard ONNX model")


def _ops_missing_at(model: ir.Model, target: int) -> list[str]:
    """Default-domain op types that no longer exist (or never existed) at opset `target`."""
    missing = set()
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.domain not in _DEFAULT_DOMAINS:
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, target, "")
        except onnx.defs.SchemaError:
            missing.add(node.op_type)
            continue
        if schema.deprecated:
            missing.add(node.op_type)
    return sorted(missing)


class UpgradeOpsetPass(ir.passes.InPlacePass):
    """Converts the model to ai.onnx opset `target` with onnxscript's version converter.

    onnxscript's converter falls back to onnx's C++ converter and silently leaves the model as
    it was when both fail; this pass checks the result and names the ops that blocked it.
    """

    def __init__(self, target: int) -> None:
        super().__init__()
        self.target = target

    def call(self, model: ir.Model) -> StatsResult:
        current = default_opset(model)
        newest = onnx.defs.onnx_opset_version()
        if self.target < current:
            raise PassError(
                f"opset {self.target} is lower than the model's opset {current} — onnxsmith only "
                f"upgrades; pass --opset {current} or higher"
            )
        if self.target > newest:
            raise PassError(
                f"opset {self.target} is newer than this onnx supports ({newest}) — pass "
                f"--opset {newest} or lower"
            )
        if self.target == current:
            return StatsResult(model, modified=False, stats={"opset": current})
        missing = _ops_missing_at(model, self.target)
        if missing:
            raise PassError(
                f"cannot upgrade from opset {current} to {self.target}: {name_list(missing)} "
                "do not exist at that opset — pick a lower --opset or replace those ops"
            )
        convert_version(model, self.target, fallback=True)
        reached = default_opset(model)
        if reached != self.target:
            raise PassError(
                f"cannot upgrade from opset {current} to {self.target}: the version converters "
                "failed — try an intermediate --opset"
            )
        return StatsResult(model, modified=True, stats={"opset": f"{current} -> {self.target}"})
