"""The house's layering, read from every module's imports (`ast`), with no import executed.

The `onnxsmith` namespace is installed from four folders (setup.py): `passes/` is
`onnxsmith.passes`, `runtime/` is `onnxsmith.runtime`, `exporter/` is `onnxsmith.exporter`, and
the rest of `onnxsmith/`. The layers, from the bottom:

- core: the top-level modules of `onnxsmith/` (io, errors, pipeline, signature, ...); they import
  only each other;
- `passes/` (graph transforms) and `runtime/` (what runs ONNX Runtime): each imports only the core
  and itself, never the other;
- the verbs: one package per verb under `onnxsmith/` and the exporter (export, distill); a verb
  uses the layers below and no other verb (the demo and the recipe runner chain verbs, so they
  may);
- the CLI, then the package facade (`onnxsmith/__init__.py`), which nothing imports.

Every import counts, including those inside functions. Circles between files are refused too.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "onnxsmith.passes": "passes",
    "onnxsmith.runtime": "runtime",
    "onnxsmith.exporter": "exporter",
    "onnxsmith": "onnxsmith",
}
# Top-level names under onnxsmith/ that are verbs; every other top-level module is core.
VERBS = {"quantize", "prune", "merge", "optimize", "report", "serve", "recipe", "demo"}
ORCHESTRATORS = {"demo", "recipe"}  # they chain other verbs
FACADE = "onnxsmith"
CLI_MAIN = "onnxsmith.cli.main"


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str
    target: str
    names: tuple[str, ...]
    line: int


def module_files() -> dict[str, Path]:
    """Every module of the installed namespace, by dotted name."""
    modules = {}
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str:
    """The module that defines `name` (a module itself, or a name inside one)."""
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


def imports(module: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    """The onnxsmith modules `module` imports, with the names it takes and the line."""
    edges = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "onnxsmith":
                    edges.append(
                        Edge(module, resolve(alias.name, modules), (alias.name,), node.lineno)
                    )
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            if base.split(".")[0] != "onnxsmith":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                target = full if full in modules else resolve(base, modules)
                edges.append(Edge(module, target, (alias.name,), node.lineno))
    return [e for e in edges if e.target != module]


def layer(module: str) -> tuple[str, str]:
    """(layer, unit): the unit is the verb or area a module belongs to."""
    if module == FACADE:
        return "facade", FACADE
    parts = module.split(".")
    top = parts[1]
    if top in ("passes", "runtime", "cli"):
        return top, top
    if top == "exporter":
        return "verb", "exporter"
    if top in VERBS:
        return "verb", top
    return "core", "core"


ALLOWED = {
    "core": {"core"},
    "passes": {"core", "passes"},
    "runtime": {"core", "runtime"},
    "verb": {"core", "passes", "runtime", "verb"},
    "cli": {"core", "passes", "runtime", "verb", "cli"},
    "facade": {"core", "passes", "runtime", "verb", "cli"},
}


def violations(edges: list[Edge], modules: dict[str, Path], root: Path = ROOT) -> list[str]:
    found = []
    for edge in edges:
        (src_layer, src_unit), (dst_layer, dst_unit) = layer(edge.source), layer(edge.target)
        where = f"{modules[edge.source].relative_to(root)}:{edge.line}"
        taken = f"{edge.target} ({', '.join(edge.names)})"
        if edge.target == FACADE:
            found.append(f"{where} imports the package facade: {taken} — import the module")
        elif edge.target == CLI_MAIN:
            found.append(f"{where} imports the CLI's main: {taken} — use onnxsmith.cli.verbs")
        elif dst_layer not in ALLOWED[src_layer]:
            found.append(f"{where} ({src_layer}) imports upward into {dst_layer}: {taken}")
        elif (
            src_layer == dst_layer == "verb"
            and src_unit != dst_unit
            and src_unit not in ORCHESTRATORS
        ):
            found.append(f"{where} (verb {src_unit}) imports another verb, {dst_unit}: {taken}")
    return found


def circles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge]]:
    modules = module_files()
    edges = [e for m, p in modules.items() for e in imports(m, p, modules)]
    return modules, edges


def test_no_upward_imports(graph):
    modules, edges = graph
    found = violations(edges, modules)
    assert not found, "layering broken:\n" + "\n".join(found)


def test_no_circles_between_files(graph):
    modules, edges = graph
    found = circles(edges)
    assert not found, "import circles:\n" + "\n".join(
        " ↔ ".join(str(modules[m].relative_to(ROOT)) for m in group) for group in found
    )


def test_every_top_level_package_is_classified():
    packages = {p.name for p in (ROOT / "onnxsmith").iterdir() if (p / "__init__.py").exists()}
    unknown = packages - VERBS - {"cli"}
    assert not unknown, f"new packages under onnxsmith/: {sorted(unknown)} — add them to VERBS"


def test_the_checks_catch_what_they_should(tmp_path):
    modules = {
        "onnxsmith.passes.a": tmp_path / "a.py",
        "onnxsmith.runtime.b": tmp_path / "b.py",
        "onnxsmith.quantize": tmp_path / "q.py",
        "onnxsmith.prune": tmp_path / "p.py",
    }
    modules["onnxsmith.passes.a"].write_text("from onnxsmith.runtime.b import measure\n")
    modules["onnxsmith.runtime.b"].write_text("def f():\n    import onnxsmith.quantize\n")
    modules["onnxsmith.quantize"].write_text("from onnxsmith.prune import x\n")
    modules["onnxsmith.prune"].write_text("from onnxsmith import quantize\n")
    edges = [e for m, p in modules.items() for e in imports(m, p, modules)]
    found = "\n".join(violations(edges, modules, tmp_path))
    assert "(passes) imports upward into runtime: onnxsmith.runtime.b (measure)" in found
    assert "(runtime) imports upward into verb: onnxsmith.quantize" in found
    assert "(verb quantize) imports another verb, prune" in found
    assert circles(edges) == [["onnxsmith.prune", "onnxsmith.quantize"]]
