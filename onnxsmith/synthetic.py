"""Synthetic document-like images, for checking text detectors offline (no data set needed)."""

from __future__ import annotations

import numpy as np

# PP-OCR / ImageNet normalization: what the rapidocr detectors expect.
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def document_images(count: int, side: int = 256, seed: int = 0) -> np.ndarray:
    """`count` normalized float32 images (N, 3, side, side): light paper with lines of dark
    word-like blocks of random size, spacing and ink, plus a little noise."""
    rng = np.random.default_rng(seed)
    pages = np.empty((count, 3, side, side), np.float32)
    for page in pages:
        page[:] = rng.uniform(0.85, 1.0, (3, 1, 1))
        y = int(rng.integers(4, 16))
        while y < side - 12:
            height = int(rng.integers(6, 16))
            x = int(rng.integers(4, 24))
            ink = rng.uniform(0.0, 0.35, (3, 1, 1))
            while x < side - 10:
                width = int(rng.integers(8, 48))
                word = page[:, y : y + height, x : min(x + width, side - 4)]
                strokes = rng.random(word.shape[1:]) < 0.55
                word[:, strokes] = np.broadcast_to(ink, (3, 1, 1))[:, 0, :]
                x += width + int(rng.integers(4, 14))
            y += height + int(rng.integers(6, 24))
    pages += rng.normal(0, 0.02, pages.shape).astype(np.float32)
    return (np.clip(pages, 0, 1) - MEAN) / STD
