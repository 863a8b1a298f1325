"""One opset for all members: the highest, reached by upgrading the others, never downgrading."""

from __future__ import annotations

from collections.abc import Sequence

import onnx
import onnx_ir as ir

from onnxsmith.errors import PassError, UsageError
from onnxsmith.passes.cleanup import UpgradeOpsetPass
from onnxsmith.passes.cleanup.opset import default_opset

_DEFAULT_DOMAINS = ("", "ai.onnx")


def common_opset(
    models: Sequence[ir.Model], labels: Sequence[str], minimum: int, requested: int | None
) -> int:
    """The ai.onnx opset every member is brought to.

    Args:
        models: the members.
        labels: their names, for messages.
        minimum: the lowest opset the merge's own nodes need.
        requested: an explicit target (`--opset`); it may not be below any member's opset.
    """
    current = [_member_opset(m, label) for m, label in zip(models, labels, strict=True)]
    if requested is not None:
        too_new = [label for label, v in zip(labels, current, strict=True) if v > requested]
        if too_new:
            raise UsageError(
                f"merge: --opset {requested} is below the opset of {', '.join(too_new)} "
                f"(max {max(current)}) — onnxsmith never downgrades; pass --opset {max(current)} "
                "or higher"
            )
        if requested < minimum:
            raise UsageError(
                f"merge: --opset {requested} is below {minimum}, the lowest this mode's own "
                f"nodes need — pass --opset {minimum} or higher"
            )
        return requested
    return max(minimum, *current)


def upgrade(model: ir.Model, target: int, label: str) -> None:
    """Brings `model` to ai.onnx opset `target` in place; a failure names the member and ops."""
    try:
        UpgradeOpsetPass(target)(model)
    except PassError as e:
        reason = str(e).split(" — ")[0]
        raise PassError(
            f"merge: {label} cannot be brought to the common opset {target} ({reason}) — "
            f"re-export that member at opset {target}, or the others at its opset"
        ) from e


def merged_imports(
    models: Sequence[ir.Model], labels: Sequence[str], target: int
) -> dict[str, int]:
    """The union of the members' opset imports; a custom domain at two versions is an error."""
    imports: dict[str, int] = {"": target}
    owner: dict[str, str] = {}
    for model, label in zip(models, labels, strict=True):
        for domain, version in model.opset_imports.items():
            if domain in _DEFAULT_DOMAINS:
                continue
            if domain in imports and imports[domain] != version:
                raise PassError(
                    f"merge: {owner[domain]} imports domain {domain!r} version "
                    f"{imports[domain]} and {label} version {version} — custom domains cannot be "
                    "converted; re-export the members against one version"
                )
            imports[domain] = version
            owner[domain] = label
    return imports


def merged_ir_version(models: Sequence[ir.Model], imports: dict[str, int]) -> int:
    """The newest member IR version, raised to what the opsets need (and to 4: no init inputs)."""
    opsets = [onnx.helper.make_opsetid(d, v) for d, v in imports.items()]
    needed = onnx.helper.find_min_ir_version_for(opsets, ignore_unknown=True)
    return max(4, needed, *(m.ir_version for m in models))


def _member_opset(model: ir.Model, label: str) -> int:
    try:
        return default_opset(model)
    except PassError as e:
        raise PassError(f"merge: {label} imports no ai.onnx opset — it cannot be merged") from e
