"""`prune --structured --recover` on real models: fidelity and latency vs fp32, with and without.

PP-OCR direction classifier (rapidocr-onnxruntime's ch_ppocr_mobile_v2.0_cls_infer.onnx) on
text lines rendered with the system DejaVu fonts, half of them rotated 180°, preprocessed as
rapidocr does (height 48, width ≤ 192, zero padding, (x/255 − 0.5)/0.5). Calibration and
recovery data (`--recover-data`): `--lines` lines; calibration of the least-squares refit
(`--calib`): the first `--calib-lines` of them (the sequential refit runs the model once per
layer level over every calibration feed, so it wants few); fidelity: top-1 agreement with
the fp32 model on `--eval` other lines (other words, other seed), so it is not measured on
training inputs.
Latency: fp32, pruned, and pruned + recovered sessions interleaved on one line (batch 1).

    .venv/bin/python -P bench/recover_bench.py [--sparsity 0.3] [--lines 1000] [--eval 400]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import rapidocr_onnxruntime
from onnxsmith.runtime.predict import predict
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved
from PIL import Image, ImageDraw, ImageFont

from onnxsmith.cli.main import main as onnxsmith

OUT = Path(__file__).parent / "out" / "recover"
MODELS = Path(rapidocr_onnxruntime.__file__).parent / "models"
FONTS = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("DejaVu*.ttf"))
WORDS = (
    "north",
    "south",
    "river",
    "market",
    "garden",
    "station",
    "window",
    "letter",
    "summer",
    "winter",
    "morning",
    "evening",
    "village",
    "mountain",
    "harbor",
    "bridge",
    "museum",
    "library",
    "kitchen",
    "theater",
    "doctor",
    "teacher",
    "engine",
    "camera",
    "pencil",
    "ticket",
    "bottle",
    "carpet",
    "mirror",
    "blanket",
    "orange",
    "purple",
    "silver",
    "golden",
    "total",
    "invoice",
    "order",
    "price",
    "amount",
    "date",
    "phone",
    "email",
    "report",
    "page",
    "table",
    "figure",
    "result",
    "value",
    "system",
    "data",
    "model",
    "time",
    "year",
    "people",
    "world",
)


def text_line(rng: np.random.Generator, words: list[str]) -> np.ndarray:
    """One rendered line, cropped to its text, as an (H, W, 3) uint8 image."""
    font = ImageFont.truetype(str(FONTS[rng.integers(len(FONTS))]), int(rng.integers(18, 40)))
    text = " ".join(rng.choice(words, int(rng.integers(1, 6))))
    if rng.random() < 0.3:
        text += f" {rng.integers(1, 99999)}"
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(2, 8))
    size = (right - left + 2 * pad, bottom - top + 2 * pad)
    background = tuple(int(v) for v in rng.integers(200, 256, 3))
    image = Image.new("RGB", size, background)
    color = tuple(int(v) for v in rng.integers(0, 80, 3))
    ImageDraw.Draw(image).text((pad - left, pad - top), text, fill=color, font=font)
    return np.asarray(image)


def preprocess(line: np.ndarray) -> np.ndarray:
    """rapidocr's classifier input: height 48, width ≤ 192 keeping the aspect, zero padded."""
    height, width = line.shape[:2]
    resized_w = min(192, int(np.ceil(48 * width / height)))
    image = np.asarray(Image.fromarray(line).resize((resized_w, 48)), np.float32)
    image = (image.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    out = np.zeros((3, 48, 192), np.float32)
    out[:, :, :resized_w] = image
    return out


def lines(count: int, seed: int, words: list[str]) -> np.ndarray:
    """`count` classifier inputs; every odd one is rotated 180°."""
    rng = np.random.default_rng(seed)
    batch = []
    for i in range(count):
        line = text_line(rng, words)
        batch.append(preprocess(line[::-1, ::-1] if i % 2 else line))
    return np.stack(batch)


def write_feeds(folder: Path, inputs: np.ndarray, per_file: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.npz"):
        old.unlink()
    for i, start in enumerate(range(0, len(inputs), per_file)):
        np.savez(folder / f"{i:04d}.npz", x=inputs[start : start + per_file])
    return folder


def top1(path: Path, inputs: np.ndarray) -> np.ndarray:
    return predict(create_session(path, threads=1), {"x": inputs}, label=str(path)).argmax(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.3)
    parser.add_argument("--lines", type=int, default=1000, help="recovery lines")
    parser.add_argument("--calib-lines", type=int, default=128, help="calibration lines")
    parser.add_argument("--eval", type=int, default=400, help="held-out lines for fidelity")
    parser.add_argument("--runs", type=int, default=300, help="interleaved timing rounds")
    parser.add_argument(
        "--reuse-plain", action="store_true", help="keep cls.pruned.onnx from an earlier run"
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    model = MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    train = lines(args.lines, 0, WORDS[: len(WORDS) // 2 + 10])
    calib = write_feeds(OUT / "cls_calib", train[: args.calib_lines])
    recover_data = write_feeds(OUT / "cls_recover", train, per_file=50)
    evaluation = lines(args.eval, 1, WORDS[len(WORDS) // 2 :])
    reference = top1(model, evaluation)
    truth = np.arange(args.eval) % 2  # class 1 is "180°"
    base = ["prune", str(model), "--structured", "--sparsity", str(args.sparsity),
            "--calib", str(calib)]  # fmt: skip
    variants = {
        "pruned": [],
        "pruned + --recover": ["--recover", "--recover-data", str(recover_data)],
    }
    paths, rows = {}, {}
    for name, extra in variants.items():
        out = OUT / f"cls.{name.split()[-1].strip('-')}.onnx"
        argv = [*base, "-o", str(out), "--json", str(out.with_suffix(".json")), *extra]
        start = time.perf_counter()
        if args.reuse_plain and not extra and out.exists():
            pass
        elif onnxsmith(argv) != 0:
            raise SystemExit(f"failed: onnxsmith {' '.join(argv)}")
        seconds = time.perf_counter() - start
        predicted = top1(out, evaluation)
        paths[name] = out
        rows[name] = {
            "command": "onnxsmith " + " ".join(argv),
            "wall_s": round(seconds, 1),
            "agreement_top1": float((predicted == reference).mean()),
            "accuracy_0_180": float((predicted == truth).mean()),
        }
    sessions = [create_session(p, threads=1) for p in (model, *paths.values())]
    feeds = [{"x": evaluation[i : i + 1]} for i in range(8)]
    times = time_interleaved(sessions, feeds, warmup=10, runs=args.runs)
    for i, name in enumerate(paths, start=1):
        rows[name]["latency_ratio"] = ratio_ci95(times[i], times[0])
    print(f"fp32: accuracy (0/180) {(reference == truth).mean():.2%}, "
          f"{np.median(times[0]):.3f} ms median")  # fmt: skip
    print("| model | top-1 agreement | 0/180 accuracy | latency vs fp32 [95% CI] | wall s |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        ratio, low, high = row["latency_ratio"]
        print(f"| {name} | {row['agreement_top1']:.4f} | {row['accuracy_0_180']:.2%} | "
              f"{ratio:.3f} [{low:.3f}, {high:.3f}] | {row['wall_s']} |")  # fmt: skip
    for name, row in rows.items():
        print(f"{name}: {row['command']}")
    (OUT / "results.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
