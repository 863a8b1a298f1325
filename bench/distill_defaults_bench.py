"""`onnxsmith distill` with DEFAULT options on scikit-learn digits (issue 17's case).

Three ONNX MLP teachers (64→128→10, 64→96→10, 64→64→10, trained here on the labels and exported
with `onnxsmith.exporter.export`); 1,257 training digits written as one-sample feed files
(no labels given to the distilled student); the student is 64→24→10 from `FILE.py:student`.
Test accuracy (540 held-out digits, ONNX Runtime) of:

- the ensemble (mean of the teachers' probabilities);
- the student distilled with `onnxsmith distill T1 T2 T3 --student ... --data DIR -o OUT`
  and nothing else;
- the same student trained on the labels by the same verb with defaults (`--labels DIR
  --alpha 0`).

    .venv/bin/python -P bench/distill_defaults_bench.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from onnxsmith.exporter.export import export
from onnxsmith.exporter.teacher_outputs import softmax
from onnxsmith.runtime.predict import predict
from onnxsmith.runtime.session import create_session
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from onnxsmith.cli.main import main as onnxsmith

OUT = Path(__file__).parent / "out" / "distill_defaults"
HERE = Path(__file__).resolve()
TEACHERS = ((128, 0), (96, 1), (64, 2))  # hidden width, seed


def student() -> nn.Module:
    """The `--student` target: 64→24→10 with ReLU (1,810 parameters)."""
    return nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    return train_test_split(x, digits.target, test_size=0.3, stratify=digits.target, random_state=0)


def train_teacher(width: int, seed: int, x: np.ndarray, y: np.ndarray) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(60):
        for index in torch.randperm(len(xt), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[index]), yt[index]).backward()
            optimizer.step()
    return model.eval()


def accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    logits = predict(create_session(path), {"x": x}, label=str(path))
    return float((logits.argmax(1) == y).mean())


def write_feeds(x: np.ndarray, y: np.ndarray) -> tuple[Path, Path]:
    data, labels = OUT / "train", OUT / "train_labels"
    for folder in (data, labels):
        folder.mkdir(parents=True, exist_ok=True)
    for i, (sample, label) in enumerate(zip(x, y, strict=True)):
        np.savez(data / f"{i:04d}.npz", x=sample[None])
        np.savez(labels / f"{i:04d}.npz", label=np.array([label], np.int64))
    return data, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="student seeds per variant")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    x_train, x_test, y_train, y_test = split()
    data, labels = write_feeds(x_train, y_train)
    teachers = []
    for width, seed in TEACHERS:
        path = OUT / f"teacher{width}.onnx"
        model = train_teacher(width, seed, x_train, y_train)
        export(model, torch.from_numpy(x_train[:4]), path, input_names=["x"], dynamic_batch=True)
        teachers.append(path)
    probs = [softmax(predict(create_session(t), {"x": x_test}, label=str(t))) for t in teachers]
    ensemble = float((np.mean(probs, 0).argmax(1) == y_test).mean())
    print(f"teachers: {[f'{accuracy(t, x_test, y_test):.2%}' for t in teachers]}")
    print(f"ensemble: {ensemble:.2%}")
    variants = {
        "distilled (defaults)": [],
        "labels (--labels --alpha 0)": ["--labels", str(labels), "--alpha", "0"],
    }
    results: dict[str, list[dict[str, object]]] = {}
    for name, extra in variants.items():
        for seed in range(args.seeds):
            out = OUT / f"student-{len(results)}-{seed}.onnx"
            argv = ["distill", *map(str, teachers), "--student", f"{HERE}:student",
                    "--data", str(data), "-o", str(out), "--seed", str(seed),
                    "--json", str(out.with_suffix(".json")), *extra]  # fmt: skip
            start = time.perf_counter()
            if onnxsmith(argv) != 0:
                raise SystemExit(f"distill failed: onnxsmith {' '.join(argv)}")
            report = json.loads(out.with_suffix(".json").read_text())
            results.setdefault(name, []).append(
                {
                    "accuracy": accuracy(out, x_test, y_test),
                    "epochs": len(report["history"]),
                    "stopped": report.get("stop_reason", None),
                    "seconds": round(time.perf_counter() - start, 1),
                    "command": "onnxsmith " + " ".join(argv),
                }
            )
    print("\n| model | test accuracy | epochs | wall s |\n|---|---:|---:|---:|")
    print(f"| ensemble of 3 | {ensemble:.2%} | - | - |")
    for name, runs in results.items():
        scores = np.array([r["accuracy"] for r in runs])
        epochs = ", ".join(str(r["epochs"]) for r in runs)
        seconds = ", ".join(str(r["seconds"]) for r in runs)
        print(f"| student, {name} | {scores.mean():.2%} ± {scores.std():.2%} "
              f"({', '.join(f'{s:.2%}' for s in scores)}) | {epochs} | {seconds} |")  # fmt: skip
    for name, runs in results.items():
        print(f"{name}: stop: {runs[0]['stopped']}\n  {runs[0]['command']}")


if __name__ == "__main__":
    main()
