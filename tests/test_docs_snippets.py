"""The docs stay true: every ```python block of README.md and docs/*.md runs as written, every
CLI option has its place in its verb's page, and every relative link points at a file.

Each block is executed in a fresh namespace, in its own temporary folder holding the files the
docs name: `model.onnx` (the built-in tiny CNN, input `image` [batch, 1, 8, 8]), members
`a.onnx`, `b.onnx`, `c.onnx` (the same CNN with other seeds), and data dirs of real
scikit-learn digits at 8x8: `calib/`, `eval/` with `eval_labels/`, `train/` with
`train_labels/`. A block that needs torch is skipped only when torch is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from onnxsmith.cli import demo, run
from onnxsmith.cli.verbs import verb_parsers
from onnxsmith.digits import load_digits_split, write_feeds, write_labels
from onnxsmith.io import save_model
from onnxsmith.samples import tiny_cnn

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_NEEDS_SERVER = "# needs a running server"
_TORCH = re.compile(r"\bimport torch\b|onnxsmith\.exporter|onnxsmith\.(export|distill)\b")
_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
# The public API the docs promise; each must appear in a block that runs.
PUBLIC_API = (
    "from onnxsmith.quantize import quantize",
    "prune_file(",
    "merge_models(",
    "from onnxsmith.runtime.benchmark import",
    "from onnxsmith.exporter.export import export",
)


def _blocks() -> list[tuple[str, str]]:
    """(id, code) for every python block: id is `page:line` of the block's first line."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start(1)) + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return found


BLOCKS = _blocks()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the snippets name, built once and copied for each snippet."""
    root = tmp_path_factory.mktemp("docs-files")
    save_model(tiny_cnn(seed=0), root / "model.onnx")
    for seed, name in enumerate(("a", "b", "c"), start=1):
        save_model(tiny_cnn(seed=seed), root / f"{name}.onnx")
    split = load_digits_split(side=8, seed=0, calib=64, evaluate=64)
    write_feeds(root / "calib", split.calib_x, batch=8)
    write_feeds(root / "eval", split.eval_x, batch=8)
    write_labels(root / "eval_labels", split.eval_y, batch=8)
    write_feeds(root / "train", split.train_x[:256], batch=32)
    write_labels(root / "train_labels", split.train_y[:256], batch=32)
    return root


@pytest.mark.parametrize("block_id, code", BLOCKS, ids=[block_id for block_id, _ in BLOCKS])
def test_snippet_runs(
    block_id: str, code: str, files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    if _TORCH.search(code) and importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch (pip install 'onnxsmith[torch]')")
    compiled = compile(code, block_id, "exec")
    if code.startswith(_NEEDS_SERVER):
        # A client of `onnxsmith serve`: tests/test_serve_ray.py sends the same requests to a
        # real server; here the block is only compiled.
        pytest.skip("a client snippet: needs a running server")
    work = tmp_path / "work"
    shutil.copytree(files, work)
    monkeypatch.chdir(work)
    exec(compiled, {"__name__": "__docs_snippet__"})


def test_the_public_api_is_shown_in_snippets():
    code = "\n".join(block for _, block in BLOCKS)
    missing = [name for name in PUBLIC_API if name not in code]
    assert not missing, f"no docs snippet shows {missing}"


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parsers = dict(verb_parsers())
    for name, module in (("run", run), ("demo", demo)):
        parser = argparse.ArgumentParser(prog=f"onnxsmith {name}")
        module.add_arguments(parser)
        parsers[name] = parser
    return parsers


@pytest.mark.parametrize("verb, parser", sorted(_parsers().items()))
def test_every_option_is_on_its_verb_page(verb: str, parser: argparse.ArgumentParser):
    page = DOCS / f"{verb}.md"
    assert page.is_file(), f"{verb} has no reference page {page.relative_to(ROOT)}"
    text = page.read_text()
    flags = {flag for action in parser._actions for flag in action.option_strings}
    undocumented = sorted(f for f in flags - {"-h", "--help"} if f"`{f}" not in text)
    assert not undocumented, f"{page.name} does not document {undocumented}"


def test_every_verb_has_a_row_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [verb for verb in _parsers() if f"[docs/{verb}.md](docs/{verb}.md)" not in readme]
    assert not missing, f"README.md's verb table lacks {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_point_at_files(page: Path):
    targets = [m.group(1) for m in _LINK.finditer(page.read_text())]
    broken = [t for t in targets if "://" not in t and not (page.parent / t).exists()]
    assert not broken, f"{page.name} links to missing {broken}"
