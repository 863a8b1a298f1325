"""Every ```python block of README.md and docs/*.md runs as written.

Each block is executed in a fresh namespace, in its own temporary folder holding the files the
docs name: `model.onnx` (the built-in tiny CNN, input `image` [batch, 1, 8, 8]), members
`a.onnx`, `b.onnx`, `c.onnx` (the same CNN with other seeds), and data dirs of real
scikit-learn digits at 8x8: `calib/`, `eval/` with `eval_labels/`, `train/` with
`train_labels/`. A block that needs torch is skipped only when torch is not installed.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from onnxsmith.digits import load_digits_split, write_feeds, write_labels
from onnxsmith.io import save_model
from onnxsmith.samples import tiny_cnn

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
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


def _needs_torch(code: str) -> bool:
    return bool(re.search(r"\bimport torch\b|onnxsmith\.exporter|onnxsmith\.(export|distill)\b", code))


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


def test_the_docs_have_python_blocks_for_the_public_api():
    code = "\n".join(block for _, block in BLOCKS)
    missing = [name for name in PUBLIC_API if name not in code]
    assert not missing, f"no docs snippet shows {missing}"


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[i for i, _ in BLOCKS])
def test_snippet_runs(code: str, files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if _needs_torch(code) and importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch (pip install 'onnxsmith[torch]')")
    work = tmp_path / "work"
    shutil.copytree(files, work)
    monkeypatch.chdir(work)
    exec(compile(code, "<docs snippet>", "exec"), {"__name__": "__docs_snippet__"})
