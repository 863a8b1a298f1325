"""Sessions that also return intermediate tensors (calibration and per-layer error read them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import create_session, run

from onnxsmith.errors import PassError, name_list


def main_graph_values(model: ir.Model) -> dict[str, ir.Value]:
    """Graph inputs and node outputs of the main graph by name (subgraph values are not visible)."""
    values = {v.name: v for v in model.graph.inputs if v.name}
    for node in model.graph:
        for value in node.outputs:
            if value.name:
                values[value.name] = value
    return values


class ProbeSession:
    """An ORT session of `model` whose outputs are the model's own plus `names`.

    The model gets the extra outputs only while the session is created; it is left as it was.
    """

    def __init__(self, model: ir.Model, names: Iterable[str], *, optimization: str = "basic"):
        values = main_graph_values(model)
        wanted = list(dict.fromkeys(names))
        missing = [n for n in wanted if n not in values]
        if missing:
            raise PassError(
                f"cannot observe {name_list(missing)}: not a tensor of the main graph — "
                "rerun the prepare step on this model"
            )
        existing = {v.name for v in model.graph.outputs}
        extra = [values[n] for n in wanted if n not in existing]
        model.graph.outputs.extend(extra)
        try:
            self.session: ort.InferenceSession = create_session(model, optimization=optimization)
        finally:
            for _ in extra:
                model.graph.outputs.pop()
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.names = wanted

    def run(self, feed: Feed, label: str = "model") -> dict[str, np.ndarray]:
        """The requested tensors for one feed, by name."""
        outputs = run(self.session, feed, label)
        by_name = dict(zip(self.output_names, outputs, strict=True))
        return {n: by_name[n] for n in self.names}


def float_tensors(model: ir.Model, names: Sequence[str] | None = None) -> list[str]:
    """Names of main-graph float32 activations (graph inputs and node outputs, not weights)."""
    values = main_graph_values(model)
    selected = values if names is None else {n: values[n] for n in names if n in values}
    return [
        name
        for name, value in selected.items()
        if value.dtype == ir.DataType.FLOAT and value.const_value is None
    ]
