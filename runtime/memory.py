"""Peak memory of one model's session, measured in a fresh child process.

In-process RSS deltas are unreliable: the allocator keeps freed pages, ORT's arena never shrinks
and other models' sessions share the heap. So each (model, threads, batch) gets its own Python
that imports only numpy and onnxruntime (`rss_probe.py`), creates the session with the
benchmark's options and runs the feeds; its peak RSS is the number reported.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.session import _LEVELS

from onnxsmith.errors import SessionError

METHOD = (
    "per model, thread count and batch size, a fresh Python process that imports only numpy and "
    "onnxruntime creates the session with the benchmark's options and runs every timing feed "
    "twice; peak_rss_mb is that process's peak resident set (VmHWM on Linux, ru_maxrss "
    "elsewhere), model_rss_mb the same minus its peak before the session was created "
    "(interpreter, libraries, feeds)"
)
_PROBE = Path(__file__).with_name("rss_probe.py")


@dataclasses.dataclass(frozen=True)
class MemoryUsage:
    """Peak resident memory of a process serving one model, in MB (2**20 bytes)."""

    peak_rss_mb: float
    baseline_rss_mb: float
    session_init_ms: float  # cold: a fresh process, nothing cached but the OS page cache

    @property
    def model_rss_mb(self) -> float:
        return max(0.0, self.peak_rss_mb - self.baseline_rss_mb)


def measure_peak_rss(
    model: str | Path,
    feeds: Sequence[Feed],
    *,
    threads: int | None = None,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    optimization: str = "all",
    timeout: float = 900.0,
) -> MemoryUsage | None:
    """Peak RSS of a fresh process that loads `model` and runs `feeds` twice (see METHOD).

    Returns None where `resource.getrusage` does not exist (Windows).

    Raises:
        SessionError: the child failed; the message carries its last error line.
    """
    if sys.platform == "win32":
        return None
    with tempfile.TemporaryDirectory(prefix="onnxsmith-rss-") as folder:
        feed_paths = []
        for i, feed in enumerate(feeds):
            path = Path(folder) / f"feed{i}.npz"
            np.savez(path, **cast(dict[str, Any], feed))  # numpy's stub types ** as bool
            feed_paths.append(str(path))
        request = Path(folder) / "request.json"
        request.write_text(
            json.dumps(
                {
                    "model": str(model),
                    "feeds": feed_paths,
                    "threads": threads,
                    "providers": list(providers),
                    "optimization_level": int(_LEVELS[optimization]),
                    "passes": 2,
                }
            )
        )
        try:
            done = subprocess.run(
                [sys.executable, "-I", str(_PROBE), str(request)],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise SessionError(
                f"{model}: the memory probe took over {timeout:.0f} s — rerun with --no-memory"
            ) from e
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        raise SessionError(
            f"{model}: the memory probe failed ({lines[-1]}) — rerun with --no-memory to skip it"
        )
    values = json.loads(done.stdout.strip().splitlines()[-1])
    return MemoryUsage(
        peak_rss_mb=values["peak_rss_mb"],
        baseline_rss_mb=values["baseline_rss_mb"],
        session_init_ms=values["session_init_ms"],
    )
