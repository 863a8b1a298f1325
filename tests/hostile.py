"""Hostile-input corpus: broken, forged and malicious models, data dirs and output paths.

Every `Case` writes its files into an empty folder and says what to hand the CLI; the corpus is
generated here, never committed as binaries. tests/test_hostile_corpus.py runs each case through
every verb in `VERBS` that it applies to and checks the contract: exit 0 with a valid result, or
exit 1/2 with one line on stderr; no traceback, no hang, inputs byte-identical, nothing left at
the output path on failure.

    python tests/hostile.py OUT_DIR    # write the whole corpus to OUT_DIR/<case>/ to look at

Adding a verb is one entry in `VERBS` (how to build its argv from a case's `Inputs`); adding a
case is one `Case(...)` line in the list its group builds.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from modelzoo import if_model
from onnx import TensorProto, helper, numpy_helper

from onnxsmith.io import load_model, save_model
from onnxsmith.samples import tiny_cnn


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a case hands to a verb; `good_*` are valid companions (a merge's second model)."""

    model: Path
    good_model: Path
    good_data: Path
    data: Path | None = None  # a hostile data dir; None lets the verb use its default
    output: Path | None = None  # a hostile output path; None: the harness picks a fresh one
    options: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Verb:
    """How one CLI verb is driven by the corpus.

    Attributes:
        argv: (inputs, output path) -> the command line after `onnxsmith`.
        validate: (stdout, output path) -> raises if a successful run's result is not valid.
        writes: has an output path: output cases apply; nothing may be left on failure.
        reads_data: takes a data dir: data cases apply.
    """

    argv: Callable[[Inputs, Path], list[str]]
    validate: Callable[[str, Path], object]
    writes: bool
    reads_data: bool


def _with_data(inputs: Inputs) -> list[str]:
    return ["--data", str(inputs.data)] if inputs.data else []


VERBS: dict[str, Verb] = {
    "inspect": Verb(
        argv=lambda i, out: ["inspect", str(i.model), "--json"],
        validate=lambda stdout, out: json.loads(stdout),
        writes=False,
        reads_data=False,
    ),
    "optimize": Verb(
        argv=lambda i, out: ["optimize", str(i.model), "-o", str(out), *_with_data(i), *i.options],
        validate=lambda stdout, out: load_model(out),
        writes=True,
        reads_data=True,
    ),
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile input.

    Attributes:
        name: unique, also the folder name.
        group: "model" (every verb), "data" (verbs that read data), "output" (verbs that write).
        build: writes the case's files into the given empty folder.
        expect: "error" (must be refused), "ok" (must succeed) or "any" (either, cleanly).
        verbs: restricts the case to these verbs (options only one verb has).
        child: run in a subprocess of the installed `onnxsmith`: a blocking open (a FIFO) can
            only be time-boxed from outside.
        env: environment for the run.
    """

    name: str
    group: str
    build: Callable[[Path], Inputs]
    expect: str = "error"
    verbs: tuple[str, ...] | None = None
    child: bool = False
    env: tuple[tuple[str, str], ...] = ()

    def applies_to(self, verb: str) -> bool:
        if self.verbs is not None:
            return verb in self.verbs
        spec = VERBS[verb]
        return {"model": True, "data": spec.reads_data, "output": spec.writes}[self.group]


# ---- building blocks ----------------------------------------------------------------------------


def _companions(folder: Path) -> tuple[Path, Path]:
    """A valid model and a valid data dir for it (tiny_cnn: image float32 [batch, 1, 8, 8])."""
    good = save_model(tiny_cnn(seed=1), folder / "good.onnx")
    data = folder / "good_data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i, batch in enumerate((1, 2)):
        np.savez(data / f"{i}.npz", image=rng.normal(size=(batch, 1, 8, 8)).astype(np.float32))
    return good, data


def _inputs(folder: Path, model: Path, **kw) -> Inputs:
    good, data = _companions(folder)
    return Inputs(model=model, good_model=good, good_data=data, **kw)


def _cnn_proto() -> onnx.ModelProto:
    return ir.to_proto(tiny_cnn(seed=0))


def _model_bytes(build: Callable[[], bytes], name: str = "m.onnx") -> Callable[[Path], Inputs]:
    def write(folder: Path) -> Inputs:
        path = folder / name
        path.write_bytes(build())
        return _inputs(folder, path)

    return write


def _mutated(mutate: Callable[[onnx.ModelProto], object]) -> Callable[[Path], Inputs]:
    """tiny_cnn with `mutate(proto)` applied, written without any check."""

    def build() -> bytes:
        proto = _cnn_proto()
        mutate(proto)
        return proto.SerializeToString()

    return _model_bytes(build)


def _graph(nodes, inputs, outputs, initializers=(), opsets=(("", 17),), **kw) -> bytes:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers))
    opset_ids = [helper.make_opsetid(d, v) for d, v in opsets]
    proto = helper.make_model(graph, opset_imports=opset_ids, **kw)
    proto.ir_version = 8
    return proto.SerializeToString()


X = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])


def _relu(x_type: onnx.ValueInfoProto = X, **kw) -> bytes:
    y = onnx.ValueInfoProto()
    y.CopyFrom(x_type)
    y.name = "y"
    return _graph([helper.make_node("Relu", ["x"], ["y"])], [x_type], [y], **kw)


def _input(elem_type: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", elem_type, shape)


def _raw_tensor(name: str, data_type: int, dims, raw: bytes) -> TensorProto:
    tensor = TensorProto(name=name, data_type=data_type, dims=dims)
    tensor.raw_data = raw
    return tensor


def _add_const(tensor: TensorProto) -> bytes:
    return _graph([helper.make_node("Add", ["x", tensor.name], ["y"])], [X], [Y], [tensor])


def _nested_if(depth: int) -> bytes:
    def leaf(name: str) -> onnx.GraphProto:
        out = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 4])
        return helper.make_graph([helper.make_node("Relu", ["x"], [name])], "leaf", [], [out])

    body = leaf("r0")
    for level in range(1, depth + 1):
        out = helper.make_tensor_value_info(f"r{level}", TensorProto.FLOAT, ["batch", 4])
        node = helper.make_node(
            "If", ["c"], [f"r{level}"], then_branch=body, else_branch=leaf(f"e{level}")
        )
        body = helper.make_graph([node], f"b{level}", [], [out])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    node = helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=leaf("top"))
    return _graph([node], [X, cond], [Y])


def _endless_loop() -> bytes:
    """Loop with a 2**62 trip count: ORT would run it for centuries."""
    scalar = helper.make_tensor_value_info
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["v_in", "one"], ["v_out"]),
        ],
        "body",
        [
            scalar("i", TensorProto.INT64, []),
            scalar("cond_in", TensorProto.BOOL, []),
            scalar("v_in", TensorProto.FLOAT, ["batch", 4]),
        ],
        [
            scalar("cond_out", TensorProto.BOOL, []),
            scalar("v_out", TensorProto.FLOAT, ["batch", 4]),
        ],
        [numpy_helper.from_array(np.float32(1), "one")],
    )
    constants = [
        numpy_helper.from_array(np.int64(1 << 62), "trips"),
        numpy_helper.from_array(np.array(True), "go"),
    ]
    loop = helper.make_node("Loop", ["trips", "go", "x"], ["y"], body=body)
    return _graph([loop], [X], [Y], constants)


def _recursive_function() -> bytes:
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    call = helper.make_node("f", ["a"], ["b"], domain="local")
    function = helper.make_function("local", "f", ["a"], ["b"], [call], opsets)
    proto = helper.make_model(
        helper.make_graph([helper.make_node("f", ["x"], ["y"], domain="local")], "g", [X], [Y]),
        opset_imports=opsets,
        functions=[function],
    )
    return proto.SerializeToString()


def _constant_of_shape(elements: int) -> bytes:
    shape = numpy_helper.from_array(np.array([elements], np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
        helper.make_node("ReduceSum", ["zeros"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "total"], ["y"]),
    ]
    return _graph(nodes, [X], [Y], [shape])


def _cyclic(proto: onnx.ModelProto) -> None:
    first, last = proto.graph.node[2], proto.graph.node[-1]
    first.input[0] = last.output[0]  # Conv now reads the logits computed after it


def _markup_everywhere(proto: onnx.ModelProto) -> None:
    hostile = "[/] [bold red]x[/] \x1b[2J\x1b]0;pwned\x07 \u202etxt.exe\nnext line"
    proto.producer_name = hostile
    proto.doc_string = hostile
    proto.graph.name = hostile
    proto.graph.node[3].name = hostile
    helper.set_model_props(proto, {"owner": hostile, hostile: "key"})


# ---- model cases --------------------------------------------------------------------------------


def _byte_cases() -> list[Case]:
    bases = {
        "cnn": lambda: _cnn_proto().SerializeToString(),
        "if": lambda: ir.to_proto(if_model()).SerializeToString(),
    }
    cases = []
    for base, raw in bases.items():
        for fraction in np.linspace(0.02, 0.98, 12):
            cut = _model_bytes(lambda r=raw, c=float(fraction): _cut(r(), c))
            cases.append(Case(f"truncated-{base}-{fraction:.2f}", "model", cut))
        for seed in range(20):
            flipped = _model_bytes(lambda r=raw, s=seed: _flip(r(), s))
            cases.append(Case(f"bitflip-{base}-{seed}", "model", flipped, "any"))
    good = lambda: _cnn_proto().SerializeToString()  # noqa: E731
    rng = np.random.default_rng(0)
    cases += [
        Case("empty-file", "model", _model_bytes(lambda: b"")),
        Case("zeros", "model", _model_bytes(lambda: bytes(4096))),
        Case("random-bytes", "model", _model_bytes(lambda: rng.bytes(4096))),
        Case("text", "model", _model_bytes(lambda: b"this is not a model\n" * 50)),
        Case("json", "model", _model_bytes(lambda: json.dumps({"graph": {"node": []}}).encode())),
        Case("gzipped-model", "model", _model_bytes(lambda: gzip.compress(good()))),
        Case("npz-named-onnx", "model", _model_bytes(lambda: _npz_bytes(x=np.zeros(3)))),
        Case("trailing-garbage", "model", _model_bytes(lambda: good() + b"\xff" * 64), "any"),
        Case("model-twice", "model", _model_bytes(lambda: good() * 2), "any"),
        Case("directory", "model", _directory_model),
        Case("missing-file", "model", lambda f: _inputs(f, f / "absent.onnx")),
        Case("dev-zero", "model", lambda f: _inputs(f, Path("/dev/zero"))),
        Case("fifo-model", "model", _fifo_model, child=True, verbs=("inspect",)),
        Case("symlinked-model", "model", _symlinked_model, "ok"),
    ]
    return cases


def _cut(raw: bytes, fraction: float) -> bytes:
    return raw[: int(len(raw) * fraction)]


def _flip(raw: bytes, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    data = bytearray(raw)
    for _ in range(1 + seed % 4):
        data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
    return bytes(data)


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _directory_model(folder: Path) -> Inputs:
    (folder / "m.onnx").mkdir()
    return _inputs(folder, folder / "m.onnx")


def _fifo_model(folder: Path) -> Inputs:
    os.mkfifo(folder / "m.onnx")
    return _inputs(folder, folder / "m.onnx")


def _symlinked_model(folder: Path) -> Inputs:
    target = save_model(tiny_cnn(), folder / "real.onnx")
    (folder / "m.onnx").symlink_to(target)
    return _inputs(folder, folder / "m.onnx")


def _set_input_dims(dims) -> Callable[[onnx.ModelProto], None]:
    def mutate(proto: onnx.ModelProto) -> None:
        shape = proto.graph.input[0].type.tensor_type.shape
        for dim, value in zip(shape.dim, dims, strict=True):
            dim.Clear()
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = value

    return mutate


def _set_opsets(*pairs) -> Callable[[onnx.ModelProto], None]:
    def mutate(proto: onnx.ModelProto) -> None:
        del proto.opset_import[:]
        proto.opset_import.extend(helper.make_opsetid(d, v) for d, v in pairs)

    return mutate


def _set(field: str, value) -> Callable[[onnx.ModelProto], None]:
    return lambda proto: setattr(proto, field, value)


def _rewire(node: int, source: Callable[[onnx.GraphProto], str]) -> Callable[[Path], Inputs]:
    """tiny_cnn with node `node` reading `source(graph)` as its first input."""

    def mutate(proto: onnx.ModelProto) -> None:
        proto.graph.node[node].input[0] = source(proto.graph)

    return _mutated(mutate)


def _graph_edit(edit: Callable[[onnx.GraphProto], object]) -> Callable[[Path], Inputs]:
    return _mutated(lambda proto: edit(proto.graph))


def _one_node(node: onnx.NodeProto, opsets=(("", 17),)) -> Callable[[Path], Inputs]:
    return _model_bytes(lambda: _graph([node], [X], [Y], opsets=opsets))


def _structure_cases() -> list[Case]:
    # tiny_cnn's nodes: 0-1 Constant, 2 Conv, 3 BatchNormalization, 4 Relu, 5 Dropout, ...
    oversize = _raw_tensor("w", TensorProto.FLOAT, [4], b"\0" * 64)
    huge = _raw_tensor("w", TensorProto.FLOAT, [1 << 40], b"\0" * 16)
    negative = _raw_tensor("w", TensorProto.FLOAT, [-4], b"\0" * 16)
    undefined = _raw_tensor("w", TensorProto.UNDEFINED, [4], b"\0" * 16)
    unknown_type = _raw_tensor("w", 9999, [4], b"\0" * 16)
    too_many_floats = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    too_many_floats.float_data.extend([1.0] * 9)
    strings = helper.make_tensor("w", TensorProto.STRING, [4], [b"a"] * 4)
    custom = helper.make_node("Pwn", ["x"], ["y"], domain="com.evil")
    return [
        Case("cyclic", "model", _rewire(2, lambda g: g.node[-1].output[0])),
        Case("self-loop", "model", _rewire(4, lambda g: g.node[4].output[0])),
        Case("dangling-input", "model", _rewire(4, lambda g: "ghost")),
        Case("duplicate-node-output", "model", _graph_edit(_duplicate_output)),
        Case(
            "duplicate-initializer",
            "model",
            _graph_edit(lambda g: g.initializer.append(g.initializer[0])),
        ),
        Case("duplicate-graph-input", "model", _graph_edit(lambda g: g.input.append(g.input[0]))),
        Case(
            "output-never-produced",
            "model",
            _graph_edit(lambda g: setattr(g.output[0], "name", "ghost")),
        ),
        Case("no-nodes", "model", _graph_edit(lambda g: g.ClearField("node"))),
        Case("no-graph", "model", _mutated(lambda p: p.ClearField("graph"))),
        Case(
            "node-without-outputs", "model", _graph_edit(lambda g: g.node[3].ClearField("output"))
        ),
        *[
            Case(f"ir-version-{v}", "model", _mutated(_set("ir_version", v)))
            for v in (0, 1, 2, 99, -1)
        ],
        *[
            Case(f"opset-{v}", "model", _mutated(_set_opsets(("", v))), "any")
            for v in (0, 1, 7, 999, -5)
        ],
        Case("no-opset-import", "model", _mutated(_set_opsets())),
        Case("duplicate-opset-import", "model", _mutated(_set_opsets(("", 13), ("", 17))), "any"),
        Case("ai-onnx-alias", "model", _mutated(_set_opsets(("ai.onnx", 13))), "any"),
        Case("ml-domain-99", "model", _mutated(_set_opsets(("", 13), ("ai.onnx.ml", 99))), "any"),
        Case(
            "unknown-domain-imported",
            "model",
            _one_node(custom, (("", 17), ("com.evil", 1))),
            "any",
        ),
        Case("unknown-domain-not-imported", "model", _one_node(custom)),
        Case("unknown-op", "model", _one_node(helper.make_node("Pwn", ["x"], ["y"]))),
        Case(
            "unknown-attribute", "model", _one_node(helper.make_node("Relu", ["x"], ["y"], evil=1))
        ),
        Case("wrong-attribute-type", "model", _graph_edit(_float_pads)),
        Case("conv-weight-mismatch", "model", _graph_edit(_wrong_conv_weight), "any"),
        Case(
            "huge-input-dims",
            "model",
            _mutated(_set_input_dims(["batch", 1 << 20, 1 << 20, 8])),
            "any",
        ),
        Case("int64-max-dim", "model", _mutated(_set_input_dims([2**63 - 1, 1, 8, 8])), "any"),
        Case("negative-input-dims", "model", _mutated(_set_input_dims([-5, 1, -8, 8])), "any"),
        Case("zero-input-dim", "model", _mutated(_set_input_dims([0, 1, 8, 8])), "any"),
        Case(
            "hostile-dim-names",
            "model",
            _mutated(_set_input_dims(["[/]\x1b[31m", 1, "\n", 8])),
            "any",
        ),
        Case("input-without-type", "model", _graph_edit(lambda g: g.input[0].ClearField("type"))),
        *[
            Case(f"input-{TensorProto.DataType.Name(t).lower()}", "model", _relu_of(t), "any")
            for t in (
                TensorProto.FLOAT16,
                TensorProto.DOUBLE,
                TensorProto.INT8,
                TensorProto.BFLOAT16,
                TensorProto.STRING,
                TensorProto.BOOL,
            )
        ],
        Case("sequence-input", "model", _model_bytes(_sequence_input), "any"),
        Case("initializer-oversize-raw", "model", _model_bytes(lambda: _add_const(oversize))),
        Case(
            "initializer-too-many-floats",
            "model",
            _model_bytes(lambda: _add_const(too_many_floats)),
        ),
        Case("initializer-huge-dims", "model", _model_bytes(lambda: _add_const(huge))),
        Case("initializer-negative-dims", "model", _model_bytes(lambda: _add_const(negative))),
        Case("initializer-undefined-type", "model", _model_bytes(lambda: _add_const(undefined))),
        Case("initializer-unknown-type", "model", _model_bytes(lambda: _add_const(unknown_type))),
        Case(
            "initializer-strings-into-add",
            "model",
            _model_bytes(lambda: _add_const(strings)),
            "any",
        ),
        Case("nested-if-30", "model", _model_bytes(lambda: _nested_if(30)), "any"),
        Case("concat-2000-inputs", "model", _model_bytes(_wide_concat), "any"),
        Case("recursive-function", "model", _model_bytes(_recursive_function)),
        Case(
            "constant-of-shape-4tb",
            "model",
            _model_bytes(lambda: _constant_of_shape(1 << 40)),
            "any",
        ),
        Case(
            "endless-loop",
            "model",
            _model_bytes(_endless_loop),
            "any",
            verbs=("optimize",),  # the verbs that run the model
            child=True,
            env=(("ONNXSMITH_RUN_TIMEOUT", "2"),),
        ),
        Case("markup-and-escapes-in-names", "model", _mutated(_markup_everywhere), "ok"),
        Case("huge-metadata", "model", _mutated(_huge_metadata), "ok"),
    ]


def _duplicate_output(graph: onnx.GraphProto) -> None:
    graph.node[5].output[0] = graph.node[4].output[0]


def _float_pads(graph: onnx.GraphProto) -> None:
    graph.node[2].attribute[0].CopyFrom(helper.make_attribute("pads", 1.5))


def _wrong_conv_weight(graph: onnx.GraphProto) -> None:
    weight = np.zeros((16, 3, 3, 3), np.float32)  # the input has 1 channel, not 3
    graph.initializer[0].CopyFrom(numpy_helper.from_array(weight, "conv1.w"))


def _huge_metadata(proto: onnx.ModelProto) -> None:
    helper.set_model_props(proto, {"blob": "x" * 5_000_000})


def _relu_of(elem_type: int) -> Callable[[Path], Inputs]:
    return _model_bytes(lambda: _relu(_input(elem_type, ["batch", 4])))


def _sequence_input() -> bytes:
    x = helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [])
    return _graph([helper.make_node("SequenceLength", ["x"], ["y"])], [x], [y])


def _wide_concat() -> bytes:
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8000])
    return _graph([helper.make_node("Concat", ["x"] * 2000, ["y"], axis=1)], [X], [y])


# ---- external data ------------------------------------------------------------------------------


def _external(folder: Path, **entries: str) -> Inputs:
    """tiny_cnn saved with external data in folder/in/, then every entry of `conv1.w` rewritten."""
    inner = folder / "in"
    inner.mkdir(exist_ok=True)
    path = save_model(tiny_cnn(), inner / "m.onnx", external_data=True)
    proto = onnx.load(str(path), load_external_data=False)
    tensor = next(t for t in proto.graph.initializer if t.name == "conv1.w")
    kept = {e.key: e.value for e in tensor.external_data}
    kept.update({k: v.replace("{root}", str(folder)) for k, v in entries.items()})
    del tensor.external_data[:]
    for key, value in kept.items():
        tensor.external_data.add(key=key, value=value)
    path.write_bytes(proto.SerializeToString())
    (folder / "secret.bin").write_bytes(np.ones(4096, np.float32).tobytes())
    return _inputs(folder, path)


def _external_case(name: str, expect: str = "error", prepare=None, child=False, **entries) -> Case:
    def build(folder: Path) -> Inputs:
        if prepare:
            prepare(folder)
        return _external(folder, **entries)

    # Every verb loads through `load_model`: one real process (inspect's) proves a FIFO unopened.
    verbs = ("inspect",) if child else None
    return Case(f"external-{name}", "model", build, expect, verbs=verbs, child=child)


def _outside_fifo(folder: Path) -> None:
    os.mkfifo(folder / "outside.fifo")


def _inside_fifo(folder: Path) -> None:
    (folder / "in").mkdir()
    os.mkfifo(folder / "in" / "p.data")


def _link(name: str, target: str) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        (folder / "in").mkdir(exist_ok=True)
        (folder / "in" / name).symlink_to(target.replace("{root}", str(folder)))

    return prepare


def _external_cases() -> list[Case]:
    length = str(16 * 1 * 3 * 3 * 4)
    return [
        _external_case("parent-escape", location="../../etc/passwd"),
        _external_case("absolute", location="/etc/passwd"),
        _external_case("outside-secret", location="../secret.bin"),
        _external_case(
            "fifo-outside-relative", prepare=_outside_fifo, child=True, location="../outside.fifo"
        ),
        _external_case(
            "fifo-outside-absolute",
            prepare=_outside_fifo,
            child=True,
            location="{root}/outside.fifo",
        ),
        _external_case(
            "symlink-to-passwd", prepare=_link("l.data", "/etc/passwd"), location="l.data"
        ),
        _external_case(
            "symlink-to-outside-fifo",
            prepare=lambda f: _outside_fifo(f) or _link("f.data", "{root}/outside.fifo")(f),
            child=True,
            location="f.data",
        ),
        _external_case("symlinked-folder", prepare=_link("etc", "/etc"), location="etc/passwd"),
        _external_case("dotdot-inside", location="sub/../m.onnx.data"),
        _external_case("nul-byte", location="m.onnx.data\0.txt"),
        _external_case("empty-location", location=""),
        _external_case("dot", location="."),
        _external_case("missing-file", location="absent.data"),
        _external_case("fifo-inside", prepare=_inside_fifo, child=True, location="p.data"),
        _external_case("negative-offset", offset="-5"),
        _external_case("non-numeric-offset", offset="abc"),
        _external_case("length-mismatch", length="4"),
        _external_case("offset-past-end", offset=str(1 << 40)),
        _external_case("huge-length", length=str(1 << 62)),
        _external_case("unknown-key", "ok", evil="1"),
        _external_case("checksum-garbage", "ok", checksum="not-a-sha1"),
        _external_case("model-file-as-data", "any", location="m.onnx", offset="0", length=length),
        Case("external-truncated-file", "model", _truncated_external),
        Case("external-in-if-branch", "model", _external_in_subgraph),
        Case("external-in-constant-node", "model", _external_in_constant),
        Case("external-sparse-initializer", "model", _external_sparse),
    ]


def _truncated_external(folder: Path) -> Inputs:
    inputs = _external(folder)
    data = inputs.model.with_name("m.onnx.data")
    data.write_bytes(data.read_bytes()[:100])
    return inputs


def _escaping_tensor(name: str, dims=(4,), data_type=TensorProto.FLOAT) -> TensorProto:
    tensor = TensorProto(name=name, data_type=data_type, dims=list(dims))
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "16")):
        tensor.external_data.add(key=key, value=value)
    return tensor


def _external_in_subgraph(folder: Path) -> Inputs:
    out = helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch", 4])
    then = helper.make_graph(
        [helper.make_node("Add", ["x", "k"], ["t"])], "then", [], [out], [_escaping_tensor("k")]
    )
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [], [out])
    other.output[0].name = "e"
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    node = helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)
    return _in_subfolder(folder, _graph([node], [X, cond], [Y]))


def _external_in_constant(folder: Path) -> Inputs:
    nodes = [
        helper.make_node("Constant", [], ["k"], value=_escaping_tensor("k")),
        helper.make_node("Add", ["x", "k"], ["y"]),
    ]
    return _in_subfolder(folder, _graph(nodes, [X], [Y]))


def _external_sparse(folder: Path) -> Inputs:
    indices = numpy_helper.from_array(np.array([0, 2], np.int64), "i")
    sparse = helper.make_sparse_tensor(_escaping_tensor("k", dims=(2,)), indices, [4])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "k"], ["y"])], "g", [X], [Y], sparse_initializer=[sparse]
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return _in_subfolder(folder, proto.SerializeToString())


def _in_subfolder(folder: Path, raw: bytes) -> Inputs:
    (folder / "in").mkdir()
    (folder / "secret.bin").write_bytes(np.ones(4096, np.float32).tobytes())
    path = folder / "in" / "m.onnx"
    path.write_bytes(raw)
    return _inputs(folder, path)


# ---- data dirs ----------------------------------------------------------------------------------


def _image(batch: int = 1, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(batch, 1, 8, 8)).astype(dtype)


def _data_dir(write: Callable[[Path], object]) -> Callable[[Path], Inputs]:
    def build(folder: Path) -> Inputs:
        model = save_model(tiny_cnn(), folder / "m.onnx")
        data = folder / "data"
        data.mkdir()
        target = write(data)
        return _inputs(folder, model, data=target if isinstance(target, Path) else data)

    return build


def _npz(**arrays) -> Callable[[Path], None]:
    return lambda data: np.savez(data / "000.npz", **arrays)


def _raw_npz(raw: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda data: (data / "000.npz").write_bytes(raw() if callable(raw) else raw)


def _member(name: str, payload: bytes, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr(name, payload)
    return buffer.getvalue()


def _npy_header(descr: str, shape: str) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (63 - len(text) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


def _forged_file_size() -> bytes:
    """A stored member whose directory entry claims 1 TB of uncompressed data."""
    raw = bytearray(_member("image.npy", _npy_header("<f4", "(1, 1, 8, 8)") + bytes(256)))
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (1 << 31).to_bytes(4, "little")  # uncompressed size
    return bytes(raw)


def _many_files(data: Path) -> None:
    for i in range(300):
        np.savez(data / f"{i:03d}.npz", image=_image())


def _data_cases() -> list[Case]:
    good = _npz_bytes(image=_image())
    image_header = _npy_header("<f4", "(1, 1, 8, 8)")
    writers: list[tuple[str, Callable[[Path], object]]] = [
        ("wrong-key", _npz(pixels=_image())),
        ("extra-key", _npz(image=_image(), extra=_image())),
        ("no-arrays", _npz()),
        ("float64", _npz(image=_image(dtype=np.float64))),
        ("float16", _npz(image=_image(dtype=np.float16))),
        ("int64", _npz(image=_image().astype(np.int64))),
        ("bool", _npz(image=_image() > 0)),
        ("complex", _npz(image=_image().astype(np.complex64))),
        ("unicode", _npz(image=np.array(["a", "b"]))),
        ("pickled-object", _npz(image=np.array([{"a": 1}], dtype=object))),
        ("structured", _npz(image=np.zeros((1, 1, 8, 8), [("a", "<f4")]))),
        ("datetime", _npz(image=np.zeros((1, 1, 8, 8), "datetime64[s]"))),
        ("rank-3", _npz(image=_image()[0])),
        ("rank-5", _npz(image=_image()[None])),
        ("scalar", _npz(image=np.float32(1))),
        ("wrong-fixed-dim", _npz(image=np.zeros((1, 1, 9, 8), np.float32))),
        ("nan", _npz(image=np.full((1, 1, 8, 8), np.nan, np.float32))),
        ("inf", _npz(image=np.full((1, 1, 8, 8), np.inf, np.float32))),
        ("minus-inf", _npz(image=np.full((1, 1, 8, 8), -np.inf, np.float32))),
        ("hostile-key", _npz(**{"[/]\x1b[31m\nimage": _image()})),
        ("empty-file", _raw_npz(b"")),
        ("npy-renamed", _raw_npz(lambda: _npy_bytes(_image()))),
        ("pickle-renamed", _raw_npz(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.")),
        ("text-renamed", _raw_npz(b"image,1,2,3\n")),
        ("forged-huge-shape", _raw_member(_npy_header("<f4", "(1099511627776,)") + bytes(64))),
        ("forged-negative-shape", _raw_member(_npy_header("<f4", "(-3, 2)") + bytes(64))),
        ("forged-short-data", _raw_member(image_header + bytes(100))),
        ("forged-header-code", _raw_member(_npy_header("<f4", "__import__('os')"))),
        ("forged-header-object", _raw_member(_npy_header("|O", "(1,)") + bytes(8))),
        ("malformed-header", _raw_member(b"\x93NUMPY\x01\x00\x10\x00{'descr': 'O'}   \n")),
        ("not-an-npy-member", _raw_member(b"garbage bytes")),
        (
            "bzip2-member",
            _raw_npz(lambda: _member("image.npy", _npy_bytes(_image()), zipfile.ZIP_BZIP2)),
        ),
        ("forged-file-size", _raw_npz(_forged_file_size)),
        ("fifo-file", lambda data: os.mkfifo(data / "000.npz")),
        ("folder-named-npz", lambda data: (data / "000.npz").mkdir()),
        ("symlink-to-passwd", lambda data: (data / "000.npz").symlink_to("/etc/passwd")),
        ("no-npz-files", lambda data: (data / "readme.txt").write_text("nothing here")),
        ("missing-dir", lambda data: data / "absent"),
        ("npy-file-as-data", lambda data: _write(data / "x.npy", _npy_bytes(_image()))),
        (
            "single-file-mismatched-axes",
            lambda data: _savez(data / "all.npz", a=_image(3), b=_image(2)),
        ),
        ("single-file-empty-axis", lambda data: _savez(data / "all.npz", image=_image(0))),
    ]
    writers += [(f"truncated-{f}", _raw_npz(good[: int(len(good) * f)])) for f in (0.1, 0.5, 0.9)]
    return [
        *[Case(f"data-{name}", "data", _data_dir(write)) for name, write in writers],
        *[
            Case(f"data-bitflip-{seed}", "data", _data_dir(_raw_npz(_flip(good, seed))), "any")
            for seed in range(1, 6)
        ],
        Case("data-fifo-as-data-path", "data", _data_dir(_fifo_path), child=True),
        Case("data-300-files", "data", _data_dir(_many_files), "ok"),
        Case("data-zero-batch", "data", _data_dir(_npz(image=_image(0))), "any"),
    ]


def _raw_member(payload: bytes) -> Callable[[Path], None]:
    return _raw_npz(_member("image.npy", payload))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _write(path: Path, raw: bytes) -> Path:
    path.write_bytes(raw)
    return path


def _savez(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _fifo_path(data: Path) -> Path:
    os.mkfifo(data / "stream.npz")
    return data / "stream.npz"


# ---- output paths and options -------------------------------------------------------------------


def _output(make_target: Callable[[Path, Path], Path], external: bool = False, options=()):
    """A valid model in folder/m.onnx; `make_target(folder, model)` returns the hostile -o."""

    def build(folder: Path) -> Inputs:
        model = save_model(tiny_cnn(), folder / "m.onnx", external_data=external)
        filled = tuple(o.format(model=model, folder=folder) for o in options)
        return _inputs(folder, model, output=make_target(folder, model), options=filled)

    return build


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _mkfifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _symlink(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path


def _hardlink(path: Path, target: Path) -> Path:
    os.link(target, path)
    return path


def _output_cases() -> list[Case]:
    fresh = lambda f, m: f / "fresh.onnx"  # noqa: E731
    return [
        Case("output-is-directory", "output", _output(lambda f, m: _mkdir(f / "o.onnx"))),
        Case("output-is-fifo", "output", _output(lambda f, m: _mkfifo(f / "o.onnx"))),
        Case("output-folder-missing", "output", _output(lambda f, m: f / "absent" / "o.onnx")),
        Case("output-is-input", "output", _output(lambda f, m: m)),
        Case("output-symlink-to-input", "output", _output(lambda f, m: _symlink(f / "o.onnx", m))),
        Case(
            "output-hardlink-to-input", "output", _output(lambda f, m: _hardlink(f / "o.onnx", m))
        ),
        Case(
            "output-is-input-data", "output", _output(lambda f, m: f / "m.onnx.data", external=True)
        ),
        Case("output-empty-name", "output", _output(lambda f, m: Path(""))),
        Case("output-markup-name", "output", _output(lambda f, m: f / "[bold]o.onnx"), "ok"),
        Case("output-escape-name", "output", _output(lambda f, m: f / "\x1b[2Jo\n.onnx"), "ok"),
        Case(
            "output-replaces-old",
            "output",
            _output(lambda f, m: _write(f / "o.onnx", b"old")),
            "ok",
        ),
        *[_optimize_option(name, options) for name, options in OPTIMIZE_OPTIONS.items()],
        Case(
            "bad-run-timeout-env",
            "output",
            _output(fresh),
            verbs=("optimize",),
            env=(("ONNXSMITH_RUN_TIMEOUT", "soon"),),
        ),
    ]


OPTIMIZE_OPTIONS = {
    "json-onto-input": ["--json", "{model}"],
    "json-is-directory": ["--json", "{folder}"],
    "json-is-output": ["--json", "{folder}/fresh.onnx"],
    **{f"opset-{v}": ["--opset", v] for v in ("-1", "0", "999", str(10**30), "seventeen", "17.5")},
    "unknown-option": ["--evil"],
    "data-is-the-model": ["--data", "{model}"],
}


def _optimize_option(name: str, options: list[str]) -> Case:
    build = _output(lambda f, m: f / "fresh.onnx", options=options)
    return Case(f"optimize-{name}", "output", build, verbs=("optimize",))


def corpus() -> list[Case]:
    """Every case, names unique."""
    cases = [
        *_byte_cases(),
        *_structure_cases(),
        *_external_cases(),
        *_data_cases(),
        *_output_cases(),
    ]
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate case names: {sorted(duplicates)}")
    return cases


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/hostile.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for case in corpus():
        folder = out / case.name
        folder.mkdir(parents=True)
        inputs = case.build(folder)
        print(f"{case.name:45} {case.group:7} {case.expect:6} {inputs.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
