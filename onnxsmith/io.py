"""Model IO: strict loading, atomic saving, external data handled on both sides.

Loading never runs anything and never writes; every failure is a one-line `ModelLoadError`.
Saving goes through a temp folder beside the target and `os.replace`, so a reader (or a killed
run) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from onnxsmith.errors import ModelLoadError, ModelSaveError

# Protobuf cannot serialize a message over 2 GiB; stay well clear of that limit.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
SOURCE_KEY = "onnxsmith.source"
_OLDEST_IR_VERSION = 3


def load_model(path: str | os.PathLike[str]) -> ir.Model:
    """Loads an ONNX model after checking that it is complete and well-formed.

    External data is memory-mapped lazily; its files must exist, lie inside the model's folder
    and be long enough for every tensor that points into them.

    Raises:
        ModelLoadError: the file is missing, a directory, not ONNX, truncated or invalid.
    """
    path = Path(path)
    proto = _read_proto(path)
    _check_header(proto, path)
    _check_external_data(proto, path)
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError) as e:
        reason = str(e).strip().splitlines()[0]
        raise ModelLoadError(
            f"{path}: not a valid ONNX model ({reason}) — the file may be truncated or corrupt; "
            "re-export or re-download it"
        ) from e
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as e:  # the deserializer raises many types on malformed graphs
        raise ModelLoadError(f"{path}: cannot read the graph ({e}) — re-export the model") from e
    ir.external_data.set_base_dir(model.graph, str(path.parent))
    model.meta[SOURCE_KEY] = str(path.resolve())
    return model


def save_model(
    model: ir.Model,
    path: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Writes `model` atomically; never onto the file it was loaded from nor onto `inputs`.

    Args:
        model: the model to write; it is not modified.
        path: the target `.onnx` file.
        external_data: True forces weights into `<name>.data` beside the model, False forbids it,
            None (default) uses external data only when the model would exceed protobuf's 2 GB.
        inputs: more files that must not be overwritten (other members of a merge, say).

    Returns:
        The path written.
    """
    path = Path(path)
    _refuse_overwriting_inputs(model, path, inputs)
    if not path.parent.is_dir():
        raise ModelSaveError(f"{path}: folder {path.parent} does not exist — create it first")
    if external_data is None:
        external_data = weight_bytes(model) > EXTERNAL_DATA_THRESHOLD
    elif not external_data and weight_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        raise ModelSaveError(f"{path}: the model is over 2 GB and must be saved with external data")
    data_name = f"{path.name}.data" if external_data else None
    if data_name is None and has_external_data(model):
        # ir.save keeps external references as they are; from another folder they would dangle.
        model = ir.external_data.load_to_model(model.clone())
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        ir.save(model, staging / path.name, external_data=data_name)
        if data_name:
            os.replace(staging / data_name, path.parent / data_name)
        os.replace(staging / path.name, path)
    except OSError as e:
        raise ModelSaveError(f"{path}: cannot write ({e.strerror or e})") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def has_external_data(model: ir.Model) -> bool:
    """Whether some initializer still reads its data from a file beside the source model."""
    return any(
        isinstance(value.const_value, ir.ExternalTensor)
        for graph in model.graphs()
        for value in graph.initializers.values()
    )


def weight_bytes(model: ir.Model) -> int:
    """Bytes held by initializers and tensor attributes, subgraphs included."""
    total = 0
    for tensor in _tensors(model):
        total += tensor.nbytes
    return total


def _tensors(model: ir.Model) -> Iterator[ir.TensorProtocol]:
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                yield value.const_value
        for node in graph:
            for attr in node.attributes.values():
                if attr.type == ir.AttributeType.TENSOR:
                    yield attr.as_tensor()


def _read_proto(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file — check the path")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory — pass the .onnx file inside it")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: the file is empty — re-export or re-download it")
    try:
        return onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelLoadError(
            f"{path}: not an ONNX model (protobuf parse failed) — the file is truncated, "
            "corrupt or of another format; re-export or re-download it"
        ) from e
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({e.strerror or e})") from e


def _check_header(proto: onnx.ModelProto, path: Path) -> None:
    if proto.ir_version == 0 or not proto.HasField("graph"):
        raise ModelLoadError(
            f"{path}: not an ONNX model (no IR version or graph) — the file is truncated or of "
            "another format; re-export it"
        )
    if proto.ir_version < _OLDEST_IR_VERSION or proto.ir_version > onnx.IR_VERSION:
        raise ModelLoadError(
            f"{path}: IR version {proto.ir_version} is not supported (this onnx reads "
            f"{_OLDEST_IR_VERSION}..{onnx.IR_VERSION}) — re-export with a matching exporter or "
            "upgrade the onnx package"
        )
    if len(proto.graph.node) == 0:
        raise ModelLoadError(f"{path}: the graph is empty (no nodes) — nothing to optimize")


def _check_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Refuses external data that escapes the model's folder, is missing or is too short."""
    folder = path.parent.resolve()
    for tensor in external_data_helper._get_all_tensors(proto):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        location = Path(info.location)
        target = (folder / location).resolve()
        if location.is_absolute() or not target.is_relative_to(folder):
            raise ModelLoadError(
                f"{path}: tensor {tensor.name!r} points outside the model folder "
                f"({info.location!r}) — refused; keep external data beside the model"
            )
        if not target.is_file():
            raise ModelLoadError(
                f"{path}: external data file {info.location!r} for tensor {tensor.name!r} is "
                "missing — copy it next to the model"
            )
        needed = (info.offset or 0) + (info.length or 0)
        if needed > target.stat().st_size:
            raise ModelLoadError(
                f"{path}: external data file {info.location!r} is truncated (tensor "
                f"{tensor.name!r} needs {needed} bytes, file has {target.stat().st_size}) — "
                "copy it again"
            )


def _refuse_overwriting_inputs(
    model: ir.Model, path: Path, inputs: Iterable[str | os.PathLike[str]]
) -> None:
    protected = [Path(p) for p in inputs]
    if SOURCE_KEY in model.meta:
        protected.append(Path(model.meta[SOURCE_KEY]))
    target = path.resolve()
    data_target = target.with_name(f"{target.name}.data")
    for source in protected:
        source = source.resolve()
        if target == source or data_target == source:
            raise ModelSaveError(
                f"{path}: refusing to overwrite the input model {source} — choose another -o"
            )
        if source.is_file() and path.exists() and path.samefile(source):
            raise ModelSaveError(f"{path}: is the same file as input {source} — choose another -o")
