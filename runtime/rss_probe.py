"""Child process of `onnxsmith.runtime.memory`: run as a script, never imported by the package.

It imports only numpy and onnxruntime (not onnxsmith, onnx or onnx_ir), so its resident set is
what a serving process holding this one model needs: `python rss_probe.py REQUEST.json` loads
the feeds, records the peak RSS so far (the baseline), creates the session, runs every feed
`passes` times and prints `{"baseline_rss_mb", "peak_rss_mb", "session_init_ms"}` as JSON.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set of this process image.

    Linux: VmHWM from /proc/self/status. Not ru_maxrss: Linux carries the parent's high-water
    mark across fork and exec, so a child of a large benchmark process would report the
    parent's peak. Elsewhere ru_maxrss (bytes on macOS, KiB on the BSDs).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(request_path: str) -> None:
    import numpy as np
    import onnxruntime as ort

    request = json.loads(Path(request_path).read_text())
    feeds = []
    for path in request["feeds"]:
        with np.load(path, allow_pickle=False) as npz:
            feeds.append({key: npz[key] for key in npz.files})
    baseline = peak_rss_mb()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel(request["optimization_level"])
    if request["threads"] is not None:
        options.intra_op_num_threads = request["threads"]
    start = time.perf_counter()
    session = ort.InferenceSession(request["model"], options, providers=request["providers"])
    init_ms = (time.perf_counter() - start) * 1e3
    for _ in range(request["passes"]):
        for feed in feeds:
            session.run(None, feed)
    result = {"baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(), "session_init_ms": init_ms}
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
