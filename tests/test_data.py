"""The data-dir format: streamed .npz feeds checked against the model's inputs."""

from __future__ import annotations

import numpy as np
import pytest
from onnxsmith.runtime.data import DataDir

from onnxsmith.errors import DataError
from onnxsmith.samples import tiny_cnn
from onnxsmith.signature import input_specs

SPECS = input_specs(tiny_cnn())
rng = np.random.default_rng(0)


def image(batch: int = 1, dtype=np.float32) -> np.ndarray:
    return rng.normal(size=(batch, 1, 8, 8)).astype(dtype)


def test_reads_files_in_name_order_with_variable_batch(tmp_path):
    for name, batch in (("b", 2), ("a", 1), ("c", 3)):
        np.savez(tmp_path / f"{name}.npz", image=image(batch))
    data = DataDir(tmp_path, SPECS)
    assert len(data) == 3
    assert [label for label, _ in data.items()] == ["a.npz", "b.npz", "c.npz"]
    assert [feed["image"].shape[0] for feed in data] == [1, 2, 3]


def test_single_file_with_sample_axis(tmp_path):
    np.savez(tmp_path / "all.npz", image=image(5))
    feeds = list(DataDir(tmp_path / "all.npz", SPECS))
    assert len(feeds) == 5 and feeds[0]["image"].shape == (1, 1, 8, 8)
    np.savez(tmp_path / "stacked.npz", image=np.stack([image(2)] * 4))
    feeds = list(DataDir(tmp_path / "stacked.npz", SPECS))
    assert len(feeds) == 4 and feeds[0]["image"].shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"pixels": image()}, "lacks 'image' and has unknown 'pixels'"),
        ({"image": image(dtype=np.float64)}, "is float64, the model expects float32"),
        ({"image": image()[0]}, "expects rank 4"),
        ({"image": np.zeros((1, 1, 9, 8), np.float32)}, "expects 8 at axis 2"),
        ({"image": np.full((1, 1, 8, 8), np.nan, np.float32)}, "NaN or Inf"),
    ],
)
def test_mismatches_name_file_key_and_fix(tmp_path, arrays, message):
    np.savez(tmp_path / "003.npz", **arrays)
    with pytest.raises(DataError, match=message) as info:
        list(DataDir(tmp_path, SPECS, step="quantize"))
    assert "quantize:" in str(info.value) and "003.npz" in str(info.value)


def test_pickled_arrays_are_never_loaded(tmp_path):
    np.savez(tmp_path / "p.npz", image=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="pickled"):
        list(DataDir(tmp_path, SPECS))


def test_empty_dir_missing_path_and_corrupt_file(tmp_path):
    with pytest.raises(DataError, match=r"no \.npz"):
        DataDir(tmp_path, SPECS)
    with pytest.raises(DataError, match="does not exist"):
        DataDir(tmp_path / "nope", SPECS)
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        list(DataDir(tmp_path, SPECS))
