"""`onnxsmith quantize` defaults on PP-OCRv4 rec, judged in the task's terms, before and after
the task-true fidelity guard and the per-shape-bucket latency check (issue 16, sections 1, 3).

Data (offline): English text lines rendered with the system DejaVu fonts (Sans, Serif, Mono,
Sans Bold; sizes 26-40 px), resized to PP-OCR's height 48 at their own aspect ratio, so widths
vary as real line crops do (about 100-800 px). 48 calibration lines, 32 eval lines (other seeds).

Rows: fp32; the `--before` command's int8 (default: main's `onnxsmith quantize` defaults,
cosine >= 0.99 guard); this tree's `onnxsmith quantize` defaults (guard chosen from the output:
CTC character error rate vs fp32 <= 0.5 pt). Each is scored on the eval lines against fp32's
greedy-decoded strings (character accuracy = 1 - CER, string agreement) and against the
rendered text (character accuracy with PP-OCR's dictionary from the model's metadata); then
fp32 and every int8 model are timed INTERLEAVED in one run over 4 width buckets of the eval
lines, each bucket a ratio to fp32 with a bootstrap 95 % interval.

Run: .venv/bin/python -P bench/ocr_rec_fidelity.py [--before "/work/main/.venv/bin/python -P
     -m onnxsmith.cli.main"] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from onnxsmith.runtime.fidelity import METRICS
from onnxsmith.runtime.fidelity.sequence import edit_distance, greedy_decode
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import shape_buckets, time_buckets

OUT = Path(__file__).parent / "out" / "ocr_rec"
FONTS = Path("/usr/share/fonts/truetype/dejavu")
FACES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf")
PASSAGE = (
    "Freight for order 4471 left the north depot on Tuesday morning, two hours late. "
    "Please check the balance before paying; our clerk found a small error on page three. "
    "Fresh apples, pears and honey are sold at the market near the old bridge every week. "
    "The quantized reader keeps every character the original model reads, or it is refused."
)
WORDS = PASSAGE.split()


def line_text(rng: np.random.Generator) -> str:
    words = [str(w) for w in rng.choice(WORDS, int(rng.integers(1, 7)))]
    if rng.random() < 0.4:
        words.append(f"{rng.integers(1, 99999)}.{rng.integers(0, 99):02d}")
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    return " ".join(words)


def render(text: str, rng: np.random.Generator) -> np.ndarray:
    """[1, 3, 48, W] float32, PP-OCR rec's normalization ((x / 255 - 0.5) / 0.5)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONTS / str(rng.choice(FACES))), int(rng.integers(26, 41)))
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(4, 12))
    background = tuple(int(v) for v in rng.integers(215, 256, 3))
    image = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), background)
    ink = tuple(int(v) for v in rng.integers(0, 80, 3))
    ImageDraw.Draw(image).text((pad - left, pad - top), text, fill=ink, font=font)
    width = max(16, round(48 * image.width / image.height))
    image = image.resize((width, 48), Image.Resampling.BILINEAR)
    pixels = (np.asarray(image, np.float32) / 255.0 - 0.5) / 0.5
    return pixels.transpose(2, 0, 1)[None].astype(np.float32)


def write_lines(folder: Path, count: int, seed: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    texts = [line_text(rng) for _ in range(count)]
    for i, text in enumerate(texts):
        np.savez(folder / f"{i:03d}.npz", x=render(text, rng))
    return texts


def quantize_with(
    command: str, model: Path, out: Path, data: Path, report: Path, extra: str
) -> str:
    """Runs `command quantize ...`; returns its wall time, or why it wrote nothing."""
    args = [*shlex.split(command), "quantize", str(model), "-o", str(out), *shlex.split(extra)]
    args += ["--calib", str(data / "calib"), "--eval", str(data / "eval"), "--report", str(report)]
    started = time.perf_counter()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # nothing written into the other tree
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    (report.parent / f"{out.stem}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return f"refused after {seconds:.0f} s: {done.stderr.strip().splitlines()[-1]}"
    return f"{seconds:.0f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--before",
        default="/work/main/.venv/bin/python -P -m onnxsmith.cli.main",
        help="the onnxsmith command line to compare with",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="interleaved timing budget")
    parser.add_argument(
        "--quantize-args",
        default="",
        help="appended to both quantize commands (e.g. "
        "--no-latency-aware, to compare the fidelity guards alone)",
    )
    args = parser.parse_args()
    import rapidocr_onnxruntime

    model = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    OUT.mkdir(parents=True, exist_ok=True)
    write_lines(OUT / "calib", 48, seed=0)
    truth = write_lines(OUT / "eval", 32, seed=1)
    after = [sys.executable, "-P", "-m", "onnxsmith.cli.main"]
    runs = {
        "before (main defaults)": args.before,
        "after (this tree's defaults)": shlex.join(after),
    }
    outcome, paths = {}, {}
    for i, (label, command) in enumerate(runs.items()):
        paths[label] = OUT / f"int8_{i}.onnx"
        paths[label].unlink(missing_ok=True)
        outcome[label] = quantize_with(
            command, model, paths[label], OUT, OUT / f"report_{i}", args.quantize_args
        )
        print(f"{label}: {outcome[label]}", flush=True)
    feeds = [dict(np.load(f)) for f in sorted((OUT / "eval").glob("*.npz"))]
    sessions = {"fp32": create_session(model)}
    sessions |= {k: create_session(p) for k, p in paths.items() if p.exists()}
    outputs = {k: [s.run(None, f)[0] for f in feeds] for k, s in sessions.items()}
    charset = _charset(model)
    rows = []
    for label, values in outputs.items():
        vs_fp32 = METRICS["ctc"](outputs["fp32"], values)
        rows.append(
            f"| {label} | {_truth_accuracy(values, truth, charset):.2%} | {vs_fp32.value:.2%} | "
            f"{vs_fp32.details['sequence_agreement']:.2%} | {outcome.get(label, '-')} |"
        )
    buckets = shape_buckets(feeds)
    names = list(sessions)
    timing = time_buckets(
        list(sessions.values()), buckets, decide=[(i, 0) for i in range(1, len(names))],
        seconds=args.seconds, max_seconds=args.seconds * 2,
    )  # fmt: skip
    print("\n| model | char. accuracy vs rendered text | char. accuracy vs fp32 | strings = fp32 "
          "| quantize |\n|---|---:|---:|---:|---|")  # fmt: skip
    print("\n".join(rows))
    header = " | ".join(f"{b.label} ({b.share:.0%})" for b in buckets)
    print(f"\n| int8 / fp32 latency | overall | {header} |")
    print("|---|---|" + "---|" * len(buckets))
    for i, name in enumerate(names[1:], start=1):
        overall = _ci(timing.ratio(i, 0))
        cells = " | ".join(_ci(timing.bucket_ratio(i, 0, b)) for b in range(len(buckets)))
        print(f"| {name} | {overall} | {cells} |")
    print(f"\n{timing.rounds} interleaved rounds in {timing.seconds:.0f} s")
    (OUT / "summary.json").write_text(json.dumps({"outcome": outcome}, indent=2))
    return 0


def _ci(ratio: tuple[float, float, float]) -> str:
    return f"{ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f})"


def _charset(model: Path) -> list[str]:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return ["blank", *meta["character"].splitlines(), " "]


def _truth_accuracy(values: list[np.ndarray], truth: list[str], charset: list[str]) -> float:
    errors = length = 0
    for scores, text in zip(values, truth, strict=True):
        (ids,) = greedy_decode(scores, blank=0)
        errors += edit_distance("".join(charset[i] for i in ids), text)
        length += len(text)
    return 1.0 - errors / length


if __name__ == "__main__":
    raise SystemExit(main())
