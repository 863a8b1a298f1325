"""`bench --report`: report.json/.md/.html exist, the page is self-contained with its plots."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmodels import matmul_model, write_feeds
from onnxsmith.runtime.accuracy import AccuracySpec
from onnxsmith.runtime.benchmark import BenchOptions, benchmark

from onnxsmith.errors import UsageError
from onnxsmith.report import require_matplotlib, write_report
from onnxsmith.report.plots import _front

pytest.importorskip("matplotlib")


def test_cli_report_with_batch_sweep_and_accuracy(cli, tmp_path):
    base = matmul_model(tmp_path / "base.onnx", width=32)
    slow = matmul_model(tmp_path / "slow.onnx", width=32, extra=20)
    feeds = write_feeds(tmp_path / "feeds", count=3, width=32)
    report = tmp_path / "report"
    args = ["--data", feeds, "--reference", base, "--batch", "1,4", "--runs", 8, "--no-memory"]
    code, _, err = cli("bench", base, slow, *args, "--report", report)
    assert code == 0, err
    assert sorted(p.name for p in report.iterdir()) == ["report.html", "report.json", "report.md"]
    page = (report / "report.html").read_text()
    # latency distributions, ratios, accuracy-vs-latency Pareto, throughput vs batch
    assert (
        len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]{500,}"', page))
        == 4
    )
    for title in ("latency distributions", "Pareto", "throughput vs batch size"):
        assert title in page
    assert "run with --threads 1,2,4" in page  # the plot it could not draw says how to get it
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched: readable offline
    data = json.loads((report / "report.json").read_text())
    assert [p["batch"] for p in data["models"][1]["sweep"]] == [1, 4]
    assert data["models"][1]["metric"]["reference"]["cosine"] < 0.99
    markdown = (report / "report.md").read_text()
    assert "| slow.onnx |" in markdown and "### sweep" in markdown and "### machine" in markdown


def test_report_without_accuracy_or_sweep_explains_missing_plots(tmp_path):
    model = matmul_model(tmp_path / "m.onnx", width=16)
    result = benchmark(
        [model], [{"x": np.ones((1, 16), np.float32)}], options=BenchOptions(runs=5, memory=False)
    )
    paths = write_report(result, tmp_path / "out")
    page = paths[2].read_text()
    assert page.count("data:image/png;base64,") == 1  # the latency distribution only
    assert "run with --reference and/or --labels" in page and "run with --batch 1,8,32" in page


def test_report_plots_threads_sweep(tmp_path):
    model = matmul_model(tmp_path / "m.onnx", width=16)
    ref = matmul_model(tmp_path / "ref.onnx", width=16, seed=3)
    feeds = [{"x": np.ones((1, 16), np.float32)}]
    result = benchmark(
        [model, ref],
        feeds,
        options=BenchOptions(runs=5, threads=(1, 2), memory=False),
        accuracy=AccuracySpec(data=feeds, reference=ref),
    )
    page = write_report(result, tmp_path / "out")[2].read_text()
    assert 'alt="latency vs intra-op threads"' in page and 'alt="accuracy vs latency' in page


def test_pareto_front_respects_metric_direction():
    points = [
        (1.0, 0.90, "fast"),
        (2.0, 0.95, "mid"),
        (3.0, 0.93, "slow-worse"),
        (4.0, 0.99, "best"),
    ]
    assert [p[2] for p in _front(points, higher_better=True)] == ["fast", "mid", "best"]
    errors = [(1.0, 0.5, "fast"), (2.0, 0.7, "worse"), (3.0, 0.1, "slow")]
    assert [p[2] for p in _front(errors, higher_better=False)] == ["fast", "slow"]


def test_report_needs_matplotlib(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    with pytest.raises(UsageError, match=r"pip install 'onnxsmith\[bench\]'"):
        require_matplotlib()
    model = matmul_model(tmp_path / "m.onnx", width=8)
    code, _, err = cli("bench", model, "--report", tmp_path / "out", "--runs", 3)
    assert code == 2 and "--report needs matplotlib" in err
    assert not Path(tmp_path / "out").exists()
