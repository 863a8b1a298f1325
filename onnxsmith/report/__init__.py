"""The `bench --report` folder: report.json, report.md and a self-contained report.html."""

from __future__ import annotations

import json
from pathlib import Path

from onnxsmith.errors import OnnxsmithError
from onnxsmith.report.html_page import render_html
from onnxsmith.report.markdown import markdown_table, render_markdown
from onnxsmith.report.plots import all_plots, require_matplotlib
from onnxsmith.report.tables import targets_tables
from onnxsmith.runtime.benchmark import BenchmarkResult

__all__ = ["require_matplotlib", "write_report", "write_targets_report"]


def write_report(result: BenchmarkResult, folder: str | Path) -> list[Path]:
    """Writes report.json, report.md and report.html into `folder` (created if needed).

    Raises:
        UsageError: matplotlib (the `bench` extra) is not installed.
        OnnxsmithError: the folder cannot be written.
    """
    require_matplotlib()
    pages = {
        "report.json": json.dumps(result.as_dict(), indent=2, default=str) + "\n",
        "report.md": render_markdown(result),
        "report.html": render_html(result, all_plots(result)),
    }
    return _write(pages, Path(folder))


def write_targets_report(results: list[BenchmarkResult], folder: str | Path) -> list[Path]:
    """Several targets in one report: report.json (`{"targets": [...]}`) and report.md (side by
    side, then each target's tables) in `folder`, and each target's full report (with its
    report.html) in `folder/<target>/`."""
    require_matplotlib()
    folder = Path(folder)
    side_by_side = [markdown_table(t) for t in targets_tables(results)]
    sections = [
        render_markdown(r).replace("# onnxsmith bench report", f"## {r.machine.target}", 1)
        for r in results
    ]
    pages = {
        "report.json": json.dumps(
            {"targets": [r.as_dict() for r in results]}, indent=2, default=str
        )
        + "\n",
        "report.md": "\n".join(
            ["# onnxsmith bench report: several targets", "", *side_by_side, *sections]
        ),
    }
    written = _write(pages, folder)
    for result in results:
        written += write_report(result, folder / _folder_name(str(result.machine.target)))
    return written


def _folder_name(target: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in target)


def _write(pages: dict[str, str], folder: Path) -> list[Path]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in pages.items():
            (folder / name).write_text(text, encoding="utf-8")
    except OSError as e:
        raise OnnxsmithError(
            f"bench: cannot write the report to {folder} ({e.strerror or e})"
        ) from e
    return [folder / name for name in pages]
