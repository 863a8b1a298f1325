"""Distillation on scikit-learn digits: 3 CNN teachers → a student 20x smaller, then int8.

1. Train three CNN teachers (different widths and seeds) with cross-entropy; export each with
   `onnxsmith export`.
2. Train the same small student three ways with `onnxsmith distill` (same loop, same settings,
   early stopping on validation accuracy), over three seeds:
   labels only (`--alpha 0`), distilled from the ensemble with labels (`--alpha 0.7`),
   distilled from the ensemble without labels.
3. Test-set accuracy of everything in ONNX Runtime; latency of the student vs the ensemble
   (3 sessions, summed per round), measured interleaved, batch 1 and batch 64, one thread.
4. Quantize the distilled student with `onnxsmith quantize` (defaults, top-1 metric on the
   validation split) and compare the whole chain: ensemble → student → int8 student.

    .venv/bin/python -P bench/distill_bench.py [--seeds 3] [--runs 300]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from onnxsmith.exporter.export import export
from onnxsmith.exporter.teacher_outputs import softmax
from onnxsmith.runtime.predict import predict
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from onnxsmith.cli.main import main as onnxsmith
from onnxsmith.io import load_model
from onnxsmith.summary import summarize

OUT = Path(__file__).parent / "out" / "distill"
HERE = Path(__file__).resolve()
DISTILL = ["--epochs", "60", "--patience", "10", "--lr", "3e-3", "--batch-size", "64"]
DISTILL += ["--temperature", "4", "--latency-runs", "0"]
VARIANTS = {
    "labels only (--alpha 0)": ["--labels", "{train_labels}", "--alpha", "0"],
    "distilled + labels (--alpha 0.7)": ["--labels", "{train_labels}", "--alpha", "0.7"],
    "distilled, no labels": [],
}


class Teacher(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * width, 10))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).mean((2, 3)))


class Student(nn.Module):
    """One 3x3 conv, pool, linear: 2.7 k parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.max_pool2d(torch.relu(self.conv(image)), 2)
        return self.head(pooled.flatten(1))


def build_student() -> nn.Module:
    """The `--student` target (`bench/distill_bench.py:build_student`)."""
    return Student()


def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(
        images, labels, test_size=0.4, stratify=labels, random_state=0
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0
    )
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


def write_dirs(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Path]:
    """Data dirs of 128-image feeds, with label dirs beside them."""
    dirs = {}
    for split, (images, labels) in data.items():
        folder, label_folder = OUT / split, OUT / f"{split}_labels"
        for f in (folder, label_folder):
            f.mkdir(parents=True, exist_ok=True)
            for old in f.glob("*.npz"):
                old.unlink()
        for i, start in enumerate(range(0, len(images), 128)):
            np.savez(folder / f"{i:03d}.npz", image=images[start : start + 128])
            np.savez(label_folder / f"{i:03d}.npz", label=labels[start : start + 128])
        dirs[split], dirs[f"{split}_labels"] = folder, label_folder
    return dirs


def train_teacher(width: int, seed: int, data, epochs: int = 30) -> nn.Module:
    torch.manual_seed(seed)
    model = Teacher(width)
    x, y = (torch.from_numpy(a) for a in data["train"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(x), generator=generator).split(64):
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def accuracy(path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    logits = predict(create_session(path), {"image": images}, label=str(path))
    return float((logits.argmax(1) == labels).mean())


def params(path: Path) -> int:
    return summarize(load_model(path)).weights.params


def latency_rows(
    student: Path, teachers: list[Path], quantized: Path | None, images, runs: int
) -> list[str]:
    students = [student] if quantized is None else [student, quantized]
    sessions = [create_session(p, threads=1) for p in (*students, *teachers)]
    rows = []
    for batch in (1, 64):
        feeds = [{"image": images[i : i + batch]} for i in range(0, 8 * batch, batch)]
        times = time_interleaved(sessions, feeds, warmup=10, runs=runs)
        ensemble = np.sum(times[len(students) :], axis=0)
        names = ("student fp32", "student int8")[: len(students)]
        for name, samples in zip(names, times, strict=False):  # times: students, then teachers
            ratio, low, high = ratio_ci95(samples, ensemble)
            rows.append(
                f"| {name} | {batch} | {np.median(samples):.3f} | {np.median(ensemble):.3f} | "
                f"{ratio:.3f} [{low:.3f}, {high:.3f}] |"
            )
        if quantized is None:
            continue
        ratio, low, high = ratio_ci95(times[1], times[0])
        rows.append(
            f"| int8 / fp32 student | {batch} | {np.median(times[1]):.3f} | "
            f"{np.median(times[0]):.3f} | {ratio:.3f} [{low:.3f}, {high:.3f}] |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="student seeds per variant")
    parser.add_argument("--runs", type=int, default=300, help="interleaved timing rounds")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data = splits()
    dirs = write_dirs(data)
    x_test, y_test = data["test"]

    teachers = []
    for i, (width, seed) in enumerate(((24, 0), (32, 1), (40, 2))):
        model = train_teacher(width, seed, data)
        path = OUT / f"teacher{i}.onnx"
        export(model, torch.from_numpy(data["train"][0][:8]), path, dynamic_batch=True)
        teachers.append(path)
    probabilities = [
        softmax(predict(create_session(t), {"image": x_test}, label=str(t))) for t in teachers
    ]
    ensemble_accuracy = float((np.mean(probabilities, 0).argmax(1) == y_test).mean())

    print("| model | params | test accuracy |\n|---|---:|---:|")
    for t in teachers:
        print(f"| {t.name} | {params(t):,} | {accuracy(t, x_test, y_test):.2%} |")
    print(
        f"| ensemble of 3 (mean probabilities) | {sum(params(t) for t in teachers):,} | "
        f"{ensemble_accuracy:.2%} |"
    )

    results: dict[str, list[float]] = {}
    student_path = OUT / "student.onnx"
    for number, (variant, extra) in enumerate(VARIANTS.items()):
        for seed in range(args.seeds):
            out = OUT / f"student-{number}-{seed}.onnx"
            argv = [
                "distill", *map(str, teachers), "--student", f"{HERE}:build_student",
                "--data", str(dirs["train"]), "--eval", str(dirs["val"]),
                "--eval-labels", str(dirs["val_labels"]), "-o", str(out), "--seed", str(seed),
                "--json", str(out.with_suffix(".json")), "--work-dir", str(OUT / "work"),
                *DISTILL, *(e.format(train_labels=dirs["train_labels"]) for e in extra),
            ]  # fmt: skip
            if onnxsmith(argv) != 0:
                raise SystemExit(f"distill failed: onnxsmith {' '.join(argv)}")
            results.setdefault(variant, []).append(accuracy(out, x_test, y_test))
            if variant.startswith("distilled + labels") and seed == 0:
                student_path = out
                command = "onnxsmith " + " ".join(argv)
        print(f"| student: {variant} | {params(out):,} | ", end="")
        scores = np.array(results[variant])
        print(
            f"{scores.mean():.2%} ± {scores.std():.2%} ({', '.join(f'{s:.2%}' for s in scores)}) |"
        )

    quantized = OUT / "student.int8.onnx"
    quantize_argv = [
        "quantize", str(student_path), "-o", str(quantized), "--calib", str(dirs["train"]),
        "--eval", str(dirs["val"]), "--metric", "top1",
    ]  # fmt: skip
    if onnxsmith(quantize_argv) == 0:
        print(
            f"| student distilled + labels, seed 0, int8 (`onnxsmith quantize`) | "
            f"{params(quantized):,} | {accuracy(quantized, x_test, y_test):.2%} |"
        )
    else:  # refused (its one-line reason is on stderr): e.g. int8 slower than fp32 here
        print("| student int8 | - | refused by `onnxsmith quantize` (see its message) |")
        quantized = None
    print(f"\nstudent command (seed 0): {command}")
    print(f"int8 command: onnxsmith {' '.join(quantize_argv)}")
    print("\n| model | batch | median ms | ensemble median ms | ratio [95% CI] |")
    print("|---|---:|---:|---:|---:|")
    for row in latency_rows(student_path, teachers, quantized, x_test, args.runs):
        print(row)
    sizes = {p.name: p.stat().st_size for p in (*teachers, student_path, quantized) if p}
    print("\nfile bytes:", json.dumps(sizes))


if __name__ == "__main__":
    main()
