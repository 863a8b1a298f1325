"""A synthetic classification task with linear ONNX teachers, for the distillation tests.

Inputs x ~ N(0, 1) in R^16; the true class is argmax(x @ W) over 4 classes; each teacher is a
noisy copy of W (so teachers disagree a little and their ensemble beats each of them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES, CLASSES = 16, 4


def linear_teacher(weight: np.ndarray, path: Path, *, output: str = "logits") -> Path:
    """x[batch, F] → Gemm → output[batch, C]."""
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], [output])],
        "teacher",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", weight.shape[0]])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", weight.shape[1]])],
        [numpy_helper.from_array(weight.astype(np.float32), "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def make_task(root: Path, *, teachers: int = 2, train: int = 400, evaluation: int = 100):
    """Writes teachers, data dirs and label dirs under `root`; returns their paths and W."""
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 1, (FEATURES, CLASSES))
    paths = [
        linear_teacher(3 * (truth + rng.normal(0, 0.3, truth.shape)), root / f"t{i}.onnx")
        for i in range(teachers)
    ]
    dirs = {}
    for split, count in (("train", train), ("eval", evaluation)):
        data, labels = root / split, root / f"{split}_labels"
        data.mkdir()
        labels.mkdir()
        for index in range(count // 100):
            x = rng.normal(0, 1, (100, FEATURES)).astype(np.float32)
            np.savez(data / f"{index:03d}.npz", x=x)
            np.savez(labels / f"{index:03d}.npz", label=(x @ truth).argmax(1))
        dirs[split], dirs[f"{split}_labels"] = data, labels
    return paths, dirs, truth
