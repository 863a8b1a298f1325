"""Labels for a data dir: one `.npz` per feed file (same name, key `label`), or one `.npz` whose
`label` array has a leading sample axis when the data is a single multi-sample file."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from onnxsmith.runtime.data import DataDir

from onnxsmith.errors import DataError

LABEL_KEY = "label"


def read_labels(data: DataDir, path: str | Path, *, step: str) -> list[np.ndarray]:
    """One label array per sample of `data`, in the same order."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{step}: labels path {path} does not exist — check the path")
    if data.path.is_dir():
        if not path.is_dir():
            raise DataError(
                f"{step}: {data.path} is a folder, so labels must be a folder with one .npz per "
                f"feed file (same names, key {LABEL_KEY!r}); {path} is a file"
            )
        return [_read(path / file.name, step) for file in data.files]
    labels = _read(path, step)
    if labels.ndim == 0 or labels.shape[0] != len(data):
        raise DataError(
            f"{step}: {path} holds {labels.shape[:1] or 'no'} labels for {len(data)} samples in "
            f"{data.path} — save one label per sample along axis 0"
        )
    return list(labels)


def integer_labels(label: np.ndarray, where: str) -> np.ndarray:
    """`label` if it holds integer class ids, else a one-line DataError."""
    label = np.asarray(label)
    if label.dtype.kind not in "iub":
        raise DataError(
            f"{where}: labels are {label.dtype}, class ids must be integers — save them with "
            ".astype(numpy.int64)"
        )
    return label


def check_label(label: np.ndarray, prediction: np.ndarray, where: str) -> np.ndarray:
    """`label` shaped like `prediction` (class ids), or a one-line DataError."""
    label = integer_labels(label, where)
    if label.size != prediction.size:
        raise DataError(
            f"{where}: {label.size} labels for {prediction.size} predictions (output shape "
            f"{prediction.shape} without the class axis) — save one class id per prediction"
        )
    return label.reshape(prediction.shape)


def load_labels(
    labels: str | os.PathLike[str],
    data_files: Sequence[Path],
    file_sizes: Sequence[int],
    classes: int,
    *,
    step: str = "distill",
) -> np.ndarray:
    """Class ids for every sample, in the order the data dir's samples were stacked.

    Args:
        labels: a folder with `NAME.npz` for every data file `NAME.npz` (or, for data in one
            `.npz`, that file's twin in the folder or the labels file itself).
        data_files: the data dir's files, in order.
        file_sizes: samples in each data file.
        classes: the teachers' class count; labels must lie in [0, classes).

    Raises:
        DataError: a file is missing, lacks `label`, or has the wrong length, dtype or range.
    """
    root = Path(labels)
    if not root.exists():
        raise DataError(f"{step}: labels path {root} does not exist — check the path")
    parts = []
    for data_file, size in zip(data_files, file_sizes, strict=True):
        path = root / data_file.name if root.is_dir() else root
        label = _read(path, step)
        if label.shape[:1] != (size,):
            raise DataError(
                f"{step}: {path} has {label.shape[0] if label.ndim else 0} labels, "
                f"{data_file.name} has {size} samples — give one label per sample"
            )
        if label.dtype.kind not in "iu":
            raise DataError(f"{step}: {path} labels are {label.dtype} — save class ids as integers")
        if label.size and (label.min() < 0 or label.max() >= classes):
            raise DataError(
                f"{step}: {path} has labels in [{label.min()}, {label.max()}], the teachers "
                f"predict {classes} classes — labels must lie in [0, {classes - 1}]"
            )
        parts.append(label.astype(np.int64))
    return np.concatenate(parts)


def _read(file: Path, step: str) -> np.ndarray:
    if not file.is_file():
        raise DataError(
            f"{step}: label file {file} is missing — save numpy.savez({file.name!r}, "
            f"{LABEL_KEY}=...) for every feed file"
        )
    try:
        with np.load(file, allow_pickle=False) as npz:
            if LABEL_KEY not in npz.files:
                raise DataError(
                    f"{step}: {file} has no {LABEL_KEY!r} array (it has "
                    f"{', '.join(npz.files) or 'none'}) — save the labels under {LABEL_KEY!r}"
                )
            return np.asarray(npz[LABEL_KEY])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{step}: {file} is not a readable .npz ({e})") from e
