"""The `bench --report` folder: report.json, report.md and a self-contained report.html."""

from __future__ import annotations

import json
from pathlib import Path

from onnxsmith.errors import OnnxsmithError
from onnxsmith.report.html_page import render_html
from onnxsmith.report.markdown import render_markdown
from onnxsmith.report.plots import all_plots, require_matplotlib
from onnxsmith.runtime.benchmark import BenchmarkResult

__all__ = ["require_matplotlib", "write_report"]


def write_report(result: BenchmarkResult, folder: str | Path) -> list[Path]:
    """Writes report.json, report.md and report.html into `folder` (created if needed).

    Raises:
        UsageError: matplotlib (the `bench` extra) is not installed.
        OnnxsmithError: the folder cannot be written.
    """
    require_matplotlib()
    folder = Path(folder)
    pages = {
        "report.json": json.dumps(result.as_dict(), indent=2, default=str) + "\n",
        "report.md": render_markdown(result),
        "report.html": render_html(result, all_plots(result)),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in pages.items():
            (folder / name).write_text(text, encoding="utf-8")
    except OSError as e:
        raise OnnxsmithError(
            f"bench: cannot write the report to {folder} ({e.strerror or e})"
        ) from e
    return [folder / name for name in pages]
