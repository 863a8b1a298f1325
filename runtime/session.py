"""The one place that creates `onnxruntime.InferenceSession`s."""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from onnxsmith.errors import SessionError, UsageError, name_list
from onnxsmith.io import (
    EXTERNAL_DATA_THRESHOLD,
    external_data_inlined,
    save_model,
    weight_bytes,
)

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# What create_session returns; other layers annotate with this name (they may not name ORT's class).
Session = ort.InferenceSession

TIMEOUT_ENV = "ONNXSMITH_RUN_TIMEOUT"
DEFAULT_RUN_TIMEOUT = 600.0
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
}


def resolve_providers(names: Sequence[str]) -> list[str]:
    """Maps short names (`cpu`, `cuda`) to ORT providers; unknown or unavailable ones are errors."""
    available = ort.get_available_providers()
    resolved = []
    for name in names:
        provider = PROVIDER_ALIASES.get(name.lower(), name)
        if provider not in available:
            raise UsageError(
                f"provider {name!r} is not available in this onnxruntime — choose from "
                f"{name_list(available)}"
            )
        resolved.append(provider)
    return resolved


def create_session(
    model: ir.Model | str | os.PathLike[str],
    *,
    threads: int | None = None,
    inter_op_threads: int | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    optimization: str = "all",
    optimized_model_path: str | os.PathLike[str] | None = None,
    profile_prefix: str | None = None,
    label: str | None = None,
) -> ort.InferenceSession:
    """Creates an ORT session for a model object or file.

    Args:
        model: an `ir.Model` (serialized in memory, or to a temp folder when over 2 GB) or a path.
        threads: intra-op threads (None: ORT's default, one per physical core).
        inter_op_threads: inter-op threads; when set, the parallel executor is used.
        providers: execution providers, already resolved (see `resolve_providers`).
        optimization: graph optimization level: disable, basic, extended or all.
        optimized_model_path: where ORT writes the graph it actually runs.
        profile_prefix: turn ORT profiling on with this file prefix.
        label: what the error calls the model (default: its file, or the file it came from).

    Raises:
        SessionError: ORT refused the model; the message names it.
    """
    options = ort.SessionOptions()
    # Fatal only: ORT's error lines repeat what the exception says, across several coloured
    # lines on stderr, which would break the CLI's one-line error.
    options.log_severity_level = 4
    options.graph_optimization_level = _LEVELS[optimization]
    if threads is not None:
        options.intra_op_num_threads = threads
    if inter_op_threads is not None:
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    label = label or _label(model)
    try:
        if isinstance(model, ir.Model):
            return _session_from_ir(model, options, list(providers))
        return ort.InferenceSession(str(model), options, providers=list(providers))
    except Exception as e:  # ORT raises its own unrelated types (Fail, InvalidGraph, ...)
        raise SessionError(f"{label}: onnxruntime cannot load the model ({ort_reason(e)})") from e


_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_LOAD_PREFIX = re.compile(r"^Load model from .*? failed:\s*")
_SOURCE_LOCATION = re.compile(r"\S+\.(?:h|hpp|cc|cpp|cu):\d+\s+")
_OPSET_TOO_NEW = re.compile(
    r"Opset (\d+) is under development.*support for domain (\S+) is till opset (\d+)", re.S
)
_INVALID_NODE = re.compile(
    r"This is an invalid model\. In Node, \(\"([^\"]*)\", (\w+),.*?Error (.*)"
)
_MAX_REASON = 300


def _skip_signature(text: str) -> str:
    """`text` without a leading C++ signature (`void ns::f(const T&, int) const rest` → `rest`)."""
    head = text.split("(", 1)[0]
    if "::" not in head or " " in head.strip().rsplit(" ", 1)[-1]:
        return text
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == ")" and depth == 0:
            rest = text[index + 1 :].lstrip()
            return rest.removeprefix("const").lstrip()
    return text


def ort_reason(error: BaseException) -> str:
    """ORT's message cut to its first meaningful line: no status code, C++ paths or signatures.

    The full text stays on the exception chain (`raise ... from e`), which `--debug` prints.
    """
    text = _LOAD_PREFIX.sub("", _STATUS.sub("", str(error).strip()))
    too_new = _OPSET_TOO_NEW.search(text)
    if too_new:
        opset, domain, newest = too_new.groups()
        return (
            f"opset {opset} of {domain} is newer than this onnxruntime supports (max {newest}); "
            f"export the model with opset {newest} or lower"
        )
    invalid = _INVALID_NODE.search(text)
    if invalid:
        name, op, problem = invalid.groups()
        text = f"invalid {op} node {name!r}: {problem}" if name else f"invalid {op} node: {problem}"
    while (location := _SOURCE_LOCATION.search(text)) is not None:
        text = text[: location.start()] + _skip_signature(text[location.end() :])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"


def _label(model: ir.Model | str | os.PathLike[str]) -> str:
    if isinstance(model, ir.Model):
        return model.meta.get("onnxsmith.source", model.graph.name or "model")
    return str(model)


def _session_from_ir(
    model: ir.Model, options: ort.SessionOptions, providers: list[str]
) -> ort.InferenceSession:
    if weight_bytes(model) <= EXTERNAL_DATA_THRESHOLD:
        with external_data_inlined(model, initializers=True):
            data = ir.to_proto(model).SerializeToString()
        return ort.InferenceSession(data, options, providers=providers)
    folder = tempfile.TemporaryDirectory(prefix="onnxsmith-session-")
    path = Path(folder.name) / "model.onnx"
    save_model(model, path, external_data=True)
    session = ort.InferenceSession(str(path), options, providers=providers)
    session._onnxsmith_tempdir = folder  # lives as long as the session
    return session


def run(
    session: ort.InferenceSession,
    feeds: Mapping[str, np.ndarray],
    label: str = "model",
    *,
    timeout: float | None = None,
) -> list[np.ndarray]:
    """Runs one feed; ORT errors become `SessionError` naming the model.

    Args:
        timeout: seconds after which ORT is told to stop (default: `run_timeout()`); a model
            from an untrusted source can hold a Loop that never ends.
    """
    limit = run_timeout() if timeout is None else timeout
    options = ort.RunOptions()
    options.log_severity_level = 4
    watchdog = threading.Timer(limit, lambda: setattr(options, "terminate", True))
    if limit > 0:
        watchdog.start()
    try:
        return session.run(None, dict(feeds), options)
    except Exception as e:  # see create_session
        if options.terminate:
            raise SessionError(
                f"{label}: onnxruntime stopped the run after {limit:g} s — raise "
                f"{TIMEOUT_ENV} (seconds, 0 = no limit) if the model is really that slow"
            ) from e
        raise SessionError(f"{label}: onnxruntime failed to run the model ({ort_reason(e)})") from e
    finally:
        watchdog.cancel()


def run_timeout() -> float:
    """Seconds one ORT run may take: `$ONNXSMITH_RUN_TIMEOUT`, default 600, 0 for no limit."""
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_RUN_TIMEOUT))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise UsageError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds — unset it or use 600")
    return value
