"""Every ONNX backend test model shipped in the onnx wheel that this onnxruntime loads passes
`optimize`: the cleanup keeps each model's opset forms and its outputs (parity is optimize's own
check, atol 1e-4 + rtol 1e-5, on the feeds the model ships in `test_data_set_0`).

The 149 models span opsets 1-21 and the exporters of ONNX's early years (Caffe2, PyTorch 0.x);
they found two opset-form bugs (`Unsqueeze` and `Split` written with opset-13 inputs into
opset-11/12 graphs) and a NaN false alarm (`sqrt` of negative feeds). A model this onnxruntime
refuses (kernels it dropped, such as `Add` at opset 6) is skipped, with ORT's reason.

The `light_*` models (VGG-19, DenseNet-121, ResNet-50, ...) have no shipped feeds and run on
optimize's random ones; they materialize full-size weights: 24 s together on 2 cores (the 100
others: 20 s), so no `slow` marker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnxsmith.runtime.session import create_session

from onnxsmith.errors import SessionError
from onnxsmith.optimize import optimize_file

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
CASES = sorted(DATA.glob("*/*/model.onnx"))
LIGHT = sorted(DATA.glob("light/*.onnx"))


def _id(path: Path) -> str:
    return path.parent.name if path.name == "model.onnx" else path.stem


def shipped_feed(model_path: Path) -> dict[str, np.ndarray] | None:
    """`test_data_set_0`'s inputs, or None when the model has none or takes a sequence."""
    dataset = model_path.parent / "test_data_set_0"
    files = sorted(dataset.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    model = onnx.load(model_path, load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in weights]
    if not files or len(files) != len(names):
        return None
    feed = {}
    for name, file in zip(names, files, strict=True):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        if tensor.data_type == onnx.TensorProto.UNDEFINED:
            return None  # a sequence or optional input: not a tensor
        feed[name] = numpy_helper.to_array(tensor)
    return feed


def optimize_if_loadable(path: Path, tmp_path: Path, feed: dict[str, np.ndarray] | None) -> None:
    try:
        create_session(path)
    except SessionError as e:
        pytest.skip(f"this onnxruntime refuses the input: {e}")
    strings = feed is not None and any(a.dtype.kind in "OSU" for a in feed.values())
    data = None
    if feed is not None and not strings:
        data = tmp_path / "data"  # a folder: one .npz per feed (one file would be many samples)
        data.mkdir()
        np.savez(data / "feed.npz", **feed)
    output = tmp_path / "out.onnx"
    report = optimize_file(path, output, data=data)
    if strings:  # .npz feeds hold no strings (no pickles): compare on the shipped feed here
        want = create_session(path).run(None, feed)
        got = create_session(output).run(None, feed)
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))
        return
    assert report.parity is not None, report.parity_note
    assert all(d.within() for d in report.parity)


@pytest.mark.parametrize("path", CASES, ids=_id)
def test_backend_model_passes_optimize(path, tmp_path):
    optimize_if_loadable(path, tmp_path, shipped_feed(path))


@pytest.mark.parametrize("path", LIGHT, ids=_id)
def test_backend_light_model_passes_optimize(path, tmp_path):
    optimize_if_loadable(path, tmp_path, None)
