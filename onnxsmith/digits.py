"""scikit-learn's handwritten digits as data dirs: the offline dataset of the demo and benches.

Images are upsampled from 8x8 (to 16x16 by default, nearest) so that CNNs have enough work per
sample for pruning and quantization to show on latency.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from onnxsmith.errors import UsageError


@dataclasses.dataclass(frozen=True)
class DigitsSplit:
    """float32 images [N, 1, side, side] in [0, 1] and int64 labels, split three ways."""

    train_x: np.ndarray
    train_y: np.ndarray
    calib_x: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray


def load_digits_split(
    *, side: int = 16, seed: int = 0, calib: int = 200, evaluate: int = 400
) -> DigitsSplit:
    """Shuffles the 1797 digits with `seed` and splits off calibration and evaluation sets."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise UsageError("digits need scikit-learn: pip install 'onnxsmith[bench]'") from e
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    if side % 8:
        raise UsageError(f"digits side must be a multiple of 8, got {side}")
    scale = side // 8
    images = np.kron(images, np.ones((scale, scale), np.float32))[:, None]
    order = np.random.default_rng(seed).permutation(len(images))
    x, y = images[order], digits.target[order].astype(np.int64)
    train = len(x) - calib - evaluate
    return DigitsSplit(
        train_x=x[:train],
        train_y=y[:train],
        calib_x=x[train : train + calib],
        eval_x=x[train + calib :],
        eval_y=y[train + calib :],
    )


def write_feeds(
    folder: Path, images: np.ndarray, *, input_name: str = "image", batch: int = 1
) -> Path:
    """One `.npz` per batch of `batch` images, keyed by the model's input name."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(images), batch):
        arrays: dict[str, Any] = {input_name: images[i : i + batch]}
        np.savez(folder / f"{i // batch:05d}.npz", **arrays)
    return folder


def write_labels(folder: Path, labels: np.ndarray, *, batch: int = 1) -> Path:
    """Labels dir matching `write_feeds`: one `.npz` per feed file with key `label`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(labels), batch):
        np.savez(folder / f"{i // batch:05d}.npz", label=labels[i : i + batch])
    return folder
