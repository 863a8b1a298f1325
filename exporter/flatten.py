"""Any module call as a function of a flat tuple of named tensors, the form both exporters take.

The TorchScript exporter mis-binds keyword inputs (HF models: "got multiple values for argument")
and neither exporter names nested inputs or outputs well. `FlatModule` takes the tensors of
`(args, kwargs)` positionally, rebuilds the call, and returns the chosen output tensors as a
tuple; names come from the forward signature and the output structure (dict keys, indices).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils import _pytree as pytree

from onnxsmith.errors import ExportError, UsageError, name_list

# FlatModule keeps the user's module under this attribute; exported weight names drop it.
PREFIX = "model."


def as_call(example_inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) from a tensor, a tuple/list of positional inputs or a dict of keywords."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    raise UsageError(
        f"export: example_inputs is a {type(example_inputs).__name__} — pass a tensor, a tuple "
        "of positional inputs or a dict of keyword inputs"
    )


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _clean(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.]+", "_", name).strip("_") or "input"


def _positional_names(model: torch.nn.Module, count: int) -> list[str]:
    """Names of the first `count` positional parameters of `model.forward` (input_N beyond)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in params if p.kind in kinds]
    return [names[i] if i < len(names) else f"input_{i}" for i in range(count)]


class FlatModule(torch.nn.Module):
    """`model(*args, **kwargs)` as a function of the call's tensors, returning chosen outputs.

    Non-tensor leaves of the call (ints, flags, None) are fixed to their example values, as the
    exporters would fix them anyway.
    """

    def __init__(self, model: torch.nn.Module, example_inputs: Any) -> None:
        super().__init__()
        self.model = model
        args, kwargs = as_call(example_inputs)
        leaves, self._spec = pytree.tree_flatten_with_path((args, kwargs))
        self._constants = [None if isinstance(v, torch.Tensor) else v for _, v in leaves]
        self.tensors = tuple(v for _, v in leaves if isinstance(v, torch.Tensor))
        if not self.tensors:
            raise UsageError("export: example_inputs hold no tensors — pass at least one tensor")
        positional = _positional_names(model, len(args))
        self.input_names = [
            _clean(_path_name(path, positional))
            for path, v in leaves
            if isinstance(v, torch.Tensor)
        ]
        self._keep: list[int] | None = None
        self.output_names: list[str] = []

    def call(self, tensors: Sequence[torch.Tensor]) -> Any:
        """Runs the wrapped model on a flat tuple of tensors; returns its raw output."""
        it = iter(tensors)
        leaves = [next(it) if c is None else c for c in self._constants]
        args, kwargs = pytree.tree_unflatten(leaves, self._spec)
        return self.model(*args, **kwargs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        flat = [v for _, v in pytree.tree_flatten_with_path(self.call(tensors))[0]]
        outputs = [v for v in flat if isinstance(v, torch.Tensor)]
        if self._keep is not None:
            outputs = [outputs[i] for i in self._keep]
        return tuple(outputs)

    def choose_outputs(self, raw_output: Any, names: Sequence[str] | None) -> None:
        """Names the outputs; `names` either renames all of them or picks some by name.

        Raises:
            UsageError: `names` neither matches the output count nor names existing outputs.
        """
        paths = [
            path
            for path, v in pytree.tree_flatten_with_path(raw_output)[0]
            if isinstance(v, torch.Tensor)
        ]
        if not paths:
            raise ExportError("export: the model returns no tensors — nothing to export")
        default = [_output_name(path) for path in paths]
        self._keep = None
        if names is None:
            self.output_names = default
        elif all(n in default for n in names) and len(set(names)) == len(names):
            self._keep = [default.index(n) for n in names]
            self.output_names = list(names)
        elif len(names) == len(default):
            self.output_names = list(names)
        else:
            raise UsageError(
                f"export: {len(names)} output names given, the model returns {len(default)} "
                f"outputs ({name_list(default)}) — name them all, or pick some by those names"
            )


def _path_name(path: tuple[Any, ...], positional: list[str]) -> str:
    """`('args', 0, 'a')` → `<param 0>_a`; `('kwargs', 'mask')` → `mask`."""
    top, *rest = path
    parts = []
    if _key_name(top) == "0":  # positional arguments
        parts.append(positional[int(_key_name(rest[0]))])
    else:
        parts.append(_key_name(rest[0]))
    parts += [_key_name(k) for k in rest[1:]]
    return "_".join(parts)


def _output_name(path: tuple[Any, ...]) -> str:
    if not path:
        return "output"
    parts = [_key_name(k) for k in path]
    if parts[0].isdigit():
        parts.insert(0, "output")
    return _clean("_".join(parts))
