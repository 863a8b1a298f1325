"""Hard labels for distillation: one `.npz` per data file, key `label`, matched by file name."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from onnxsmith.errors import DataError


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


def _read(path: Path, step: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(
            f"{step}: labels file {path} is missing — save numpy.savez({path.name!r}, label=...) "
            "for every data file"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "label" not in npz.files:
                raise DataError(
                    f"{step}: {path} has no 'label' array (it has {', '.join(npz.files)}) — "
                    "save the class ids under the key 'label'"
                )
            return npz["label"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{step}: {path} is not a readable .npz — save it with numpy.savez") from e
