"""What `onnxsmith export TARGET` and `distill --student TARGET` point at, loaded into a module.

A target is `path/to/file.py:factory` or `package.module:factory` (a callable returning a
`torch.nn.Module` or a `(module, example_inputs)` tuple), or a local Hugging Face model folder
(has `config.json`), loaded offline with `transformers` as a feature-extraction model.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from onnxsmith.exporter.reasons import one_line

from onnxsmith.errors import ExportError, UsageError, name_list

HF_AXES = {0: "batch", 1: "sequence"}
_SAMPLE_TEXT = [
    "onnxsmith exports this sentence to check the model.",
    "A second, shorter sentence.",
]
_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "bool": torch.bool,
}
_SHAPE = re.compile(r"^([^=]+)=(\d+(?:x\d+)*)(?::(\w+))?$")


@dataclasses.dataclass(frozen=True)
class Target:
    """A loaded module, with example inputs and export settings when the target brings them."""

    model: torch.nn.Module
    example_inputs: Any | None  # None: a bare module, shapes come from --input-shape
    source: str
    output_names: tuple[str, ...] | None = None
    dynamic_axes: dict[str, dict[int, str]] | None = None


def load_target(spec: str, *, step: str = "export") -> Target:
    """Loads `spec` (see the module docstring).

    Raises:
        UsageError: the spec has neither a `:factory` nor names a folder.
        ExportError: the file, module or factory is missing, fails, or returns the wrong type.
    """
    path = Path(spec)
    if path.is_dir():
        return _load_hf(path, step)
    if ":" not in spec:
        if path.suffix == ".py":
            raise UsageError(f"{step}: name the factory in {spec} — write {spec}:build_model")
        raise ExportError(
            f"{step}: target {spec!r} is neither a folder nor FILE.py:FACTORY / "
            "package.module:FACTORY — check the path"
        )
    location, _, name = spec.rpartition(":")
    if not name.isidentifier():
        raise UsageError(f"{step}: {name!r} in {spec!r} is not a Python name — use FILE.py:FACTORY")
    module = _import(location, step)
    factory = getattr(module, name, None)
    if factory is None:
        available = sorted(
            k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
        )
        raise ExportError(
            f"{step}: {location} has no {name!r} — callables there: "
            f"{name_list(available) or 'none'}"
        )
    if not callable(factory):
        raise ExportError(f"{step}: {spec} is a {type(factory).__name__}, not a callable")
    return _call(factory, spec, step)


def _import(location: str, step: str) -> Any:
    if location.endswith(".py") or os.sep in location or "/" in location:
        return _import_file(Path(location), step)
    try:
        return importlib.import_module(location)
    except ImportError as e:
        raise ExportError(
            f"{step}: cannot import module {location!r} ({e}) — install it or pass FILE.py:FACTORY"
        ) from e
    except Exception as e:
        raise ExportError(f"{step}: importing {location} failed ({one_line(e)})") from e


def _import_file(path: Path, step: str) -> Any:
    if not path.is_file():
        raise ExportError(f"{step}: target file {path} does not exist — check the path")
    name = "onnxsmith_target_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExportError(f"{step}: cannot load {path} as Python — is it a .py file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    sys.path.insert(0, str(path.parent.resolve()))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise ExportError(
            f"{step}: importing {path} failed ({one_line(e)}) — run `python {path}` to see the "
            "traceback"
        ) from e
    finally:
        sys.path.remove(str(path.parent.resolve()))
    return module


def _call(factory: Callable[[], Any], spec: str, step: str) -> Target:
    try:
        result = factory()
    except Exception as e:
        raise ExportError(f"{step}: {spec}() failed ({one_line(e)})") from e
    if isinstance(result, torch.nn.Module):
        return Target(result, None, spec)
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module):
        return Target(result[0], result[1], spec)
    got = (
        f"a tuple of {', '.join(type(r).__name__ for r in result)}"
        if isinstance(result, tuple)
        else f"a {type(result).__name__}"
    )
    raise ExportError(
        f"{step}: {spec}() returned {got}, expected a torch.nn.Module or a "
        "(module, example_inputs) tuple — return the model"
    )


def _load_hf(folder: Path, step: str) -> Target:
    if not (folder / "config.json").is_file():
        raise ExportError(
            f"{step}: {folder} is a folder without config.json — pass a Hugging Face model "
            "folder, or FILE.py:FACTORY"
        )
    # Offline only: never reach the Hub, whatever the folder's config refers to.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
    except ImportError as e:
        raise ExportError(
            f"{step}: exporting a Hugging Face folder needs transformers — pip install transformers"
        ) from e
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise ExportError(
            f"{step}: no usable tokenizer in {folder} ({one_line(e)}) — folders are exported "
            "as text feature-extraction models; export others with FILE.py:FACTORY"
        ) from e
    try:
        model = transformers.AutoModel.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise ExportError(f"{step}: transformers cannot load {folder} ({one_line(e)})") from e
    encoded = tokenizer(_SAMPLE_TEXT, padding=True, return_tensors="pt")
    inputs = {name: encoded[name] for name in tokenizer.model_input_names if name in encoded}
    return Target(
        model,
        inputs,
        str(folder),
        output_names=("last_hidden_state",),
        dynamic_axes={name: dict(HF_AXES) for name in inputs},
    )


def inputs_from_shapes(
    model: torch.nn.Module, shapes: Sequence[str], *, seed: int = 0, step: str = "export"
) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """Random example inputs from `NAME=1x3x224x224` / `NAME=1x128:int64` specs, in order.

    Floats are standard normal; integers are drawn below the smallest `nn.Embedding` size in
    the model (valid token ids), or from {0, 1} when it has none.

    Raises:
        UsageError: a spec is malformed, repeats a name or names an unknown dtype.
    """
    generator = torch.Generator().manual_seed(seed)
    vocab = min(
        (m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding)),
        default=2,
    )
    tensors, names = [], []
    for spec in shapes:
        match = _SHAPE.match(spec.strip())
        if not match:
            raise UsageError(
                f"{step}: --input-shape {spec!r} is not NAME=1x3x224x224 or NAME=1x128:int64"
            )
        name, dims, dtype_name = match.group(1), match.group(2), match.group(3) or "float32"
        if dtype_name not in _DTYPES:
            raise UsageError(
                f"{step}: --input-shape {spec!r} has dtype {dtype_name!r} — use one of "
                f"{name_list(_DTYPES)}"
            )
        if name in names:
            raise UsageError(f"{step}: --input-shape names {name!r} twice")
        shape = tuple(int(d) for d in dims.split("x"))
        dtype = _DTYPES[dtype_name]
        if dtype.is_floating_point:
            tensor = torch.randn(shape, generator=generator).to(dtype)
        else:
            high = 2 if dtype == torch.bool else vocab
            tensor = torch.randint(0, high, shape, generator=generator).to(dtype)
        tensors.append(tensor)
        names.append(name)
    return tuple(tensors), names
