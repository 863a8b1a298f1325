"""Small CNNs for the digits demo and benches, and a plain supervised training loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU ×3 (the last two with stride 2) → global average pool → linear.

    `width` scales every layer: 1.0 gives 32-64-128 channels (≈ 94 k parameters).
    """

    def __init__(self, width: float = 1.0, classes: int = 10) -> None:
        super().__init__()
        c1, c2, c3 = (max(8, round(c * width)) for c in (32, 64, 128))
        layers: list[nn.Module] = []
        for cin, cout, stride in ((1, c1, 1), (c1, c2, 2), (c2, c3, 2)):
            layers += [
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c3, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).mean(dim=(2, 3)))


def train_classifier(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 4,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """Trains with Adam and cross-entropy, seeded; returns the model in eval mode."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model.eval()


def teacher() -> DigitsCNN:
    """The demo's teacher architecture (16-32-64 channels, ≈ 24 k parameters), untrained."""
    return DigitsCNN(width=0.5)


def student() -> DigitsCNN:
    """The demo's student: 8-8-16 channels, ≈ 2.9 k parameters (8x fewer), untrained."""
    return DigitsCNN(width=0.125)


def train_and_export_teachers(
    images: np.ndarray, labels: np.ndarray, out: Path, *, count: int, epochs: int
) -> list[Path]:
    """Trains `count` teachers (seeds 0..count-1) and exports each, parity-checked, with a
    dynamic batch: `out/teacher{seed}.onnx` with input `image` and output `logits`."""
    from onnxsmith.exporter.export import export

    example = torch.from_numpy(images[:1])
    paths = []
    for seed in range(count):
        torch.manual_seed(seed)  # the initial weights too, not only the training
        model = train_classifier(teacher(), images, labels, epochs=epochs, seed=seed)
        path = out / f"teacher{seed}.onnx"
        export(
            model, example, path, input_names=["image"], output_names=["logits"], dynamic_batch=True
        )
        paths.append(path)
    return paths
