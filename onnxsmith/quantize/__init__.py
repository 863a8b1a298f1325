"""`quantize` as a function: prepare, calibrate, choose per node, validate, save, report.

The steps (see `search.py` for how the choice is made):
1. prepare: cleanup recipe, opset >= 13, names, shapes;
2. data: calibration feeds streamed from `--calib`, eval feeds from `--eval` or held out;
3. search: latency probe, calibration, SmoothQuant, sensitivity fallback;
4. check: final latency against fp32 (interleaved, over the eval set's shape buckets, until
   the 95 % interval excludes 1), kernels ORT really runs, per-layer SQNR;
5. save with provenance; the report (and `--report DIR`) says what ran in int8 and why.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxsmith.errors import NotFasterError, PassError, UsageError, name_list
from onnxsmith.io import load_model, save_model, weight_bytes
from onnxsmith.passes.cleanup.shapes import DropIntermediateShapesPass
from onnxsmith.passes.quantize import COMPANIONS, FORMATS, find_candidates, prepare_passes
from onnxsmith.pipeline import apply, count_nodes
from onnxsmith.progress import Reporter
from onnxsmith.provenance import record_step
from onnxsmith.quantize.frontier import FrontierPoint, measure_frontier, write_refused_frontier
from onnxsmith.quantize.latency import Latency, measure_latency
from onnxsmith.quantize.report import LayerRow, QuantizeReport
from onnxsmith.quantize.search import (
    RANKINGS,
    Search,
    SearchSettings,
    clone,
    observable_output,
)
from onnxsmith.quantize.sensitivity import layer_errors
from onnxsmith.runtime.calibrate import METHODS
from onnxsmith.runtime.cpu import CpuFacts
from onnxsmith.runtime.data import DataDir, Feed
from onnxsmith.runtime.fidelity import AUTO, Score, is_plugin, load_plugin, metric_names
from onnxsmith.runtime.labels import read_labels
from onnxsmith.runtime.metric import EvalSet
from onnxsmith.runtime.timer import LocalTimer, Timer
from onnxsmith.runtime.timing import FASTER, ShapeBucket, shape_buckets
from onnxsmith.signature import input_specs
from onnxsmith.summary import QUANTIZED_OPS

EVAL_LIMIT = 64  # eval feeds kept in memory and run for every candidate
HOLD_OUT_EVERY = 5  # without --eval, every 5th calibration feed is held out for the metric
_SQNR_FEEDS = 4
METADATA_KEY = "onnxsmith.quantize"


def quantize(
    source: str | Path,
    output: str | Path,
    *,
    calib: str | Path,
    eval_data: str | Path | None = None,
    labels: str | Path | None = None,
    metric: str = AUTO,
    max_loss: float | None = None,
    method: str = "auto",
    per_channel: bool = True,
    smoothquant: float | str = "auto",
    bias_correction: bool = False,
    weight_rounding: bool = True,
    frontier: bool = False,
    ranking: str = "isolated",
    companions: str = "auto",
    range_search: bool = True,
    ops: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    latency_aware: bool = True,
    quant_format: str = "qdq",
    report_dir: str | Path | None = None,
    threads: int | None = None,
    timing_seconds: float = 6.0,
    progress: bool = False,
    timer: Timer | None = None,
) -> QuantizeReport:
    """Quantizes `source` to int8 and writes `output` (and `report_dir`) only if all went well.

    Args:
        source: the fp32 model (never modified).
        output: where the int8 model goes.
        calib: data dir of calibration feeds (one .npz per feed, shapes may vary).
        eval_data: data dir for the metric; default: every 5th calibration feed, held out.
        labels: labels of `eval_data` (`runtime.labels` layout): the one `top1` or `ctc`
            output is then judged by the accuracy it loses against them, not by how far its
            decisions move from fp32's.
        metric: how outputs are compared with fp32's: `auto` (chosen per output from its
            structure: top1, ctc, mask_iou, detection_f1, embedding, cosine; see
            `onnxsmith.runtime.fidelity`), one of those names, or `file.py:fn`.
        max_loss: allowed loss on every output, in its metric's terms (default: the metric's
            own tolerance, e.g. 1 % of top-1 decisions, CER 0.005, 1 - F1 0.03).
        method: calibration: minmax, percentile, entropy, mse, or auto (try all, keep best).
        per_channel: int8 weights per output channel (else per tensor).
        smoothquant: "auto" (tried; kept when the target needs it or it cuts the loss by
            `SMOOTHING_GAIN`), "search" (always, alpha searched), "off", or an alpha in [0, 1].
        bias_correction: try bias correction on static Conv/Gemm nodes (kept if it lowers
            the loss; off by default, it lowered none on the real models measured).
        weight_rounding: try weights rounded to keep each static layer's output error small
            on the calibration inputs (GPTQ-style; kept if it lowers the loss).
        frontier: also time every int8 configuration the search scored against fp32 and put
            fidelity against latency in the report (a table, `frontier.svg`); costs one more
            interleaved timing run and keeps each scored model in memory meanwhile.
        ranking: how the fallback orders nodes: "isolated" (each alone in int8, error at the
            output) or "accumulated" (error each adds in the all-int8 model).
        companions: which neighbours of static nodes join the int8 chains: "all", "structural"
            (Add/Mul stay float), or "auto" (both scored, the lower loss kept).
        range_search: search the input ranges of the most sensitive static nodes per tensor
            (with method "auto").
        ops: op types to quantize (default Conv, ConvTranspose, MatMul, Gemm).
        exclude: node names to keep in fp32.
        latency_aware: keep an int8 mode for an op group only if it runs faster here, and
            refuse a result slower than fp32.
        quant_format: "qdq" (default) or "qoperator" for static nodes.
        report_dir: also write report.json and report.md there.
        threads: ORT intra-op threads for every measurement (default: ORT's choice).
        timing_seconds: time spent on each latency comparison (the probe, the final check).
        progress: print phases and progress bars on stderr.
        timer: where the latency probe, the final check and the kernel count run, and whose
            CPU decides 7-bit weights (default: this machine; see `runtime.remote` for a
            `--target` node).

    Raises:
        UsageError: a bad option. DataError: data that does not fit the model.
        PassError: nothing quantizable, an already-quantized model, or an int8 result slower
            than fp32 (with `latency_aware`). Nothing is written in any of these cases.
    """
    started = time.perf_counter()
    smoothquant = _check_options(
        metric,
        max_loss,
        method,
        smoothquant,
        quant_format,
        report_dir,
        timing_seconds,
        ranking,
        companions,
    )
    if labels is not None and eval_data is None:
        raise UsageError("quantize: --labels needs --eval DIR, the feeds they label")
    reporter = Reporter(progress)
    timer = timer or LocalTimer()
    reporter.phase(f"loading {source}")
    original = load_model(source)
    _refuse_quantized(original, source)
    prepared, pipeline = apply(prepare_passes(original), load_model(source))
    reporter.phase(f"prepared: {count_nodes(original)} → {count_nodes(prepared)} nodes")
    candidates = find_candidates(prepared, ops, exclude)
    if not candidates:
        raise PassError(_nothing_to_quantize(prepared, source))

    specs = input_specs(prepared)
    calib_data = DataDir(calib, specs, step="quantize")
    warnings: list[str] = []
    evaluation = None if eval_data is None else DataDir(eval_data, specs, step="quantize")
    eval_feeds, calib_source, calib_count, eval_origin = _split(calib_data, evaluation, warnings)
    reporter.phase(f"data: {calib_count} calibration feeds, {len(eval_feeds)} eval ({eval_origin})")
    evalset = EvalSet(
        original, eval_feeds, metric, tolerance=max_loss, threads=threads,
        labels=_eval_labels(labels, evaluation, len(eval_feeds)),
    )  # fmt: skip
    for line in evalset.plan.describe():
        reporter.phase(line)

    settings = SearchSettings(
        method=method,
        per_channel=per_channel,
        smoothquant=smoothquant,
        latency_aware=latency_aware,
        quant_format=quant_format,
        reduce_range=timer.cpu().int8_saturates(),
        full_range_measurable=timer.cpu().int8_saturates() == CpuFacts.here().int8_saturates(),
        threads=threads,
        probe_seconds=timing_seconds,
        bias_correction=bias_correction,
        weight_rounding=weight_rounding,
        keep_trials=frontier,
        ranking=ranking,
        companions=companions,
        range_search=range_search,
    )
    search = Search(
        prepared, candidates, calib_source, evalset, settings, reporter, calib_count, timer
    )
    result = search.run()
    if not result.plan.modes:
        raise PassError(
            f"quantize: no node can stay int8 within the fidelity tolerance ({metric} metric) "
            "— nothing written; raise --max-loss or check the calibration data"
        )
    if not result.met:
        warnings.append(
            "the fidelity tolerance is not reachable: the best int8 model found has "
            f"{result.score.describe()}, missing by {_missing(result.score):.4g}; it is written "
            "anyway"
        )
    model = result.model
    _validate(model)

    buckets = shape_buckets(eval_feeds)
    reporter.phase(
        f"checking latency against fp32 (interleaved, {len(buckets)} shape buckets: "
        f"{'; '.join(b.label for b in buckets)}) and ORT's kernels on {timer.where}"
    )
    kernels = timer.kernels(model, threads)
    timed, latency, shapes = _fastest_form(
        timer, model, (original, prepared), buckets, latency_aware, threads,
        timing_seconds,
    )  # fmt: skip
    if timed is not model:  # the form without shapes won: count what ORT runs for it
        model = timed
        kernels = timer.kernels(model, threads)
    if shapes != "kept":
        reporter.phase(f"intermediate shapes {shapes}")
    if result.plan.nodes("static") and kernels.integer_kernels == 0:
        warnings.append(
            "onnxruntime fused none of the Q/DQ nodes into integer kernels: static nodes run as "
            f"float with extra conversions ({kernels.describe()})"
        )
    points: tuple[FrontierPoint, ...] = ()
    if frontier:
        reporter.phase(f"timing the frontier: {len(result.trial_models)} configurations vs fp32")
        points = measure_frontier(
            timer, (original, prepared), result, latency, buckets,
            seconds=timing_seconds, threads=threads,
        )  # fmt: skip
    message = _not_faster(latency, timer.where)
    if message:
        if latency_aware:
            shown = ""
            if points and report_dir is not None:
                write_refused_frontier(Path(report_dir), points, str(source), message)
                shown = (
                    f"; what each configuration tried measured: {Path(report_dir) / 'frontier.md'}"
                )
            relax = "relax --max-loss"
            if evalset.plan.labels_would_judge:
                relax += " or judge the accuracy lost with --eval DIR --labels DIR"
            raise NotFasterError(
                f"quantize: {message} — nothing written{shown}; {relax}, or pass "
                "--no-latency-aware to write it anyway (e.g. for an int8 accelerator)"
            )
        warnings.append(f"{message}; written because --no-latency-aware was given")

    layers = _layers(result, candidates, eval_feeds)
    options = {
        "metric": metric,
        "labels": None if labels is None else str(labels),
        "max_loss": max_loss,
        "method": result.method,
        "per_channel": per_channel,
        "smoothquant": result.smoothing.alpha if result.smoothing else None,
        "bias_correction": result.bias_corrected,
        "weight_rounding": result.weights_rounded,
        "companions": result.companions,
        "ops": list(ops) if ops else None,
        "exclude": list(exclude),
        "latency_aware": latency_aware,
        "format": quant_format,
        "static_weight_bits": result.weight_bits,
        "intermediate_shapes": shapes,
        "target": timer.target,  # None: tuned for the machine that ran quantize
    }
    report = QuantizeReport(
        source=str(source),
        output=str(output),
        options=options,
        pipeline=pipeline,
        candidates=tuple(candidates),
        result=result,
        metric_plan=evalset.plan,
        latency=latency,
        kernels=kernels,
        weight_bytes=(weight_bytes(original), weight_bytes(model)),
        layers=tuple(layers),
        data={"calibration_feeds": calib_count, "eval_feeds": len(eval_feeds), "eval": eval_origin},
        warnings=tuple(warnings),
        seconds=time.perf_counter() - started,
        frontier=points,
    )
    record_step(model, "quantize", options)
    model.metadata_props[METADATA_KEY] = json.dumps(report.provenance(), sort_keys=True)
    save_model(model, output, inputs=[source])
    if report_dir is not None:
        report.write(Path(report_dir))
    reporter.phase(f"done in {report.seconds:.1f}s")
    return report


def _fastest_form(
    timer: Timer,
    model: ir.Model,
    fp32: tuple[ir.Model, ir.Model],
    buckets: tuple[ShapeBucket, ...],
    latency_aware: bool,
    threads: int | None,
    seconds: float,
) -> tuple[ir.Model, Latency, str]:
    """Times `model` against fp32 (the original, the prepared) — with latency_aware, also the
    same model without its intermediate shapes, from which ORT decides some fusions — and
    returns the faster form, its latency, and what was done with the shapes."""
    finalists = [model]
    if latency_aware:
        lean = clone(model)
        if DropIntermediateShapesPass()(lean).modified:
            finalists.append(lean)
    latencies = measure_latency(timer, *fp32, finalists, buckets, seconds=seconds, threads=threads)
    if len(finalists) == 1:
        return model, latencies[0], "kept"
    fastest = min(range(len(finalists)), key=lambda i: latencies[i].vs_input[0])
    with_them, without = (f"{lat.vs_input[0]:.2f}x" for lat in latencies)
    verdict = f"{'dropped' if fastest else 'kept'} ({with_them} with, {without} without)"
    return finalists[fastest], latencies[fastest], verdict


def _check_options(
    metric: str,
    max_loss: float | None,
    method: str,
    smoothquant: float | str,
    quant_format: str,
    report_dir: str | Path | None,
    timing_seconds: float,
    ranking: str,
    companions: str,
) -> float | str:
    if is_plugin(metric):
        load_plugin(metric, "quantize")  # a missing file or function fails before any work
    elif metric not in metric_names():
        raise UsageError(
            f"quantize: unknown --metric {metric!r} — choose from {name_list(metric_names())} "
            "or give your own as path/to/file.py:function"
        )
    if not math.isfinite(timing_seconds) or timing_seconds <= 0:
        raise UsageError(f"quantize: --timing-seconds {timing_seconds} must be > 0")
    if max_loss is not None and not (math.isfinite(max_loss) and max_loss >= 0):
        raise UsageError(f"quantize: --max-loss {max_loss} must be a number >= 0, e.g. 0.01")
    if method not in (*METHODS, "auto"):
        raise UsageError(
            f"quantize: unknown --method {method!r} — choose from {name_list([*METHODS, 'auto'])}"
        )
    if companions not in (*COMPANIONS, "auto"):
        raise UsageError(
            f"quantize: unknown companions {companions!r} — choose from "
            f"{name_list([*COMPANIONS, 'auto'])}"
        )
    if ranking not in RANKINGS:
        raise UsageError(
            f"quantize: unknown ranking {ranking!r} — choose from {name_list(RANKINGS)}"
        )
    if quant_format not in FORMATS:
        raise UsageError(
            f"quantize: unknown --format {quant_format!r} — choose from {name_list(FORMATS)}"
        )
    if report_dir is not None and Path(report_dir).exists() and not Path(report_dir).is_dir():
        raise UsageError(f"quantize: --report {report_dir} is a file — pass a folder")
    if isinstance(smoothquant, str) and smoothquant in ("auto", "search", "off"):
        return smoothquant
    try:
        alpha = float(smoothquant)
    except (TypeError, ValueError):
        alpha = math.nan
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(
            f"quantize: --smoothquant {smoothquant!r} must be an alpha in [0, 1] (or no value to "
            "search it)"
        )
    return alpha


def _not_faster(latency: Latency, where: str) -> str:
    """Why the int8 model may not be shipped as faster ('' when it may): the overall interval
    must lie below 1 and no shape bucket may be slower with confidence."""
    ratio, low, high = latency.vs_prepared
    if latency.verdict != FASTER:
        return (
            f"the int8 model runs {ratio:.2f}x the fp32 latency (95% CI {low:.2f}-{high:.2f}, "
            f"{latency.rounds} rounds in {latency.seconds:.1f} s): {latency.verdict} on {where}"
        )
    slower = ", ".join(
        f"{b.label} {b.ratio[0]:.2f}x (95% CI {b.ratio[1]:.2f}-{b.ratio[2]:.2f})"
        for b in latency.slower_buckets()
    )
    return f"the int8 model is {ratio:.2f}x overall but slower on {slower}" if slower else ""


def _missing(score: Score) -> float:
    """How far the worst output's loss is over its tolerance, in that metric's terms."""
    worst = score.outputs[score.worst]
    return worst.loss - worst.tolerance


def _refuse_quantized(model: ir.Model, source: str | Path) -> None:
    found: dict[str, int] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type in QUANTIZED_OPS:
            found[node.op_type] = found.get(node.op_type, 0) + 1
    if found:
        ops = ", ".join(f"{op}×{n}" for op, n in sorted(found.items()))
        raise PassError(
            f"quantize: {source} is already quantized ({ops}) — quantize the fp32 original instead"
        )


def _nothing_to_quantize(model: ir.Model, source: str | Path) -> str:
    ops: dict[str, int] = {}
    for node in model.graph:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    found = ", ".join(f"{op}×{n}" for op, n in sorted(ops.items(), key=lambda kv: -kv[1])[:6])
    return (
        f"quantize: {source} has no quantizable ops (float32 Conv, ConvTranspose, MatMul or Gemm "
        f"with constant weights, outside --exclude/--ops); it has {found} — nothing to do"
    )


def _eval_labels(
    labels: str | Path | None, evaluation: DataDir | None, count: int
) -> list[np.ndarray]:
    """The labels of the eval feeds in use (the first `count`), or none."""
    if labels is None or evaluation is None:
        return []
    return read_labels(evaluation, labels, step="quantize")[:count]


def _split(
    calib: DataDir, evaluation: DataDir | None, warnings: list[str]
) -> tuple[list[Feed], Any, int, str]:
    """Eval feeds (in memory) and a re-iterable calibration stream."""
    total = len(calib)
    if evaluation is not None:
        feeds = [feed for _, feed in zip(range(EVAL_LIMIT), evaluation, strict=False)]
        origin = f"--eval {evaluation.path}" + (
            f", first {EVAL_LIMIT} of {len(evaluation)}" if len(evaluation) > EVAL_LIMIT else ""
        )

        def everything() -> Iterator[Feed]:
            return iter(calib)

        return feeds, everything, total, origin
    if total == 1:
        warnings.append(
            "only one calibration feed: the metric is measured on the data used to calibrate — "
            "pass --eval DIR for an honest number"
        )
        return list(calib), lambda: iter(calib), 1, "the single calibration feed"
    held = {i for i in range(total) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1} or {total - 1}

    def calibration() -> Iterator[Feed]:
        return (feed for i, feed in enumerate(calib) if i not in held)

    feeds = [feed for i, feed in enumerate(calib) if i in held][:EVAL_LIMIT]
    return feeds, calibration, total - len(held), f"{len(held)} feeds held out of --calib"


def _validate(model: ir.Model) -> None:
    try:
        onnx.checker.check_model(ir.to_proto(model))
    except onnx.checker.ValidationError as e:
        reason = str(e).strip().splitlines()[0]
        raise PassError(f"quantize: the int8 model is not valid ONNX ({reason}) — report it") from e


def _layers(result: Any, candidates: Sequence[Any], feeds: list[Feed]) -> list[LayerRow]:
    """SQNR at the output of every candidate node, int8 model against its float base."""
    by_name = {node.name: node for node in result.base.graph}
    outputs = {c.node: observable_output(by_name[c.node]) for c in candidates if c.node in by_name}
    errors = layer_errors(result.base, result.model, feeds[:_SQNR_FEEDS], list(outputs.values()))
    rows = []
    for candidate in candidates:
        tensor = outputs.get(candidate.node, "")
        error = errors.get(tensor)
        rows.append(
            LayerRow(
                node=candidate.node,
                op_type=candidate.op_type,
                mode=result.plan.modes.get(candidate.node, "fp32"),
                sqnr_db=None if error is None else error.sqnr_db,
                reason=result.reasons.get(candidate.node, ""),
            )
        )
    return rows
