"""Per-layer quantization error: a quantized model's intermediate tensors against the float ones.

One run of both models over a few feeds gives, for every tensor they share, the noise-to-signal
ratio the quantized model has accumulated there. A node's own contribution is how much that
ratio grows from its input to its output; the search demotes the largest contributors first
(this is ORT's `qdq_loss_debug` idea, measured on any mix of static and dynamic nodes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import onnx_ir as ir

from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.fidelity.signal import sqnr_db
from onnxsmith.runtime.probe import ProbeSession, main_graph_values


@dataclasses.dataclass(frozen=True)
class LayerError:
    """Accumulated error of one tensor of the quantized model."""

    tensor: str
    signal: float  # sum of squares of the float tensor
    noise: float  # sum of squared differences

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(self.signal, self.noise)

    @property
    def noise_ratio(self) -> float:
        return self.noise / self.signal if self.signal > 0 else 0.0


def layer_errors(
    reference: ir.Model, candidate: ir.Model, feeds: Iterable[Feed], tensors: Sequence[str]
) -> dict[str, LayerError]:
    """Error of each tensor in `tensors` that both models compute, accumulated over `feeds`."""
    ref_values = main_graph_values(reference)
    cand_values = main_graph_values(candidate)
    shared = [
        t
        for t in dict.fromkeys(tensors)
        if t in ref_values and t in cand_values and cand_values[t].dtype == ir.DataType.FLOAT
    ]
    if not shared:
        return {}
    ref_probe = ProbeSession(reference, shared)
    cand_probe = ProbeSession(candidate, shared)
    signal = dict.fromkeys(shared, 0.0)
    noise = dict.fromkeys(shared, 0.0)
    for feed in feeds:
        want = ref_probe.run(feed, "quantize: the fp32 model")
        got = cand_probe.run(feed, "quantize: the int8 model")
        for name in shared:
            a = want[name].astype(np.float64)
            b = got[name].astype(np.float64)
            if a.shape != b.shape:
                continue
            signal[name] += float(np.sum(a * a))
            noise[name] += float(np.sum((a - b) ** 2))
    return {name: LayerError(name, signal[name], noise[name]) for name in shared}
