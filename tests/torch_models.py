"""Small torch models for the exporter and distillation tests (factories double as CLI targets)."""

from __future__ import annotations

import torch
from torch import nn


class ConvBN(nn.Module):
    """Conv→BN→ReLU twice, dropout, pool, linear: the shape of a small image classifier."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(16, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = self.features(image).mean((2, 3))
        return self.head(self.dropout(pooled))


class Mlp(nn.Module):
    def __init__(self, features: int = 16, hidden: int = 32, classes: int = 4) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TinyEncoder(nn.Module):
    """Token embedding + a transformer encoder layer with a padding mask."""

    def __init__(self, vocab: int = 50, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, 2, 32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(ids), src_key_padding_mask=mask == 0)


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor):
        return self.lstm(x)


class TwoInTwoOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 3)
        self.b = nn.Linear(6, 3)

    def forward(self, left: torch.Tensor, right: torch.Tensor):
        mixed = self.a(left) * self.b(right)
        return mixed.sum(-1), torch.cat([left, right], dim=-1)


class DictIO(nn.Module):
    """Keyword inputs in, a dict out (as Hugging Face models take and return)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.embed(ids) * mask.unsqueeze(-1)
        return {"pooled": tokens.sum(1) / mask.sum(1, keepdim=True), "tokens": tokens}


class OverflowGuard(nn.Module):
    """A value-dependent branch (an overflow guard, as T5 has): torch.export cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.abs().max() > 1e4:
            x = x / x.abs().max()
        return self.linear(x)


class SizeBranch(nn.Module):
    """Code that depends on a dim meant to be dynamic: right only at the example's length."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 8:
            return x * 2
        return x


class Histogram(nn.Module):
    """aten::histc over the data range: neither torch exporter can convert it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.histc(x, bins=5)


def build_mlp() -> nn.Module:
    torch.manual_seed(0)
    return Mlp()


def build_mlp_five_classes() -> nn.Module:
    return Mlp(classes=5)


def build_mlp_with_inputs():
    torch.manual_seed(0)
    return Mlp(), torch.randn(3, 16)


def build_histogram():
    return Histogram(), torch.randn(4, 4)
