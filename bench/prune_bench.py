"""Pruning benchmark: accuracy, latency and size vs sparsity, against torch.nn.utils.prune.

1. digits CNN: a small ResNet (32-64-128 channels) trained here with torch on scikit-learn
   digits upsampled to 32×32, exported with torch.onnx.export. For each sparsity 0.1…0.7:
   onnxsmith unstructured (with and without least-squares compensation), onnxsmith structured
   (with and without), and torch.nn.utils.prune on the same trained network
   (per-layer L1 unstructured, global L1 unstructured, and L2 structured channels), each
   exported the same way. Top-1 on the held-out split; latency of every variant measured in
   ONE interleaved run per sparsity (batch 1); sizes raw / zip / zstd.
2. PP-OCRv4 text detector from rapidocr-onnxruntime: output agreement with the unpruned
   model (cosine of the probability maps, IoU of the text masks at 0.3) on synthetic
   document images, latency interleaved at 1×3×320×320.

Usage: python -P bench/prune_bench.py [--quick] [--plot bench/prune_sweep.png]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir
import torch
import torch.nn.functional as F
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.utils import prune as torch_prune

from onnxsmith.compression import compressed_sizes
from onnxsmith.io import load_model
from onnxsmith.prune import PruneOptions, prune_model
from onnxsmith.prune.report import plot_sweep
from onnxsmith.synthetic import document_images

SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
THREADS = 1  # one intra-op thread: the machine has 2 cores shared with other jobs


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class DigitsResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.layers = nn.Sequential(Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2))
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_digits()
    images = torch.tensor(data.images[:, None] / 16.0, dtype=torch.float32)
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    x = ((images - 0.5) / 0.5).numpy()
    y = data.target
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


def train(x: np.ndarray, y: np.ndarray, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    net = DigitsResNet()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * (len(x) // 64 + 1))
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            shift = torch.randint(-2, 3, (2,)).tolist()  # light augmentation
            batch = torch.roll(xt[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(net(batch), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def export(net: nn.Module, path: Path) -> Path:
    torch.onnx.export(
        net,
        (torch.zeros(1, 1, 32, 32),),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
        opset_version=17,
    )
    return path


def torch_pruned(net: nn.Module, sparsity: float, how: str) -> nn.Module:
    """torch.nn.utils.prune as a knowledgeable user applies it, made permanent."""
    clone = DigitsResNet()
    clone.load_state_dict(net.state_dict())
    clone.eval()
    layers = [(m, "weight") for m in clone.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if how == "global":
        torch_prune.global_unstructured(layers, torch_prune.L1Unstructured, amount=sparsity)
    for module, name in layers:
        if how == "layer":
            torch_prune.l1_unstructured(module, name, amount=sparsity)
        elif how == "channels" and isinstance(module, nn.Conv2d):
            torch_prune.ln_structured(module, name, amount=sparsity, n=2, dim=0)
        if torch_prune.is_pruned(module):
            torch_prune.remove(module, name)
    return clone


def accuracy(model: ir.Model | Path, x: np.ndarray, y: np.ndarray) -> float:
    session = create_session(model, threads=THREADS)
    logits = session.run(None, {"image": x})[0]
    return float(np.mean(logits.argmax(axis=1) == y))


def size(model: ir.Model | Path) -> dict[str, int]:
    data = (
        Path(model).read_bytes()
        if isinstance(model, Path)
        else ir.to_proto(model).SerializeToString()
    )
    return compressed_sizes(data)


def timed(models: dict[str, ir.Model | Path], feed: dict, seconds: float) -> dict[str, float]:
    """Median latency ratio of each model vs the first, all in one interleaved run."""
    sessions = [create_session(m, threads=THREADS) for m in models.values()]
    times = time_interleaved(sessions, [feed], warmup=10, runs=None, seconds=seconds)
    return {name: ratio_ci95(t, times[0])[0] for name, t in zip(models, times, strict=True)}


def onnxsmith_variants(
    original: ir.Model, sparsity: float, calib: list[dict], prefix: str = ""
) -> dict[str, ir.Model | Path]:
    """Unstructured and structured pruning, each without and with least-squares compensation."""
    variants: dict[str, ir.Model | Path] = {}
    for structured in (False, True):
        for with_calib in (False, True):
            label = f"{prefix}{'structured' if structured else 'unstructured'}"
            label += " + LS" if with_calib else ""
            options = PruneOptions(sparsity, structured=structured, seconds=1.0, threads=THREADS)
            variants[label], _ = prune_model(original, options, calib if with_calib else ())
    return variants


def bench_digits(args: argparse.Namespace, tmp: Path) -> tuple[list[str], dict]:
    x_train, y_train, x_test, y_test = digits()
    start = time.perf_counter()
    net = train(x_train, y_train, epochs=2 if args.quick else 4)
    train_s = time.perf_counter() - start
    source = export(net, tmp / "digits.onnx")
    original = load_model(source)
    calib = [{"image": x_train[i : i + 16]} for i in range(0, 128, 16)]
    base_acc = accuracy(source, x_test, y_test)
    base_size = size(source)
    one = {"image": x_test[:1]}
    rows = [
        f"digits ResNet (32-64-128, {sum(p.numel() for p in net.parameters()):,} params), "
        f"trained {train_s:.0f} s, fp32 top-1 {base_acc:.1%} on {len(y_test)} held-out images; "
        f"{base_size['raw']:,} B raw, {base_size['zip']:,} zip, {base_size.get('zstd', 0):,} zstd",
        "",
        "| sparsity | variant | top-1 | Δ top-1 | latency ratio | zip B | zstd B |",
        "|---|---|---|---|---|---|---|",
    ]
    curves: dict = {"acc": {}, "lat": {}}
    for sparsity in SPARSITIES if not args.quick else (0.3, 0.5):
        variants = {
            "original": source,
            **onnxsmith_variants(original, sparsity, calib, "onnxsmith "),
        }
        for how in ("layer", "global", "channels"):
            path = tmp / f"torch-{how}-{sparsity}.onnx"
            variants[f"torch {how} L{'2' if how == 'channels' else '1'}"] = export(
                torch_pruned(net, sparsity, how), path
            )
        ratios = timed(variants, one, seconds=args.seconds)
        for label, model in variants.items():
            if label == "original":
                continue
            acc = accuracy(model, x_test, y_test)
            s = size(model)
            rows.append(
                f"| {sparsity:.1f} | {label} | {acc:.1%} | {100 * (acc - base_acc):+.1f} pt | "
                f"{ratios[label]:.2f}x | {s['zip']:,} | {s.get('zstd', 0):,} |"
            )
            curves["acc"].setdefault(label, []).append(acc)
            curves["lat"].setdefault(label, []).append(ratios[label])
        print(f"digits sparsity {sparsity} done", flush=True)
    return rows, curves


def bench_ppocr(args: argparse.Namespace) -> list[str]:
    import rapidocr_onnxruntime

    det = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
    original = load_model(det)
    side = 320
    calib = [{"x": page[None]} for page in document_images(4, side, seed=1)]
    check = document_images(4, side, seed=2)
    reference = create_session(det, threads=THREADS).run(None, {"x": check})[0]
    rows = [
        f"PP-OCRv4 det ({det.stat().st_size:,} B), {len(check)} synthetic document pages "
        f"{side}×{side}; text mask = probability > 0.3 (the detector's own threshold)",
        "",
        "| sparsity | variant | cosine | text-mask IoU | latency ratio | zstd B |",
        "|---|---|---|---|---|---|",
    ]
    one = {"x": check[:1]}
    for sparsity in (0.1, 0.3, 0.5, 0.7) if not args.quick else (0.3,):
        variants = {"original": det, **onnxsmith_variants(original, sparsity, calib)}
        ratios = timed(variants, one, seconds=args.seconds)
        for label, model in variants.items():
            if label == "original":
                continue
            out = create_session(model, threads=THREADS).run(None, {"x": check})[0]
            cosine = float(np.sum(out * reference) / np.sqrt(np.sum(out**2) * np.sum(reference**2)))
            a, b = out > 0.3, reference > 0.3
            iou = float(np.sum(a & b) / max(np.sum(a | b), 1))
            rows.append(
                f"| {sparsity:.1f} | {label} | {cosine:.3f} | {iou:.3f} | {ratios[label]:.2f}x | "
                f"{size(model).get('zstd', 0):,} |"
            )
        print(f"ppocr sparsity {sparsity} done", flush=True)
    return rows


class MobileNetish(nn.Module):
    """Depthwise-separable blocks, 32-64-128-256 channels (untrained: only latency matters)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU()]
        for cin, cout, stride in ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2)):
            layers += [
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin),
                nn.BatchNorm2d(cin),
                nn.ReLU(),
                nn.Conv2d(cin, cout, 1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def bench_multiples(args: argparse.Namespace, tmp: Path) -> list[str]:
    """The same structured pruning with kept counts rounded to 1 (none) or to the SIMD block."""
    torch.manual_seed(0)
    net = MobileNetish().eval()
    path = tmp / "mobilenetish.onnx"
    torch.onnx.export(
        net, (torch.zeros(1, 3, 96, 96),), str(path), input_names=["image"], dynamo=False,
        opset_version=17,
    )  # fmt: skip
    original = load_model(path)
    feed = {"image": np.random.default_rng(0).normal(size=(1, 3, 96, 96)).astype(np.float32)}
    rows = [
        "MobileNet-ish (depthwise-separable, 32-64-128-256 channels, 1×3×96×96), structured, "
        "no timing-based skipping (`measure=False`): kept channel counts rounded to 1 vs 8",
        "",
        "| sparsity | channel multiple | latency ratio |",
        "|---|---|---|",
    ]
    for sparsity in (0.3, 0.5):
        variants: dict[str, ir.Model | Path] = {"original": path}
        for multiple in (1, 8):
            options = PruneOptions(
                sparsity, structured=True, channel_multiple=multiple, measure=False, seconds=0.5
            )
            variants[str(multiple)], _ = prune_model(original, options)
        ratios = timed(variants, feed, seconds=args.seconds)
        rows += [f"| {sparsity:.1f} | {m} | {ratios[m]:.2f}x |" for m in ("1", "8")]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two sparsities, short training")
    parser.add_argument("--seconds", type=float, default=6.0, help="timing budget per sparsity")
    parser.add_argument("--plot", type=Path, help="write the digits sweep plot here")
    parser.add_argument("--skip-ppocr", action="store_true")
    parser.add_argument(
        "--only-multiples", action="store_true", help="just the channel-multiple comparison"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line),
        platform.processor(),
    )
    header = [
        f"CPU: {model_name}, {os.cpu_count()} cores; ORT intra-op threads {THREADS}; "
        f"latency = median pruned/original at batch 1, all variants of a sparsity interleaved in "
        f"one run ({args.seconds:.0f} s budget)",
        "",
    ]
    if args.only_multiples:
        with tempfile.TemporaryDirectory() as folder:
            print("\n".join(header + bench_multiples(args, Path(folder))))
        return
    with tempfile.TemporaryDirectory() as folder:
        rows, curves = bench_digits(args, Path(folder))
        rows += ["", *bench_multiples(args, Path(folder))]
    if args.plot:
        sparsities = list(SPARSITIES if not args.quick else (0.3, 0.5))
        plot_sweep(
            sparsities,
            curves["acc"],
            {k: v for k, v in curves["lat"].items() if "structured" in k and "un" not in k},
            args.plot,
            title="digits ResNet: top-1 and latency vs sparsity",
            accuracy_label="top-1 accuracy",
        )
    out = io.StringIO()
    print("\n".join(header + rows), file=out)
    if not args.skip_ppocr:
        print("\n" + "\n".join(bench_ppocr(args)), file=out)
    print(out.getvalue())


if __name__ == "__main__":
    main()
