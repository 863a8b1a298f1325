"""Model IO: strict loading, atomic saving, external data handled on both sides.

Loading never runs anything and never writes; every failure is a one-line `ModelLoadError`.
Saving goes through a temp folder beside the target and `os.replace`, so a reader (or a killed
run) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from onnxsmith.errors import ModelLoadError, ModelSaveError

# Protobuf cannot serialize a message over 2 GiB; stay well clear of that limit.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
SOURCE_KEY = "onnxsmith.source"
DATA_FILES_KEY = "onnxsmith.source_data_files"  # protected from being overwritten, like the source
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
    data_files = _check_external_data(proto, path)
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
    _check_tensor_sizes(model, path)
    _shape_initializers_by_data(model)
    ir.external_data.set_base_dir(model.graph, str(path.parent))
    model.meta[SOURCE_KEY] = str(path.resolve())
    model.meta[DATA_FILES_KEY] = data_files
    return model


def external_data_files(path: str | os.PathLike[str]) -> list[Path]:
    """The external data files the model at `path` reads, resolved (checked as `load_model`
    checks them: inside the model's folder, present, long enough)."""
    path = Path(path)
    return _check_external_data(_read_proto(path), path)


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
    protected = [*inputs, *_source_files(model)]
    check_output_path(path, protected)
    if external_data is None:
        external_data = weight_bytes(model) > EXTERNAL_DATA_THRESHOLD
    elif not external_data and weight_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        raise ModelSaveError(f"{path}: the model is over 2 GB and must be saved with external data")
    data_name = f"{path.name}.data" if external_data else None
    if data_name:
        check_output_path(path.parent / data_name, protected)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with external_data_inlined(model, initializers=not data_name):
            ir.save(model, staging / path.name, external_data=data_name)
        if data_name:
            # An old model must never meet the new data: drop it before its data changes,
            # so a run killed in between leaves no model rather than a corrupt one.
            path.unlink(missing_ok=True)
            os.replace(staging / data_name, path.parent / data_name)
        os.replace(staging / path.name, path)
    except OSError as e:
        raise ModelSaveError(f"{path}: cannot write ({e.strerror or e})") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


@contextlib.contextmanager
def external_data_inlined(model: ir.Model, *, initializers: bool) -> Iterator[None]:
    """Swaps external tensors for in-memory copies while the model is serialized.

    `ir.save` keeps an external tensor's old location (relative to the *input's* folder) unless
    it writes a new data file, and never rewrites tensors held in attributes: either way the
    output would point at the input's data file, or at nothing once it sits elsewhere. Bytes
    handed to ORT need the same: ORT resolves such locations against the current directory.

    Args:
        initializers: inline external initializers too (False when `ir.save` writes them).
    """
    restore: list[Callable[[], None]] = []

    def loaded(tensor: ir.ExternalTensor) -> ir.Tensor:
        return ir.Tensor(tensor.numpy(), dtype=tensor.dtype, name=tensor.name)

    try:
        for graph in model.graphs():
            for value in graph.initializers.values():
                tensor = value.const_value
                if initializers and isinstance(tensor, ir.ExternalTensor):
                    value.const_value = loaded(tensor)
                    restore.append(functools.partial(setattr, value, "const_value", tensor))
            for node in graph:
                for name, attr in list(node.attributes.items()):
                    if attr.type == ir.AttributeType.TENSOR and isinstance(
                        attr.value, ir.ExternalTensor
                    ):
                        node.attributes[name] = ir.AttrTensor(name, loaded(attr.value))
                        restore.append(functools.partial(node.attributes.__setitem__, name, attr))
        yield
    finally:
        for undo in reversed(restore):
            undo()


def save_json(data: Any, path: str | os.PathLike[str], *, inputs: Iterable[Any] = ()) -> Path:
    """Writes `data` as indented JSON atomically, with the same refusals as `save_model`."""
    path = Path(path)
    check_output_path(path, inputs)
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(staging, path)
    except OSError as e:
        raise ModelSaveError(f"{path}: cannot write ({e.strerror or e})") from e
    finally:
        Path(staging).unlink(missing_ok=True)
    return path


def check_output_path(path: Path, inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Raises ModelSaveError unless `path` can be replaced by a new regular file.

    Refuses a missing folder, an existing directory or special file (a FIFO, `/dev/null`: they
    would be replaced, not written to) and any of `inputs`, through symlinks and hard links.
    """
    if not path.parent.is_dir():
        raise ModelSaveError(f"{path}: folder {path.parent} does not exist — create it first")
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        raise ModelSaveError(f"{path}: exists and is not a regular file — choose another path")
    target = path.resolve()
    for source in (Path(p) for p in inputs):
        same_file = source.is_file() and path.exists() and path.samefile(source)
        if same_file or target == source.resolve():
            raise ModelSaveError(
                f"{path}: refusing to overwrite the input {source} — choose another output path"
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


def _check_external_data(proto: onnx.ModelProto, path: Path) -> list[Path]:
    """Refuses external data that escapes the model's folder, is missing or has the wrong size.

    Only paths are resolved and files stat-ed here: nothing outside the folder is ever opened.

    Returns:
        The external data files the model reads, resolved.
    """
    folder = path.parent.resolve()
    files = set()
    for tensor in _tensor_protos(proto):
        if not external_data_helper.uses_external_data(tensor):
            continue
        where = f"{path}: tensor {tensor.name!r}"
        try:
            info = external_data_helper.ExternalDataInfo(tensor)
        except ValueError as e:
            raise ModelLoadError(
                f"{where} has an invalid external data entry ({e}) — re-export"
            ) from e
        location = Path(info.location)
        if not info.location or "\0" in info.location:
            raise ModelLoadError(
                f"{where} has an empty or invalid external data location — re-export"
            )
        target = (folder / location).resolve()
        if location.is_absolute() or ".." in location.parts or not target.is_relative_to(folder):
            raise ModelLoadError(
                f"{where} points outside the model folder ({info.location!r}) — refused; keep "
                "external data beside the model"
            )
        if not target.is_file():
            raise ModelLoadError(
                f"{where}: external data file {info.location!r} is missing or not a regular file "
                "— copy it next to the model"
            )
        size = _external_bytes(tensor, where)
        if info.length is not None and info.length != size:
            raise ModelLoadError(
                f"{where} declares {info.length} bytes of external data but its shape and type "
                f"need {size} — re-export the model"
            )
        needed = (info.offset or 0) + size
        if needed > target.stat().st_size:
            raise ModelLoadError(
                f"{path}: external data file {info.location!r} is truncated (tensor "
                f"{tensor.name!r} needs {needed} bytes, file has {target.stat().st_size}) — "
                "copy it again"
            )
        files.add(target)
    return sorted(files)


def _tensor_protos(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a model holds: initializers (sparse too), attributes, subgraphs, functions.

    onnx's own walker skips sparse tensors, which can point at external data as well.
    """
    graphs: list[onnx.GraphProto | onnx.FunctionProto] = [proto.graph, *proto.functions]
    while graphs:
        graph = graphs.pop()
        if isinstance(graph, onnx.GraphProto):
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield from (sparse.values, sparse.indices)
        for node in graph.node:
            for attr in node.attribute:
                yield from (attr.t, *attr.tensors)
                for sparse in (attr.sparse_tensor, *attr.sparse_tensors):
                    yield from (sparse.values, sparse.indices)
                graphs += [attr.g, *attr.graphs]


def _external_bytes(tensor: onnx.TensorProto, where: str) -> int:
    try:
        itemsize = ir.DataType(tensor.data_type).itemsize
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{where} has a data type that cannot be stored externally") from e
    if any(d < 0 for d in tensor.dims):
        raise ModelLoadError(f"{where} has a negative dimension {tuple(tensor.dims)} — re-export")
    return math.ceil(math.prod(tensor.dims) * itemsize)


def _source_files(model: ir.Model) -> list[Path]:
    """The model's own input file and every external data file its tensors still read."""
    files = [Path(t.path) for t in _tensors(model) if isinstance(t, ir.ExternalTensor)]
    if SOURCE_KEY in model.meta:
        files += [Path(model.meta[SOURCE_KEY]), *model.meta.get(DATA_FILES_KEY, ())]
    return files


def _shape_initializers_by_data(model: ir.Model) -> None:
    """Gives every initializer the shape of its data where a value_info declares another.

    PyTorch's exporter stores scalar constants as shape (1,) tensors and declares them rank 0;
    ORT runs the data, but ONNX shape inference in strict mode (ORT's quantizer runs it) stops
    at "Inferred shape and existing shape differ in rank: (1) vs (0)". The data is the truth.
    """
    for graph in model.graphs():
        for value in graph.initializers.values():
            data = value.const_value
            if data is not None and value.shape is not None and value.shape != data.shape:
                value.shape = ir.Shape(data.shape.numpy())


def _check_tensor_sizes(model: ir.Model, path: Path) -> None:
    """Refuses in-file tensors whose data does not hold exactly the declared shape.

    The checker only rejects data that is too short; longer data would fail later, deep inside
    a pass or ORT.
    """
    for tensor in _tensors(model):
        if isinstance(tensor, ir.ExternalTensor):
            continue  # sized against its file by _check_external_data
        try:
            tensor.numpy()
        except (ValueError, TypeError, AssertionError) as e:
            raise ModelLoadError(
                f"{path}: tensor {tensor.name!r} holds data that does not match its shape "
                f"{tuple(tensor.shape)} ({str(e).strip().splitlines()[0]}) — re-export the model"
            ) from e
