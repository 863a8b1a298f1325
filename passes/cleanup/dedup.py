"""Stores identical initializers once."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common


class DeduplicateInitializersPass(common.DeduplicateHashedInitializersPass):
    """onnx_ir's hashed deduplication, on C-contiguous data.

    onnx_ir 1.1 hashes `tensor.numpy()` as a buffer, which raises on a non-contiguous array;
    constant folding leaves exactly that behind for `Transpose(W)` (a transposed view of W).
    The view is copied into a contiguous array first: same values, same serialized bytes.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for graph in model.graphs():
            for value in graph.initializers.values():
                tensor = value.const_value
                if isinstance(tensor, ir.Tensor) and not tensor.numpy().flags.c_contiguous:
                    array = np.ascontiguousarray(tensor.numpy())
                    value.const_value = ir.Tensor(array, dtype=tensor.dtype, name=tensor.name)
        return super().call(model)
