"""Wall and CPU time of `prune --structured --calib` with the defaults, on a real detector.

    .venv/bin/python -P bench/prune_time.py MODEL.onnx [--sparsity 0.3] [--feeds 8]

Calibration feeds are scikit-learn's two sample photos (china, flower), four square crops each,
resized to the model's fixed input size and scaled to [0, 1]. Prints each step as it runs (the
verb's progress), then the wall time, the CPU time of all threads, and the agreement with the
original. CPU time is the figure to compare across runs on a shared machine: the wall time
grows with the other jobs' load, the CPU time much less.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from onnxsmith.io import load_model
from onnxsmith.prune import prune_file
from onnxsmith.prune.result import PruneOptions
from onnxsmith.signature import input_specs


def photo_feeds(folder: Path, name: str, side: int, count: int) -> None:
    """`count` square crops of the sample photos as `{name: (1, 3, side, side)}` .npz files."""
    written = 0
    for photo in load_sample_images().images:
        h, w, _ = photo.shape
        for y, x, s in [
            (0, 0, h),
            (0, w - h, h),
            (h // 4, w // 4, h // 2),
            (0, w // 3, h * 4 // 5),
        ]:
            if written == count:
                return
            crop = Image.fromarray(photo[y : y + s, x : x + s]).resize((side, side))
            array = (np.asarray(crop, np.float32) / 255).transpose(2, 0, 1)[None]
            np.savez(folder / f"{written:03d}.npz", **{name: array})
            written += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--sparsity", type=float, default=0.3)
    parser.add_argument("--feeds", type=int, default=8)
    args = parser.parse_args()
    spec = input_specs(load_model(args.model))[0]
    assert spec.shape is not None and isinstance(spec.shape[-1], int), "needs a fixed input size"
    with tempfile.TemporaryDirectory() as folder:
        calib = Path(folder) / "calib"
        calib.mkdir()
        photo_feeds(calib, spec.name, spec.shape[-1], args.feeds)
        start = time.perf_counter()
        report = prune_file(
            args.model,
            Path(folder) / "pruned.onnx",
            PruneOptions(args.sparsity, structured=True),
            calib=calib,
            progress=True,
        )
        wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"wall {wall:.0f} s, CPU {usage.ru_utime + usage.ru_stime:.0f} s (all threads)")
    agreement = report.agreement
    print(f"agreement: cosine {agreement.cosine:.4f}, rel. error {agreement.rel_error:.3f}")


if __name__ == "__main__":
    main()
