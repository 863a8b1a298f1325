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

`--model NAME` runs a model of the zoo instead (bench/zoo_models.py: `ppocr-det`,
`nudenet-320n`, ...): its real feeds (`--lines` for recovery, the first `--calib-lines` of them
for calibration, `--eval` others for fidelity), scored by onnxsmith's task metric (text-mask
IoU, detection F1 against fp32's boxes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rapidocr_onnxruntime
from onnxsmith.runtime.predict import predict
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved
from PIL import Image, ImageDraw, ImageFont

from onnxsmith.cli.main import main as onnxsmith

sys.path.insert(0, str(Path(__file__).parent))  # `python -P` leaves bench/ out: zoo, zoo_models
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


@dataclasses.dataclass
class Subject:
    """A model to prune and recover, its data, and how its fidelity to fp32 is scored."""

    model: Path
    calib: Path
    recover_data: Path
    timing_feeds: list[dict[str, np.ndarray]]
    score: Callable[[Path], dict[str, float | str]]
    note: str


def cls_subject(args: argparse.Namespace) -> Subject:
    model = MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    train = lines(args.lines, 0, WORDS[: len(WORDS) // 2 + 10])
    evaluation = lines(args.eval, 1, WORDS[len(WORDS) // 2 :])
    reference = top1(model, evaluation)
    truth = np.arange(args.eval) % 2  # class 1 is "180°"

    def score(path: Path) -> dict[str, float | str]:
        predicted = top1(path, evaluation)
        return {
            "fidelity": float((predicted == reference).mean()),
            "accuracy_0_180": float((predicted == truth).mean()),
        }

    return Subject(
        model,
        write_feeds(OUT / "cls_calib", train[: args.calib_lines]),
        write_feeds(OUT / "cls_recover", train, per_file=50),
        [{"x": evaluation[i : i + 1]} for i in range(8)],
        score,
        f"top-1 agreement with fp32; fp32 gets {(reference == truth).mean():.2%} of 0/180 right",
    )


def zoo_subject(name: str, args: argparse.Namespace) -> Subject:
    """A zoo model (bench/zoo_models.py): its real feeds, onnxsmith's task metric (bench/zoo.py)."""
    from zoo import fidelity, outputs
    from zoo_models import ZOO, resolve
    from zoo_models import write_feeds as write_zoo_feeds

    zoo = ZOO[name]
    model = resolve(zoo, OUT)
    feeds = zoo.feeds(args.lines + args.eval)
    train, evaluation = feeds[: args.lines], feeds[args.lines :]
    reference = outputs(model, evaluation)

    def score(path: Path) -> dict[str, float | str]:
        return {"fidelity": fidelity(zoo.task, reference, outputs(path, evaluation))}

    return Subject(
        model,
        write_zoo_feeds(train[: args.calib_lines], OUT / f"{name}_calib"),
        write_zoo_feeds(train, OUT / f"{name}_recover"),
        evaluation[:8],
        score,
        f"{zoo.task} fidelity to fp32 by onnxsmith's metric (bench/zoo.py)",
    )


def peer_row(subject: Subject, sparsity: float, out: Path) -> dict[str, object]:
    """Torch-Pruning on onnx2torch's module, trained like `--recover` (torch_pruning_peer.py)."""
    from onnxsmith.exporter.recover import DEFAULT_TIME_BUDGET, batch_size, recovery_loss
    from torch_pruning_peer import prune_and_train

    from onnxsmith.io import load_model

    original = load_model(subject.model)
    first = next(iter(sorted(subject.calib.glob("*.npz"))))
    with np.load(first) as stored:
        feed = {name: stored[name][:1] for name in stored.files}
    return prune_and_train(
        subject.model,
        feed,
        subject.recover_data,
        out,
        sparsity=sparsity,
        loss=recovery_loss(original, subject.recover_data),
        batch_size=batch_size(original, subject.recover_data),
        seconds=DEFAULT_TIME_BUDGET,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cls", help="cls, or a zoo name (ppocr-det, ...)")
    parser.add_argument("--sparsity", type=float, default=0.3)
    parser.add_argument("--lines", type=int, default=1000, help="recovery feeds")
    parser.add_argument("--calib-lines", type=int, default=128, help="calibration feeds")
    parser.add_argument("--eval", type=int, default=400, help="held-out feeds for fidelity")
    parser.add_argument("--runs", type=int, default=300, help="interleaved timing rounds")
    parser.add_argument(
        "--reuse-plain", action="store_true", help="keep the pruned model of an earlier run"
    )
    parser.add_argument("--time-budget", type=float, help="--recover's budget (default: its own)")
    parser.add_argument(
        "--peer", action="store_true", help="add Torch-Pruning + the same training (bench only)"
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    subject = cls_subject(args) if args.model == "cls" else zoo_subject(args.model, args)
    base = ["prune", str(subject.model), "--structured", "--sparsity", str(args.sparsity),
            "--calib", str(subject.calib)]  # fmt: skip
    variants = {
        "pruned": [],
        "pruned + --recover": ["--recover", "--recover-data", str(subject.recover_data)],
    }
    if args.time_budget:
        variants["pruned + --recover"] += ["--time-budget", str(args.time_budget)]
    paths, rows = {}, {}
    for name, extra in variants.items():
        out = OUT / f"{args.model}.{name.split()[-1].strip('-')}.onnx"
        argv = [*base, "-o", str(out), "--json", str(out.with_suffix(".json")), *extra]
        start = time.perf_counter()
        if args.reuse_plain and not extra and out.exists():
            pass
        elif onnxsmith(argv) != 0:
            raise SystemExit(f"failed: onnxsmith {' '.join(argv)}")
        paths[name] = out
        rows[name] = {
            "command": "onnxsmith " + " ".join(argv),
            "wall_s": round(time.perf_counter() - start, 1),
            **subject.score(out),
        }
    if args.peer:
        from torch_pruning_peer import PeerFailed

        start = time.perf_counter()
        out = OUT / f"{args.model}.torch-pruning.onnx"
        try:
            facts = peer_row(subject, args.sparsity, out)
        except PeerFailed as failure:
            print(f"| Torch-Pruning + training | failed: {failure} | - | - |")
        else:
            paths["Torch-Pruning + training"] = out
            rows["Torch-Pruning + training"] = {
                "command": f"bench/torch_pruning_peer.py {json.dumps(facts)}",
                "wall_s": round(time.perf_counter() - start, 1),
                **subject.score(out),
            }
    sessions = [create_session(p, threads=1) for p in (subject.model, *paths.values())]
    times = time_interleaved(sessions, subject.timing_feeds, warmup=10, runs=args.runs)
    for i, name in enumerate(paths, start=1):
        rows[name]["latency_ratio"] = ratio_ci95(times[i], times[0])
    print(f"{args.model}: {subject.note}; fp32 {np.median(times[0]):.3f} ms median")
    print("| model | fidelity to fp32 | latency vs fp32 [95% CI] | wall s |")
    print("|---|---:|---:|---:|")
    for name, row in rows.items():
        ratio, low, high = row["latency_ratio"]
        extra = f" ({row['accuracy_0_180']:.2%} 0/180)" if "accuracy_0_180" in row else ""
        print(f"| {name} | {row['fidelity']}{extra} | "
              f"{ratio:.3f} [{low:.3f}, {high:.3f}] | {row['wall_s']} |")  # fmt: skip
    for name, row in rows.items():
        print(f"{name}: {row['command']}")
    (OUT / f"{args.model}.results.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
