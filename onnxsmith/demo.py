"""The end-to-end demo: digits CNNs trained here, then every verb, every number measured now.

Steps: train 3 CNN teachers on scikit-learn digits (torch) → export (parity-checked) →
optimize → prune (structured, compensated) → quantize → merge the 3 into one graph → distill the
ensemble into a 8x smaller student → quantize it → bench everything against the fp32 model
(interleaved, with accuracy on held-out digits) → HTML report → Triton repository.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from onnxsmith.digits import load_digits_split, write_feeds, write_labels
from onnxsmith.errors import NotFasterError


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """How much work the demo does; `quick` is what CI runs."""

    epochs: int
    distill_epochs: int
    bench_seconds: float
    memory: bool

    @classmethod
    def choose(cls, quick: bool) -> DemoSettings:
        if quick:
            return cls(epochs=3, distill_epochs=4, bench_seconds=1.0, memory=False)
        return cls(epochs=8, distill_epochs=40, bench_seconds=4.0, memory=True)


MODELS = (  # (label in the final table, file)
    ("fp32 teacher (export)", "teacher0.onnx"),
    ("optimized", "teacher0.opt.onnx"),
    ("pruned 30 % structured", "teacher0.pruned.onnx"),
    ("pruned + int8", "teacher0.pruned.int8.onnx"),
    ("3-teacher ensemble, merged", "ensemble.onnx"),
    ("distilled student", "student.onnx"),
    ("student int8", "student.int8.onnx"),
)


def prepare(out: Path, settings: DemoSettings, say: Callable[[str], None]) -> dict[str, Path]:
    """Data dirs and three trained, exported teachers."""
    from onnxsmith.exporter.digits import train_and_export_teachers

    split = load_digits_split(seed=0)
    data = {
        "train": write_feeds(out / "data" / "train", split.train_x, batch=16),
        "train_labels": write_labels(out / "data" / "train_labels", split.train_y, batch=16),
        # Batches of 32, as a server would run them: at batch 1 these 16x16 images are too
        # small for int8 to save anything over the per-call overhead.
        "calib": write_feeds(out / "data" / "calib", split.calib_x, batch=32),
        "eval": write_feeds(out / "data" / "eval", split.eval_x, batch=32),
        "labels": write_labels(out / "data" / "eval_labels", split.eval_y, batch=32),
    }
    say(
        f"digits: {len(split.train_x)} train, {len(split.calib_x)} calibration, "
        f"{len(split.eval_x)} held-out images (16x16)"
    )
    for path in train_and_export_teachers(
        split.train_x, split.train_y, out, count=3, epochs=settings.epochs
    ):
        say(f"trained and exported {path.name} (parity-checked against torch)")
    return data


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """The models benchmarked (label, file), bench's report.json, and quantize's refusals."""

    shipped: list[tuple[str, str]]
    bench: dict[str, Any]
    refused: dict[str, str]


def run_demo(
    out: Path,
    *,
    quick: bool,
    say: Callable[[str], None],
    run_verb: Callable[[Sequence[str]], None],
) -> DemoResult:
    """Runs the whole demo into `out`, each step through `run_verb` (the CLI's verb table)."""

    settings = DemoSettings.choose(quick)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare(out, settings, say)
    o = str(out)
    steps = [
        ["optimize", f"{o}/teacher0.onnx", "-o", f"{o}/teacher0.opt.onnx"],
        [
            "prune",
            f"{o}/teacher0.opt.onnx",
            "-o",
            f"{o}/teacher0.pruned.onnx",
            "--structured",
            "--sparsity",
            "0.3",
            "--calib",
            str(data["calib"]),
        ],
        [
            "quantize",
            f"{o}/teacher0.pruned.onnx",
            "-o",
            f"{o}/teacher0.pruned.int8.onnx",
            "--calib",
            str(data["calib"]),
        ],
        [
            "merge",
            *(f"{o}/teacher{i}.onnx" for i in range(3)),
            "-o",
            f"{o}/ensemble.onnx",
            "--mode",
            "mean",
            "--softmax",
        ],
        [
            "distill",
            f"{o}/ensemble.onnx",
            "--student",
            "onnxsmith.exporter.digits:student",
            "--data",
            str(data["train"]),
            "--labels",
            str(data["train_labels"]),
            "--eval",
            str(data["eval"]),
            "--eval-labels",
            str(data["labels"]),
            "--epochs",
            str(settings.distill_epochs),
            "--lr",
            "3e-3",
            "-o",
            f"{o}/student.onnx",
        ],
        [
            "quantize",
            f"{o}/student.onnx",
            "-o",
            f"{o}/student.int8.onnx",
            "--calib",
            str(data["calib"]),
        ],
    ]
    refused: dict[str, str] = {}
    for argv in steps:
        target = Path(argv[argv.index("-o") + 1])
        say(f"onnxsmith {argv[0]} → {target.name}")
        try:
            run_verb(argv)
        except NotFasterError as e:  # quantize refuses int8 slower than fp32; the demo shows it
            refused[target.name] = str(e)
            say(f"[yellow]quantize kept {target.name} out: {e}[/]")
    shipped = [(label, name) for label, name in MODELS if name not in refused]
    bench = [
        "bench",
        *(f"{o}/{name}" for _, name in shipped),
        "--data",
        str(data["calib"]),
        "--eval",
        str(data["eval"]),
        "--labels",
        str(data["labels"]),
        "--seconds",
        str(settings.bench_seconds),
        "--report",
        f"{o}/report",
    ]
    if not settings.memory:
        bench.append("--no-memory")
    say("onnxsmith bench: every model against the fp32 teacher, interleaved")
    run_verb(bench)
    run_verb(
        [
            "serve-export",
            f"{o}/{'student.onnx' if 'student.int8.onnx' in refused else 'student.int8.onnx'}",
            "--format",
            "triton",
            "-o",
            f"{o}/triton",
            "--name",
            "digits_student",
        ]
    )
    results = json.loads((out / "report" / "report.json").read_text())
    return DemoResult(shipped=shipped, bench=results, refused=refused)
