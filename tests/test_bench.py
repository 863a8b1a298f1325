"""`onnxsmith bench` and `runtime.benchmark`: schema, orderings, sweeps, memory, accuracy, errors.

No timing thresholds: only orderings with wide margins (a model with 20 extra 256x256 MatMuls
is far more than 1.5x slower than the same graph without them; a model against itself stays
within 2x either way even on a loaded 2-core machine, because rounds are interleaved).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from benchmodels import fixed_batch_model, matmul_model, write_feeds
from onnxsmith.runtime.batching import batch_feeds, batch_inputs
from onnxsmith.runtime.benchmark import BenchOptions, benchmark
from onnxsmith.runtime.machine import MachineInfo, machine_info
from onnxsmith.runtime.memory import measure_peak_rss
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import LatencyStats, time_interleaved

from onnxsmith.errors import DataError, UsageError
from onnxsmith.io import load_model
from onnxsmith.signature import TensorSpec

MODEL_KEYS = {
    "path",
    "latency_ms",
    "throughput_per_s",
    "ratio_p50_vs_first",
    "ci95_ratio",
    "peak_rss_mb",
    "session_init_ms",
    "file_mb",
    "params",
    "metric",
    "sweep",
}
LATENCY_KEYS = {"p50", "p90", "p99", "mean", "std", "min"}
FAST = BenchOptions(runs=30, warmup=3, memory=False)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(base model, same graph + 20 MatMuls, data dir)."""
    base = matmul_model(tmp_path / "base.onnx")
    slow = matmul_model(tmp_path / "slow.onnx", extra=20)
    return base, slow, write_feeds(tmp_path / "feeds")


def _feeds(count: int = 3, rows: int = 1, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((rows, 256)).astype(np.float32)} for _ in range(count)]


def test_cli_json_schema(cli, pair, tmp_path):
    base, slow, feeds = pair
    out = tmp_path / "r.json"
    code, stdout, err = cli("bench", base, slow, "--data", feeds, "--runs", 15, "--json", out)
    assert code == 0, err
    assert "1 (base)" in stdout and "interleaved rounds" in stdout
    data = json.loads(out.read_text())
    assert set(data) == {"models", "machine", "options"}
    assert [m["path"] for m in data["models"]] == [str(base), str(slow)]
    for model in data["models"]:
        assert set(model) == MODEL_KEYS
        assert set(model["latency_ms"]) == LATENCY_KEYS
        assert len(model["ci95_ratio"]) == 2 and model["metric"] == {}
        assert model["peak_rss_mb"] > model["sweep"][0]["model_rss_mb"] > 0
        assert model["params"] == 256 * 256 * (1 if model["path"] == str(base) else 21)
        assert model["file_mb"] > 0 and model["session_init_ms"] > 0
    assert data["models"][0]["ratio_p50_vs_first"] == 1.0
    machine = data["machine"]
    for key in ("cpu_model", "logical_cores", "isa_flags", "onnxruntime", "providers_available"):
        assert key in machine
    assert {"avx2", "avx512", "vnni"} <= set(machine)
    assert machine["onnxruntime"] == ort.__version__
    options = data["options"]
    assert options["runs"] == 15 and options["data"] == str(feeds)
    assert options["feeds"] == {"x": ["float32[1x256]"]}
    assert "fresh Python process" in options["memory_method"]


def test_percentiles_are_ordered(pair):
    base, slow, _ = pair
    result = benchmark([base, slow], _feeds(), options=FAST)
    for model in result.models:
        lat = model.latency
        assert lat.min <= lat.p50 <= lat.p90 <= lat.p99
        assert lat.min <= lat.mean and lat.std >= 0
        assert len(model.sweep[0].samples_ms) == 30


def test_model_against_itself_is_about_one(pair):
    base, _, _ = pair
    result = benchmark([base, base], _feeds(), options=BenchOptions(runs=60, memory=False))
    twin = result.models[1]
    assert 0.5 < twin.ratio < 2.0
    assert twin.ci95_ratio[0] <= twin.ratio <= twin.ci95_ratio[1]


def test_model_with_extra_work_is_measured_slower(pair):
    base, slow, _ = pair
    result = benchmark([base, slow], _feeds(), options=BenchOptions(runs=60, memory=False))
    fast_p50, slow_p50 = (m.latency.p50 for m in result.models)
    assert slow_p50 > fast_p50
    assert result.models[1].ratio > 1.5 and result.models[1].ci95_ratio[0] > 1.0


def test_in_memory_models_and_names(pair):
    base, _, _ = pair
    model = load_model(base)
    result = benchmark([base, model], _feeds(), options=FAST, names=["file", "memory"])
    assert [m.path for m in result.models] == ["file", "memory"]
    assert result.models[1].params == result.models[0].params


def test_batch_sweep_shapes_and_throughput(pair):
    base, _, _ = pair
    options = BenchOptions(runs=10, warmup=1, batches=(1, 4), threads=(1, 2), memory=False)
    result = benchmark([base], _feeds(), options=options)
    sweep = result.models[0].sweep
    assert [(p.threads, p.batch) for p in sweep] == [(1, 1), (1, 4), (2, 1), (2, 4)]
    for point in sweep:
        expected = point.batch * 1e3 / point.latency.mean
        assert point.throughput_per_s == pytest.approx(expected, rel=1e-9)
    assert [p["batch"] for p in result.as_dict()["models"][0]["sweep"]] == [1, 4, 1, 4]


def test_batch_feeds_stack_following_feeds_then_repeat():
    specs = [
        TensorSpec("x", np.dtype(np.float32), ("N", 2)),
        TensorSpec("flag", np.dtype(np.int64), ()),
    ]
    feeds = [{"x": np.full((1, 2), i, np.float32), "flag": np.array(i, np.int64)} for i in range(3)]
    assert batch_inputs(specs) == ["x"]
    stacked = batch_feeds(feeds, specs, 5)
    assert [f["x"].shape for f in stacked] == [(5, 2)] * 3
    assert stacked[1]["x"][:, 0].tolist() == [1, 2, 0, 1, 2]  # following feeds, wrapping round
    assert [int(f["flag"]) for f in stacked] == [0, 1, 2]  # not batched: unchanged
    assert batch_feeds(feeds, specs, 2)[2]["x"][:, 0].tolist() == [2, 0]


def test_batch_feeds_never_mix_row_shapes():
    specs = [TensorSpec("ids", np.dtype(np.int64), ("batch", "seq"))]
    feeds = [{"ids": np.zeros((1, 5), np.int64)}, {"ids": np.ones((1, 7), np.int64)}]
    stacked = batch_feeds(feeds, specs, 3)
    assert stacked[0]["ids"].shape == (3, 5) and not stacked[0]["ids"].any()
    assert stacked[1]["ids"].shape == (3, 7) and stacked[1]["ids"].all()


def test_batch_needs_a_symbolic_batch_dim(cli, tmp_path):
    model = fixed_batch_model(tmp_path / "fixed.onnx")
    code, _, err = cli("bench", model, "--runs", 3, "--batch", "1,2", "--no-memory")
    assert code == 2 and err.count("\n") == 1
    assert "--batch needs an input whose first dim is symbolic" in err and "drop --batch" in err


def test_peak_memory_tracks_weight_size(tmp_path):
    """A model with 16 MiB more weights needs at least 12 MiB more resident memory."""
    small = matmul_model(tmp_path / "small.onnx", width=64)
    big = matmul_model(tmp_path / "big.onnx", width=2048)
    feeds_small = [{"x": np.ones((1, 64), np.float32)}]
    feeds_big = [{"x": np.ones((1, 2048), np.float32)}]
    small_usage = measure_peak_rss(small, feeds_small)
    big_usage = measure_peak_rss(big, feeds_big)
    assert small_usage is not None and big_usage is not None
    assert 10 < small_usage.baseline_rss_mb < small_usage.peak_rss_mb
    assert big_usage.model_rss_mb > small_usage.model_rss_mb + 12


def test_time_interleaved_rounds_and_callback(pair):
    base, slow, _ = pair
    sessions = [create_session(base), create_session(slow)]
    done: list[int] = []
    samples = time_interleaved(sessions, _feeds(), warmup=0, runs=7, on_round=done.append)
    assert [len(s) for s in samples] == [7, 7] and done == list(range(1, 8))
    timed = time_interleaved(sessions, _feeds(), warmup=0, runs=None, seconds=1e-6, min_runs=5)
    assert [len(s) for s in timed] == [5, 5]


def test_latency_stats_against_numpy():
    samples = np.array([4.0, 1.0, 3.0, 2.0, 10.0])
    stats = LatencyStats.of(samples)
    assert (stats.p50, stats.min, stats.mean) == (3.0, 1.0, 4.0)
    assert stats.p90 == pytest.approx(7.6) and stats.std == pytest.approx(np.std(samples, ddof=1))


def test_machine_info_reads_this_machine():
    info = machine_info()
    assert info.logical_cores >= 1 and info.usable_cores >= 1
    assert info.onnxruntime == ort.__version__
    assert "CPUExecutionProvider" in info.providers_available
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert info.avx2 == (" avx2" in flags)


def test_machine_info_vnni_flags():
    base = machine_info()
    fields = {**base.__dict__, "isa_flags": ("avx2", "avx_vnni")}
    assert MachineInfo(**fields).vnni and not MachineInfo(**fields).avx512
    fields["isa_flags"] = ("avx2",)
    assert not MachineInfo(**fields).vnni
    assert MachineInfo(**fields).as_dict()["avx2"] is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"runs": 5, "seconds": 1.0},
        {"runs": 0},
        {"batches": (0,)},
        {"threads": (0,)},
        {"optimization": "max"},
    ],
)
def test_bad_options_are_usage_errors(kwargs):
    with pytest.raises(UsageError, match="bench: "):
        BenchOptions(**kwargs)


def test_feeds_that_do_not_fit_a_model(pair):
    base, _, _ = pair
    with pytest.raises(DataError, match="expects 'x'"):
        benchmark([base], [{"y": np.zeros((1, 256), np.float32)}], options=FAST)
    with pytest.raises(DataError, match="expects 256 at axis 1"):
        benchmark([base], [{"x": np.zeros((1, 3), np.float32)}], options=FAST)
    with pytest.raises(DataError, match="no feeds"):
        benchmark([base], [], options=FAST)


def test_progress_reports_every_phase(pair):
    base, _, _ = pair
    seen: dict[str, tuple[float, float]] = {}
    benchmark(
        [base],
        _feeds(),
        options=BenchOptions(runs=5, warmup=2),
        progress=lambda task, done, total: seen.__setitem__(task, (done, total)),
    )
    assert seen["timing threads=default"] == (5, 5)
    assert seen["warm-up threads=default"] == (3, 3)  # at least one pass over the 3 feeds
    assert seen["peak memory threads=default"] == (1, 1)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--data", "missing-dir"], 1, "does not exist"),
        (["--providers", "cpu,nosuch"], 2, "provider 'nosuch' is not available"),
        (["--metric", "accuracy", "--reference", "{base}"], 2, "unknown metric 'accuracy'"),
        (["--metric", "cosine"], 2, "--metric needs --reference"),
        (["--batch", "1,x"], 2, "--batch expects comma-separated positive integers"),
        (["--runs", "3", "--seconds", "1"], 2, "not allowed with argument"),
        (["--labels", "{feeds}"], 2, "--labels needs --eval"),
        (["--data", "{empty}"], 1, "holds no .npz files"),
        (["--data", "{badkey}"], 1, "lacks 'x' and has unknown 'z'"),
        (["--reference", "{base}", "--output", "nope"], 2, "has no output 'nope'"),
    ],
)
def test_cli_errors_are_one_line(cli, pair, tmp_path, args, code, message):
    base, _, feeds = pair
    (tmp_path / "empty").mkdir()
    (tmp_path / "badkey").mkdir()
    np.savez(tmp_path / "badkey" / "0.npz", z=np.zeros((1, 256), np.float32))
    paths = {"base": base, "feeds": feeds, "empty": tmp_path / "empty"}
    paths["badkey"] = tmp_path / "badkey"
    args = [a.format(**paths) for a in args]
    got, _, err = cli("bench", base, "--runs", "3", "--no-memory", *args)
    assert got == code, err
    assert err.startswith("onnxsmith: error:") and err.count("\n") == 1
    assert message in err


def test_cli_labels_dir_missing_a_file(cli, pair, tmp_path):
    base, _, feeds = pair
    labels = tmp_path / "labels"
    labels.mkdir()
    np.savez(labels / "000.npz", label=np.array([1]))
    code, _, err = cli("bench", base, "--data", feeds, "--labels", labels, "--runs", 3)
    assert code == 1 and err.count("\n") == 1
    assert "label file" in err and "001.npz is missing" in err


def test_seconds_budget_keeps_min_runs(pair):
    base, _, _ = pair
    options = BenchOptions(seconds=0.01, min_runs=7, warmup=0, memory=False)
    result = benchmark([base], _feeds(), options=options)
    assert len(result.models[0].sweep[0].samples_ms) >= 7
    assert result.as_dict()["options"]["seconds"] == 0.01
    assert BenchOptions().as_dict()["seconds"] == 5.0  # the default budget is written down
