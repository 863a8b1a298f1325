"""Does `onnxsmith bench` measure what a plain stopwatch measures? And what does it cost per run?

For two pairs of real models with the same input (PP-OCRv4 rec vs the mobile cls model, far
apart; PP-OCRv4 det vs the same det after `onnxsmith optimize`, close together), the p50 ratio
reported by `onnxsmith.runtime.benchmark.benchmark` is compared with the p50 ratio of an
independent timer written here from scratch (plain `ort.InferenceSession`, A then B each round,
`time.perf_counter_ns`, no shared code with the harness). ORT's C++ `onnxruntime_perf_test` is
not in the onnxruntime wheel; the script says whether it is on PATH. Harness and stopwatch
alternate `--repeats` times so drift on the machine lands on both. Pass: every harness ratio
within 10 % of the stopwatch ratio taken right after it.

Overhead: on a one-node model (a Relu on 16 floats, where any overhead shows), (a) the harness's
p50 against the stopwatch's p50 — cost inside the timed region — and (b) wall time of the timing
loop minus the time inside runs, per run — the loop's own cost outside it.

Both timers use single-threaded sessions by default (`--threads`): on a small machine shared
with other jobs, ORT's spinning thread pool mostly measures the scheduler.

    .venv/bin/python -P bench/harness_check.py --runs 200 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import rapidocr_onnxruntime
from onnx import TensorProto, helper
from onnxsmith.runtime.benchmark import BenchOptions, benchmark
from onnxsmith.runtime.machine import machine_info
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import time_interleaved

from onnxsmith.optimize import optimize_file

MODELS = Path(rapidocr_onnxruntime.__file__).parent / "models"


def stopwatch_ratio(
    model_a: Path, model_b: Path, feed: dict, runs: int, warmup: int, threads: int
) -> dict:
    """The independent timer: A then B each round, medians of perf_counter_ns differences."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    a = ort.InferenceSession(str(model_a), options, providers=providers)
    b = ort.InferenceSession(str(model_b), options, providers=providers)
    for _ in range(warmup):
        a.run(None, feed)
        b.run(None, feed)
    times_a, times_b = [], []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        a.run(None, feed)
        t1 = time.perf_counter_ns()
        b.run(None, feed)
        t2 = time.perf_counter_ns()
        times_a.append((t1 - t0) / 1e6)
        times_b.append((t2 - t1) / 1e6)
    p50_a, p50_b = statistics.median(times_a), statistics.median(times_b)
    return {"p50_a_ms": p50_a, "p50_b_ms": p50_b, "ratio": p50_b / p50_a}


def harness_ratio(
    model_a: Path, model_b: Path, feed: dict, runs: int, warmup: int, threads: int
) -> dict:
    options = BenchOptions(runs=runs, warmup=warmup, threads=(threads,), memory=False)
    result = benchmark([model_a, model_b], [feed], options=options)
    a, b = result.models
    return {
        "p50_a_ms": a.latency.p50,
        "p50_b_ms": b.latency.p50,
        "ratio": b.ratio,
        "ci95": list(b.ci95_ratio),
    }


def perf_test_note() -> str:
    """Where ORT's C++ benchmark is; it is not in the onnxruntime wheel (build ORT from source)."""
    binary = shutil.which("onnxruntime_perf_test")
    if binary is None:
        return "not available: onnxruntime_perf_test is not on PATH (the wheel does not ship it)"
    return (
        f"found at {binary}: compare by hand with `{binary} -m times -r N -x 1 -I MODEL` (its "
        "-I inputs treat free dims as 1, so this script does not drive it)"
    )


def relu_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def overhead(folder: Path, runs: int) -> dict:
    model = relu_model(folder / "relu.onnx")
    feed = {"x": np.ones((1, 16), np.float32)}
    harness = harness_ratio(model, model, feed, runs, warmup=100, threads=1)
    stopwatch = stopwatch_ratio(model, model, feed, runs, warmup=100, threads=1)
    sessions = [create_session(model, threads=1), create_session(model, threads=1)]
    start = time.perf_counter()
    samples = time_interleaved(sessions, [feed], warmup=0, runs=runs)
    wall_ms = (time.perf_counter() - start) * 1e3
    inside_ms = float(sum(np.sum(s) for s in samples))
    return {
        "relu_p50_us_harness": harness["p50_a_ms"] * 1e3,
        "relu_p50_us_stopwatch": stopwatch["p50_a_ms"] * 1e3,
        "inside_timed_region_us": (harness["p50_a_ms"] - stopwatch["p50_a_ms"]) * 1e3,
        "loop_outside_timed_region_us_per_run": (wall_ms - inside_ms) / (2 * runs) * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="rounds per measurement")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="harness/stopwatch alternations")
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads for both timers (default 1)"
    )
    parser.add_argument("--json", type=Path, default=Path("bench/out/harness_check.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        det_opt = folder / "det.opt.onnx"
        optimize_file(MODELS / "ch_PP-OCRv4_det_infer.onnx", det_opt)
        pairs = [
            (
                "rec v4 / cls mobile (48x320)",
                MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx",
                MODELS / "ch_PP-OCRv4_rec_infer.onnx",
                (1, 3, 48, 320),
            ),
            (
                "det v4 optimized / det v4 (320x320)",
                MODELS / "ch_PP-OCRv4_det_infer.onnx",
                det_opt,
                (1, 3, 320, 320),
            ),
        ]
        rows = []
        for label, model_a, model_b, shape in pairs:
            feed = {"x": rng.standard_normal(shape).astype(np.float32)}
            for repeat in range(args.repeats):
                timing = (feed, args.runs, args.warmup, args.threads)
                harness = harness_ratio(model_a, model_b, *timing)
                stopwatch = stopwatch_ratio(model_a, model_b, *timing)
                agreement = harness["ratio"] / stopwatch["ratio"] - 1
                rows.append(
                    {
                        "pair": label,
                        "repeat": repeat,
                        "harness": harness,
                        "stopwatch": stopwatch,
                        "agreement": agreement,
                    }
                )
                print(
                    f"{label} #{repeat}: harness {harness['ratio']:.3f} "
                    f"(CI {harness['ci95'][0]:.3f}-{harness['ci95'][1]:.3f}), stopwatch "
                    f"{stopwatch['ratio']:.3f}, difference {agreement:+.1%}",
                    flush=True,
                )
        cost = overhead(folder, runs=max(args.runs, 2000))
    info = machine_info()
    report = {
        "machine": info.as_dict(),
        "args": vars(args) | {"json": str(args.json)},
        "rows": rows,
        "overhead": cost,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nCPU: {info.cpu_model}, load average {info.load_average}")
    print(
        "| pair | repeat | harness p50 A / B (ms) | harness ratio [95% CI] | stopwatch ratio | "
        "difference |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        h, s = row["harness"], row["stopwatch"]
        print(
            f"| {row['pair']} | {row['repeat']} | {h['p50_a_ms']:.2f} / {h['p50_b_ms']:.2f} | "
            f"{h['ratio']:.3f} [{h['ci95'][0]:.3f}, {h['ci95'][1]:.3f}] | {s['ratio']:.3f} | "
            f"{row['agreement']:+.1%} |"
        )
    print(f"\nonnxruntime_perf_test: {perf_test_note()}")
    print(f"overhead: {json.dumps({k: round(v, 2) for k, v in cost.items()})}")
    differences = [r["agreement"] for r in rows]
    print(f"mean signed difference {statistics.mean(differences):+.1%} (a bias would show here)")
    for label, *_ in pairs:
        ratios = [r["stopwatch"]["ratio"] for r in rows if r["pair"] == label]
        spread = max(ratios) / min(ratios) - 1
        print(f"stopwatch against itself over repeats, {label}: spread {spread:.1%}")
    worst = max(abs(d) for d in differences)
    print(f"worst difference {worst:.1%} ({'PASS' if worst < 0.10 else 'FAIL'}: limit 10 %)")
    return 0 if worst < 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
