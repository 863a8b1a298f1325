"""The data-dir format every verb reads: one `.npz` per feed, keys = model input names.

Files are read one at a time in name order (never the whole set in memory) and checked against
the model's inputs. A single `.npz` whose arrays carry a leading sample axis is accepted too.
Arrays are always loaded with `allow_pickle=False`.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from tokenize import TokenError

import numpy as np

from onnxsmith.errors import DataError, name_list
from onnxsmith.signature import TensorSpec

Feed = dict[str, np.ndarray]


class DataDir:
    """Feeds from a folder of `.npz` files (sorted by name) or from one multi-sample `.npz`.

    In a single file, sample `i` of each array is `array[i]` when the array has one more dim than
    the model input, and `array[i:i+1]` (a batch of one) when it has the same rank.
    """

    def __init__(
        self, path: str | Path, specs: Sequence[TensorSpec] | None = None, *, step: str = "data"
    ):
        self.path = Path(path)
        self.specs = list(specs) if specs is not None else None
        self.step = step
        if not self.path.exists():
            raise DataError(f"{step}: data path {self.path} does not exist — check the path")
        if self.path.is_dir():
            self.files = sorted(self.path.glob("*.npz"))
            if not self.files:
                raise DataError(
                    f"{step}: {self.path} holds no .npz files — save one feed per file with "
                    "numpy.savez(path, **{input_name: array})"
                )
        else:
            self.files = [self.path]
        # Opening a FIFO or a device would block or never end; only plain files are read.
        special = [str(f) for f in self.files if not f.is_file()]
        if special:
            raise DataError(
                f"{step}: {name_list(special)}: not a regular file (a folder, FIFO or device) — "
                "keep only .npz files in the data dir"
            )
        self._samples = len(self.files) if self.path.is_dir() else self._count_samples(self.path)

    def __len__(self) -> int:
        return self._samples

    def __iter__(self) -> Iterator[Feed]:
        for _, feed in self.items():
            yield feed

    def items(self) -> Iterator[tuple[str, Feed]]:
        """(label, feed) pairs; the label names the file (and sample) for error messages."""
        if self.path.is_dir():
            for file in self.files:
                feed = self._read(file)
                self._check(feed, file.name)
                yield file.name, feed
            return
        arrays = self._read(self.path)
        for i in range(self._samples):
            feed = {key: self._sample(key, array, i) for key, array in arrays.items()}
            label = f"{self.path.name}[{i}]"
            self._check(feed, label)
            yield label, feed

    def _sample(self, key: str, array: np.ndarray, i: int) -> np.ndarray:
        spec = self._spec(key)
        if spec is not None and spec.shape is not None and array.ndim == len(spec.shape):
            return array[i : i + 1]
        return array[i]

    def _spec(self, key: str) -> TensorSpec | None:
        if self.specs is None:
            return None
        return next((s for s in self.specs if s.name == key), None)

    def _read(self, file: Path) -> Feed:
        """Every array of one `.npz`, each checked against its header before it is allocated."""
        try:
            with file.open("rb") as handle:
                magic = handle.read(6)
            if magic.startswith(b"\x93NUMPY"):
                raise DataError(
                    f"{self.step}: {file} is a .npy (one unnamed array) — save each feed as .npz "
                    "with numpy.savez(path, **{input_name: array})"
                )
            if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                raise DataError(
                    f"{self.step}: {file} is not a .npz (no zip header) — save it with numpy.savez"
                )
            with zipfile.ZipFile(file) as archive:
                return {
                    info.filename.removesuffix(".npy"): self._member(archive, info, file)
                    for info in archive.infolist()
                }
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
            raise DataError(
                f"{self.step}: {file} is not a readable .npz ({_reason(e)}) — save it again "
                "with numpy.savez"
            ) from e

    def _member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, file: Path) -> np.ndarray:
        """One array; refuses pickles and headers that promise more data than the member holds.

        numpy allocates the declared shape before reading, so a forged 20-byte header could
        otherwise ask for terabytes.
        """
        where = f"{self.step}: {file} member {info.filename!r}"
        ratio = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: 1032}.get(info.compress_type)
        if ratio is None or info.file_size > info.compress_size * ratio:
            raise DataError(
                f"{where} uses an unsupported or forged compression — save with numpy.savez"
            )
        with archive.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)
                read_header = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }[version]
                shape, _, dtype = read_header(member)
            except (KeyError, ValueError, SyntaxError, TokenError) as e:
                raise DataError(
                    f"{where} is not a numpy array ({_reason(e)}) — save plain arrays"
                ) from e
            if dtype.hasobject:
                raise DataError(
                    f"{self.step}: {file} holds pickled objects, which are never loaded — save "
                    "plain numeric arrays"
                )
            declared = math.prod(shape) * dtype.itemsize
            if declared != info.file_size - member.tell():
                raise DataError(
                    f"{where} declares shape {shape} ({declared} bytes) but holds "
                    f"{info.file_size - member.tell()} — the file is truncated or forged"
                )
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)

    def _count_samples(self, file: Path) -> int:
        arrays = self._read(file)
        if not arrays:
            raise DataError(f"{self.step}: {file} holds no arrays")
        lengths = {key: (a.shape[0] if a.ndim else 0) for key, a in arrays.items()}
        if len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise DataError(
                f"{self.step}: arrays in {file} must share one leading sample axis, got "
                f"{lengths} — stack samples along axis 0"
            )
        return next(iter(lengths.values()))

    def _check(self, feed: Feed, label: str) -> None:
        where = (
            f"{self.step}: {self.path.name}/{label}"
            if self.path.is_dir()
            else f"{self.step}: {label}"
        )
        if not feed:
            raise DataError(f"{where} holds no arrays — save the model's inputs in it")
        for key, array in feed.items():
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                raise DataError(f"{where} input {key!r} contains NaN or Inf — clean the data")
            if array.dtype.kind not in "biufc":
                raise DataError(
                    f"{where} input {key!r} has dtype {array.dtype} — save numeric arrays"
                )
        if self.specs is None:
            return
        expected = {s.name for s in self.specs}
        missing = sorted(expected - set(feed))
        extra = sorted(set(feed) - expected)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks {name_list(missing)}")
            if extra:
                parts.append(f"has unknown {name_list(extra)}")
            raise DataError(
                f"{where} {' and '.join(parts)} — the model's inputs are "
                f"{name_list(sorted(expected))}"
            )
        for spec in self.specs:
            check_array(feed[spec.name], spec, where)


def check_array(array: np.ndarray, spec: TensorSpec, where: str) -> None:
    """Raises DataError when `array` cannot feed input `spec` (dtype, rank or a fixed dim)."""
    if spec.dtype is not None and array.dtype != spec.dtype:
        raise DataError(
            f"{where} input {spec.name!r} is {array.dtype}, the model expects {spec.dtype} — "
            f"save it with .astype(numpy.{spec.dtype})"
        )
    if spec.shape is None:
        return
    if array.ndim != len(spec.shape):
        raise DataError(
            f"{where} input {spec.name!r} has shape {array.shape}, the model expects rank "
            f"{len(spec.shape)} ({spec.describe()}) — reshape the feed"
        )
    for axis, (size, dim) in enumerate(zip(array.shape, spec.shape, strict=True)):
        if isinstance(dim, int) and dim > 0 and size != dim:
            raise DataError(
                f"{where} input {spec.name!r} has shape {array.shape}, the model expects "
                f"{dim} at axis {axis} ({spec.describe()}) — resize the feed"
            )


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
