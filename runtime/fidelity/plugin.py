"""The one plug-in type: `path/to/file.py:fn`, a user's own task metric.

`fn(reference_outputs, outputs) -> float` receives, for every eval feed, a dict of output name
to array (the reference model's, then the candidate's) and returns the candidate's fidelity in
[0, 1] (1: as good as the reference). Its loss is 1 - fidelity. `quantize`, `prune`,
`merge --eval` and `bench` all load it here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from onnxsmith.errors import DataError, UsageError, name_list

Outputs = Mapping[str, np.ndarray]  # one feed's outputs by name
PluginFn = Callable[[Sequence[Outputs], Sequence[Outputs]], float]


def is_plugin(spec: str) -> bool:
    """Whether `spec` names a function in a Python file (`file.py:fn`)."""
    return ":" in spec and spec.rsplit(":", 1)[0].endswith(".py")


@dataclasses.dataclass(frozen=True)
class PluginMetric:
    """A user's metric, loaded by `load_plugin`."""

    name: str  # file.py:fn
    fn: PluginFn

    def __call__(self, reference: Sequence[Outputs], outputs: Sequence[Outputs]) -> float:
        """The fidelity `fn` returns, checked to be a number in [0, 1].

        Raises:
            DataError: `fn` raised, or returned something that is not a fidelity in [0, 1].
        """
        try:
            value = self.fn(reference, outputs)
        except Exception as e:  # a user's callable may raise anything
            raise DataError(f"metric {self.name} failed: {type(e).__name__}: {e}") from e
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise DataError(
                f"metric {self.name} returned {type(value).__name__}, not a number — return a "
                "fidelity in [0, 1] as a float"
            )
        if not (math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0):
            raise DataError(
                f"metric {self.name} returned {value} — return a fidelity in [0, 1] "
                "(1: as good as the reference)"
            )
        return float(value)


def load_plugin(spec: str, step: str) -> PluginMetric:
    """Imports `file.py` and returns its `fn` as a `PluginMetric`.

    Raises:
        UsageError: the file is missing or fails to import, or has no such function.
    """
    file_name, fn_name = spec.rsplit(":", 1)
    path = Path(file_name)
    where = f"{step}: --metric {spec}"
    if not path.is_file():
        raise UsageError(f"{where}: {path} does not exist — check the path")
    module_spec = importlib.util.spec_from_file_location(f"onnxsmith_metric_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"{where}: cannot import {path} as Python — name a .py file")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's file may raise anything at import
        raise UsageError(f"{where}: importing {path} failed ({type(e).__name__}: {e})") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        functions = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
        raise UsageError(
            f"{where}: {path} has no function {fn_name!r} — it defines "
            f"{name_list(functions) or 'no functions'}"
        )
    return PluginMetric(f"{path.name}:{fn_name}", fn)
