"""Load test of the Ray Serve hand-off: N requests from C concurrent HTTP clients.

1. Trains the demo's digits CNN (16-32-64 channels) with torch on scikit-learn digits at 16x16
   and exports it (or takes `--model`, which must take `image` float32[batch, 1, 16, 16]).
2. `onnxsmith serve-export MODEL --format ray-serve`, then `onnxsmith serve` on a free loopback
   port in a child process (a fresh local Ray instance).
3. Every request is one held-out digit (batch 1), JSON over HTTP/1.1 keep-alive, one connection
   per client thread. An answer is wrong when its class differs from ORT in-process on the same
   image or its logits are not within rtol=atol=1e-5 of them (batching changes the summation
   order, nothing else). Reports throughput, p50/p90/p99/max latency, errors, wrong answers and
   the served answers' top-1 on the labels; then, for scale, the same images through ORT
   in-process, batch 1, one thread, no HTTP.

Usage: python -P bench/serve_load.py [--requests 2000] [--clients 32] [--max-batch-size 32]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxsmith.runtime.session import create_session

from onnxsmith.digits import load_digits_split
from onnxsmith.serve.ray_server import free_port, serving_in_background

RTOL = ATOL = 1e-5


def digits_model(out: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    from onnxsmith.exporter.digits import train_and_export_teachers

    return train_and_export_teachers(images, labels, out, count=1, epochs=4)[0]


def export_app(model: Path, app: Path, max_batch_size: int) -> None:
    command = [sys.executable, "-P", "-m", "onnxsmith.cli.main", "serve-export", str(model)]
    command += ["--format", "ray-serve", "-o", str(app), "--name", "digits"]
    command += ["--max-batch-size", str(max_batch_size)]
    subprocess.run(command, check=True, capture_output=True)


class Client:
    """One keep-alive HTTP connection; `post` returns (status, body, seconds)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        self.connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        return response.status, response.read(), time.perf_counter() - start


def load_test(
    port: int, images: np.ndarray, want: np.ndarray, order: np.ndarray, clients: int
) -> dict:
    local = threading.local()
    bodies = [json.dumps({"inputs": {"image": images[i : i + 1].tolist()}}).encode() for i in order]

    def one(k: int) -> tuple[str, float, int]:
        if not hasattr(local, "client"):
            local.client = Client(port)
        try:
            status, raw, seconds = local.client.post("/digits/predict", bodies[k])
        except (OSError, http.client.HTTPException):
            local.client = Client(port)
            return "error", 0.0, -1
        if status != 200:
            return "error", seconds, -1
        got = np.asarray(json.loads(raw)["outputs"]["logits"], np.float32)
        expected = want[order[k] : order[k] + 1]
        ok = got.shape == expected.shape and np.allclose(got, expected, rtol=RTOL, atol=ATOL)
        ok = ok and got.argmax() == expected.argmax()
        return ("ok" if ok else "wrong"), seconds, int(got.argmax())

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(len(order))))
    wall = time.perf_counter() - start
    latencies = np.array([s for outcome, s, _ in results if outcome != "error"]) * 1e3
    return {
        "wall_s": wall,
        "throughput": len(order) / wall,
        "p50": float(np.percentile(latencies, 50)),
        "p90": float(np.percentile(latencies, 90)),
        "p99": float(np.percentile(latencies, 99)),
        "max": float(latencies.max()),
        "errors": sum(outcome == "error" for outcome, _, _ in results),
        "wrong": sum(outcome == "wrong" for outcome, _, _ in results),
        "classes": np.array([c for _, _, c in results]),
    }


def replica_stats(base: str) -> dict:
    """Requests and batches the (single) replica has run so far, from its /info."""
    with urllib.request.urlopen(f"{base}/digits/info", timeout=60) as response:
        return dict(json.loads(response.read())["replica_stats"])


def in_process(model: Path, images: np.ndarray, order: np.ndarray) -> float:
    """Requests per second of ORT in this process: batch 1, one thread, no HTTP, no JSON."""
    session = create_session(model, threads=1)
    start = time.perf_counter()
    for i in order:
        session.run(None, {"image": images[i : i + 1]})
    return len(order) / (time.perf_counter() - start)


def cpu_line() -> str:
    name = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    flags = Path("/proc/cpuinfo").read_text()
    isa = [f for f in ("avx512_vnni", "amx_int8") if f in flags]
    return f"{name} ({len(os.sched_getaffinity(0))} cores; {', '.join(isa)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--model", type=Path, help="default: train the digits CNN here")
    args = parser.parse_args()
    split = load_digits_split(side=16, seed=0)
    images, labels = split.eval_x, split.eval_y
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model or digits_model(root, split.train_x, split.train_y)
        want = create_session(model).run(None, {"image": images})[0]
        export_app(model, root / "app", args.max_batch_size)
        rng = np.random.default_rng(0)
        order = rng.integers(0, len(images), args.requests)
        port = free_port()
        with serving_in_background(root / "app", port=port, log=root / "serve.log") as base:
            load_test(port, images, want, order[: args.warmup], args.clients)
            before = replica_stats(base)
            result = load_test(port, images, want, order, args.clients)
            after = replica_stats(base)
        reference = in_process(model, images, order)
    served_top1 = float((result["classes"] == labels[order]).mean())
    batches = after["batches"] - before["batches"]
    mean_batch = (after["requests"] - before["requests"]) / max(batches, 1)
    print(f"CPU: {cpu_line()}; onnxruntime {ort.__version__}; {time.strftime('%Y-%m-%d')}")
    print(
        f"{args.requests} requests, {args.clients} clients, max batch {args.max_batch_size}: "
        f"{result['throughput']:.0f} req/s ({result['wall_s']:.1f} s), latency ms p50 "
        f"{result['p50']:.1f} p90 {result['p90']:.1f} p99 {result['p99']:.1f} max "
        f"{result['max']:.1f}; errors {result['errors']}, wrong answers {result['wrong']}; "
        f"served top-1 {served_top1:.2%}; {batches} batches, mean {mean_batch:.1f} requests, "
        f"largest {after['largest_batch']}"
    )
    print(f"ORT in-process, batch 1, 1 thread, same images: {reference:.0f} req/s")


if __name__ == "__main__":
    main()
