"""The fidelity/latency frontier of static int8 on PP-OCRv4 det, configuration by configuration.

Where `quantize_bench.py` runs the whole search, this script builds the configurations the
search chooses between — calibration method (minmax, percentile) × Add/Mul placement × the k
most sensitive convs (ranked by their error in isolation) left in fp32, plus bias correction —
scores each by text-mask IoU against fp32 on the held-out pages, and times all of them interleaved
against fp32 in one run. Every Conv is a candidate; the two ConvTranspose stay fp32 (the
latency probe finds them slower in int8 on this CPU).

Run: .venv/bin/python -P bench/quantize_frontier.py [--seconds 40] (after quantize_bench.py
has written the pages: bench/out/quantize/ocr-det/det_calib, det_eval).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from onnxsmith.passes.quantize import QuantPlan, activation_name, find_candidates, prepare_passes
from onnxsmith.runtime.calibrate import channel_means
from onnxsmith.runtime.data import DataDir
from onnxsmith.runtime.metric import EvalSet
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved

from onnxsmith.io import load_model
from onnxsmith.pipeline import apply
from onnxsmith.progress import Reporter
from onnxsmith.quantize.search import Search, SearchSettings
from onnxsmith.signature import input_specs

DATA = Path(__file__).parent / "out" / "quantize" / "ocr-det"


def mask_iou(reference: list[np.ndarray], got: list[np.ndarray]) -> float:
    inter = sum(int(np.sum((r > 0.3) & (g > 0.3))) for r, g in zip(reference, got, strict=True))
    union = sum(int(np.sum((r > 0.3) | (g > 0.3))) for r, g in zip(reference, got, strict=True))
    return inter / max(union, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    import rapidocr_onnxruntime

    source = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
    prepared, _ = apply(prepare_passes(load_model(source)), load_model(source))
    candidates = find_candidates(prepared, ["Conv"])
    specs = input_specs(prepared)
    calib = DataDir(DATA / "det_calib", specs, step="frontier")
    feeds = list(DataDir(DATA / "det_eval", specs, step="frontier"))
    evalset = EvalSet(prepared, feeds)
    reference = [r[0] for r in evalset.reference]
    search = Search(prepared, candidates, lambda: iter(calib), evalset,
                    SearchSettings(max_loss=0.01, latency_aware=False), Reporter(True))  # fmt: skip
    nodes = [c.node for c in candidates]
    tables = search.tables(prepared, nodes)
    everything = QuantPlan(dict.fromkeys(nodes, "static"))
    order = search.rank(everything, prepared, prepared, tables["percentile"])
    configs = {}
    for method in ("minmax", "percentile"):
        for companions in ("all", "structural"):
            for k in (0, 3):
                plan = QuantPlan({n: "static" for n in nodes if n not in order[:k]})
                search.companions = companions
                placement = "int8" if companions == "all" else "float"
                configs[f"{method}, Add/Mul {placement}, top {k} fp32"] = search.build(
                    plan, prepared, tables[method]
                )
    axes = {activation_name(n): 1 for n in prepared.graph if n.name in nodes}
    search.means = channel_means(prepared, iter(calib), axes, limit=16)
    search.corrected = frozenset(nodes)
    search.companions = "structural"
    plan = QuantPlan({n: "static" for n in nodes if n not in order[:3]})
    configs["percentile, Add/Mul float, top 3 fp32, bias corrected"] = search.build(
        plan, prepared, tables["percentile"]
    )
    sessions = [create_session(prepared)]
    rows = []
    for label, model in configs.items():
        session = create_session(model)
        iou = mask_iou(reference, [session.run(None, f)[0] for f in feeds])
        sessions.append(session)
        rows.append((label, iou))
        print(f"  {label}: IoU {iou:.4f}", flush=True)
    times = time_interleaved(sessions, feeds[:2], warmup=1, runs=None, seconds=args.seconds)
    print("\n| configuration | mask IoU vs fp32 | latency vs fp32 (95% CI) |\n|---|---:|---|")
    for (label, iou), samples in zip(rows, times[1:], strict=True):
        ratio = ratio_ci95(samples, times[0])
        print(f"| {label} | {iou:.4f} | {ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f}) |")
    print(f"\n{len(times[0])} interleaved rounds; isolation order: {', '.join(order[:6])}")


if __name__ == "__main__":
    main()
