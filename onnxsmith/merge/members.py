"""Members as the merge sees them: private copies at the common opset, prefixed, with their
interface (inputs and outputs by the names the merge matches on) kept apart from the graph."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx_ir as ir
from onnx_ir.passes import common

from onnxsmith.io import SOURCE_KEY
from onnxsmith.merge.opset import upgrade
from onnxsmith.merge.rename import prefix_names


@dataclasses.dataclass
class Member:
    """One member model, ready to have its nodes moved into the merged graph.

    `inputs` and `outputs` map interface names (the original names, after `--map`) to the
    member's values; `input_names` and `output_names` map interface names back to the names in
    the member's file.
    """

    index: int
    label: str
    file: str | None
    sha256: str
    opset: int
    ir_version: int
    model: ir.Model
    inputs: dict[str, ir.Value]
    outputs: dict[str, ir.Value]
    input_names: dict[str, str]
    output_names: dict[str, str]

    @property
    def tag(self) -> str:
        return f"m{self.index}"

    @property
    def graph(self) -> ir.Graph:
        return self.model.graph

    def move_into(self, graph: ir.Graph, main: ir.Graph, feeds: Mapping[str, ir.Value]) -> None:
        """Moves this member's nodes into `graph` and its initializers into `main`, reading
        each interface input from `feeds` instead of its own graph input."""
        for name, value in self.inputs.items():
            value.replace_all_uses_with(feeds[name])
        self.graph.inputs.clear()
        self.graph.outputs.clear()
        nodes = list(self.graph)
        self.graph.remove(nodes)
        graph.extend(nodes)
        for name in list(self.graph.initializers):
            main.register_initializer(self.graph.initializers.pop(name))


def member_label(model: ir.Model, index: int) -> str:
    """`member 1 (b.onnx)`: how messages name a member."""
    source = model.meta.get(SOURCE_KEY)
    name = Path(source).name if source else (model.graph.name or "in-memory model")
    return f"member {index} ({name})"


def prepare_member(model: ir.Model, index: int, target_opset: int) -> Member:
    """A private copy of `model`: at `target_opset`, weights as main-graph initializers, every
    name prefixed with `m<index>/`, every output produced by its own node. `model` is untouched."""
    label = member_label(model, index)
    source = model.meta.get(SOURCE_KEY)
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
    copy = model.clone()
    _own_constant_tensors(copy)
    upgrade(copy, target_opset, label)
    # Weights in Constant nodes or subgraphs become main-graph initializers, so identical
    # weights of different members can be found and stored once.
    for p in (
        common.LiftConstantsToInitializersPass(size_limit=16),
        common.LiftSubgraphInitializersToMainGraphPass(),
        common.RemoveInitializersFromInputsPass(),
    ):
        p(copy)
    inputs = {v.name or "": v for v in copy.graph.inputs}
    output_names = [v.name or "" for v in copy.graph.outputs]
    _outputs_from_own_nodes(copy.graph)
    outputs = dict(zip(output_names, copy.graph.outputs, strict=True))
    prefix_names(copy, f"m{index}/")
    return Member(
        index=index,
        label=label,
        file=Path(source).name if source else None,
        sha256=_sha256(model, source),
        opset=opset,
        ir_version=model.ir_version,
        model=copy,
        inputs=inputs,
        outputs=outputs,
        input_names={name: name for name in inputs},
        output_names={name: name for name in outputs},
    )


def prepare_members(models: Sequence[ir.Model], target_opset: int) -> list[Member]:
    return [prepare_member(m, i, target_opset) for i, m in enumerate(models)]


def _own_constant_tensors(model: ir.Model) -> None:
    """Gives the copy's Constant nodes tensors of their own (copies; Constant tensors are inline).

    `Model.clone` shares tensors with the original, and renaming a value renames its tensor: a
    Constant lifted to an initializer and prefixed would rename the caller's Constant tensor to
    `m<i>/...`, changing the caller's model and the sha256 recorded for it.
    """
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        for name, attr in list(node.attributes.items()):
            if attr.type == ir.AttributeType.TENSOR:
                tensor = ir.serde.deserialize_tensor(ir.serde.serialize_tensor(attr.as_tensor()))
                node.attributes[name] = ir.AttrTensor(name, tensor, doc_string=attr.doc_string)


def _outputs_from_own_nodes(graph: ir.Graph) -> None:
    """Routes outputs that are graph inputs, initializers or repeated through an Identity, so
    every output can be renamed or rewired without touching anything else."""
    seen: set[int] = set()
    for i, value in enumerate(list(graph.outputs)):
        if value.producer() is not None and id(value) not in seen:
            seen.add(id(value))
            continue
        node = ir.node("Identity", [value])
        node.outputs[0].name = f"{value.name}.out{i}"
        node.outputs[0].type = value.type
        node.outputs[0].shape = value.shape
        graph.append(node)
        graph.outputs[i] = node.outputs[0]
        seen.add(id(node.outputs[0]))


def _sha256(model: ir.Model, source: str | None) -> str:
    if source and Path(source).is_file():
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    return hashlib.sha256(ir.to_proto(model).SerializeToString()).hexdigest()
