"""`prune` as a function: plan, prune, compensate, check with ORT, time, report, save.

Unstructured (default) zeros weights where they are (initializers or Constant nodes).
Structured first runs the cleanup recipe (Constant nodes lifted, BatchNormalization folded,
shapes inferred), finds the channel groups, measures which groups make the target machine
faster (this one, or a `--target` cluster node), rounds every kept channel count to that
machine's SIMD block and removes whole channels.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxsmith.compression import compressed_sizes
from onnxsmith.errors import PassError, SessionError, UsageError, name_list
from onnxsmith.io import load_model, save_model, weight_bytes
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.passes.prune import (
    ChannelAnalysis,
    ChannelPlan,
    GroupDecision,
    InputStats,
    PruneChannelsPass,
    PruneMagnitudePass,
    Sensitivity,
    analyze_channels,
    plan_channels,
    unit_scores,
)
from onnxsmith.pipeline import StatsResult, apply
from onnxsmith.progress import Reporter
from onnxsmith.provenance import record_step
from onnxsmith.prune.result import (
    Agreement,
    PruneOptions,
    PruneReport,
    Recover,
    Recovery,
    SweepPoint,
)
from onnxsmith.prune.sensitivity import measure_sensitivity, pruned_alone
from onnxsmith.prune.speed import GroupSpeed, measure_group_speed
from onnxsmith.runtime.compute import total_multiply_accumulates
from onnxsmith.runtime.data import DataDir, Feed
from onnxsmith.runtime.input_stats import (
    collect_input_stats,
    pair_stats,
    rows_per_feed,
    sample_rows,
)
from onnxsmith.runtime.metric import EvalSet
from onnxsmith.runtime.parity import random_feed
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timer import LocalTimer, Rounds, Timer, TimingJob
from onnxsmith.runtime.timing import ratio_ci95
from onnxsmith.signature import input_specs

# A group whose region is not at least 3 % faster after pruning is left alone.
NO_GAIN_RATIO = 0.97
MAX_CALIB_FEEDS = 128
MAX_CHECK_FEEDS = 8
# The sequential refit keeps the original model's sampled input rows of several levels in
# memory so that the original runs once per chunk of levels, not once per level (a 54-level
# detector: 54 → 4 runs per feed).
ROWS_BUDGET = 256 << 20
SWEEP = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def prune_file(
    source: str | Path,
    output: str | Path,
    options: PruneOptions,
    *,
    calib: str | Path | None = None,
    report: str | Path | None = None,
    external_data: bool | None = None,
    timer: Timer | None = None,
    recover: Recover | None = None,
    progress: bool = False,
) -> PruneReport:
    """Prunes `source` into `output`; nothing is written when any step fails.

    `timer` is where groups and the result are timed and whose CPU sets the channel multiple
    (default: this machine). With `recover` (structured only), the pruned model is trained back
    towards the original before it is measured and written; fidelity and latency are measured
    before and after. With `progress`, each step, the calibration feeds and each group's
    timing are printed on stderr.

    Raises:
        UsageError: an option is invalid (bad sparsity, unknown op, criterion or node name).
        PassError: nothing can be pruned, or the pruned model fails to run.
    """
    options.validate(calib is not None)
    if report is not None and Path(report).exists() and not Path(report).is_dir():
        raise UsageError(f"prune: --report {report} is a file — pass a folder")
    model = load_model(source)
    feeds = _calib_feeds(model, calib)
    reporter = Reporter(progress)
    pruned, result = prune_model(
        model,
        options,
        feeds,
        sweep=report is not None,
        timer=timer,
        recover=recover,
        reporter=reporter,
    )
    reporter.phase(f"writing {output}")
    recorded = result.options.as_dict() | {
        "calib": str(calib) if calib else None,
        "target": result.target,
    }
    recorded |= {"fidelity": result.agreement.fidelity.as_dict(), "metric": result.metric_lines}
    if result.recovery is not None:
        recorded["recovery"] = result.recovery.training | {
            "fidelity_before": result.recovery.before.fidelity.as_dict(),
            "cosine_before": result.recovery.before.cosine,
            "latency_before": result.recovery.latency_before[0],
            "latency_after": result.latency[0],
        }
    record_step(pruned, "prune", recorded)
    save_model(pruned, output, external_data=external_data, inputs=[source])
    if report is not None:
        from onnxsmith.prune.report import write_report

        write_report(result, report)
    return result


def prune_model(
    model: ir.Model,
    options: PruneOptions,
    calib: Sequence[Feed] = (),
    *,
    sweep: bool = False,
    timer: Timer | None = None,
    recover: Recover | None = None,
    reporter: Reporter | None = None,
) -> tuple[ir.Model, PruneReport]:
    """Prunes a copy of `model` (which is left untouched) and measures the result where
    `timer` measures (default: this machine).

    `recover` (structured only) trains the pruned model back towards the original; the
    report then holds the fidelity and latency measured before and after it.
    """
    reporter = reporter or Reporter()
    options.validate(bool(calib))
    options = options.resolved(bool(calib))
    timer = timer or LocalTimer()
    if recover is not None and not options.structured:
        raise UsageError(
            "prune: --recover trains the channels structured pruning keeps — add --structured"
        )
    _check_exclude(model, options.exclude)
    original = _copy(model)
    working = _copy(model)
    notes: list[str] = []
    if options.structured:
        reporter.phase("cleanup (constants, BatchNormalization folding, shapes)")
        working, _ = apply(cleanup_passes(), working)
        renamed = _follow_renames(original, working, options.exclude)
        if renamed != options.exclude:
            notes.append(
                "the cleanup fused excluded nodes into others: "
                + ", ".join(f"{a} → {b}" for a, b in zip(options.exclude, renamed, strict=True))
            )
            options = dataclasses.replace(options, exclude=renamed)
    _name_nodes(working)
    reference = _copy(working)
    multiple, source = (
        (options.channel_multiple, "--channel-multiple")
        if options.channel_multiple
        else timer.cpu().simd_block()
    )
    sample = calib[0] if calib else random_feed(input_specs(model))
    timing_feed = "the first calibration feed" if calib else "a random feed (batch 1)"
    check_feeds = list(calib[:MAX_CHECK_FEEDS]) or [sample]
    # built when first needed: a model with nothing to prune is refused before it is run
    checks = functools.cache(lambda: EvalSet(original, check_feeds, options.metric, step="prune"))
    if options.structured:
        outcome = _structured(
            working, options, calib, multiple, sample, checks, notes, timer, reporter
        )
    else:
        outcome = _unstructured(working, options, calib, notes, reporter)
    judge = checks()
    recovery = None
    if recover is not None:
        before = _agreement(judge, outcome.model)
        latency_before, _ = _latency(timer, original, outcome.model, sample, options)
        recovered, summary = recover(original, outcome.model)
        outcome = dataclasses.replace(outcome, model=recovered)
        recovery = Recovery(before, latency_before, summary)
        notes.append(
            "--recover trained the pruned model towards the original's outputs; fidelity "
            "here is measured on calibration feeds, which may be among its training inputs — "
            "measure on held-out inputs for an unbiased number"
        )
    reporter.phase(f"checking the pruned model against the original on {len(judge.feeds)} feeds")
    agreement = _agreement(judge, outcome.model)
    reporter.phase(f"timing the pruned model against the original (interleaved) on {timer.where}")
    latency, medians = _latency(timer, original, outcome.model, sample, options)
    if sweep:
        reporter.phase(f"sweeping sparsity {', '.join(f'{x:g}' for x in SWEEP)} for the report")
    points = (
        _sweep(reference, original, options, calib, outcome, sample, multiple, timer, judge)
        if sweep
        else []
    )
    report = PruneReport(
        options=options,
        mode="structured" if options.structured else "unstructured",
        achieved_sparsity=outcome.achieved,
        per_layer=outcome.per_layer,
        groups=outcome.decisions,
        group_speed=outcome.speeds,
        channel_multiple=multiple,
        multiple_source=source,
        compensated=outcome.compensated,
        calib_feeds=len(calib),
        agreement=agreement,
        metric_lines=tuple(judge.plan.describe()),
        check_feeds=f"{len(judge.feeds)} calibration feeds" if calib else "1 random feed",
        latency=latency,
        latency_ms=medians,
        timing_feed=timing_feed,
        sizes={"original": _sizes(original), "pruned": _sizes(outcome.model)},
        weights=(weight_bytes(original), weight_bytes(outcome.model)),
        sweep=points,
        notes=notes,
        target=timer.target,
        timed_on=timer.where,
        recovery=recovery,
    )
    return outcome.model, report


@dataclasses.dataclass
class _Outcome:
    model: ir.Model
    achieved: float
    per_layer: dict[str, float]
    decisions: list[GroupDecision]
    speeds: dict[str, GroupSpeed]
    compensated: int
    stats: InputStats | None = None
    scores: dict[str, np.ndarray] | None = None
    leave_alone: dict[str, str] | None = None
    sensitivity: Sensitivity | None = None


def _unstructured(
    model: ir.Model,
    options: PruneOptions,
    calib: Sequence[Feed],
    notes: list[str],
    reporter: Reporter,
) -> _Outcome:
    stats = None
    if calib and (options.compensate or options.criterion in ("taylor", "activation")):
        names = [n.name or "" for n in model.graph if n.op_type in options.ops]
        stats = _input_stats(model, names, calib, options, reporter)
    result = _run(_magnitude_pass(options, options.sparsity, stats), model)
    compensated = len(stats.grams) if options.compensate and stats is not None else 0
    notes.append(
        "unstructured zeros keep every tensor dense: ONNX Runtime's CPU kernels do the same "
        "work, so expect a latency ratio near 1.0; the gain is the compressed size"
    )
    return _Outcome(
        model=result.model,
        achieved=result.stats["sparsity"],
        per_layer=result.stats["per_layer"],
        decisions=[],
        speeds={},
        compensated=compensated,
        stats=stats,
    )


def _structured(
    model: ir.Model,
    options: PruneOptions,
    calib: Sequence[Feed],
    multiple: int,
    sample: Feed,
    checks: Callable[[], EvalSet],
    notes: list[str],
    timer: Timer,
    reporter: Reporter,
) -> _Outcome:
    analysis = analyze_channels(model, ops=options.ops, exclude=options.exclude)
    eligible = [g for g in analysis.groups if not g.skipped]
    if not eligible:
        reasons = "; ".join(f"{g.name}: {g.skipped}" for g in analysis.groups[:5])
        raise PassError(
            f"prune: nothing prunable — {len(analysis.groups)} channel groups, all skipped "
            f"({reasons or 'no Conv/Gemm/MatMul with a constant weight'}) — check --ops and "
            "--exclude, or use unstructured pruning"
        )
    stats = None
    if calib and (options.compensate or options.criterion in ("taylor", "activation")):
        consumers = sorted({c for g in eligible for c in g.consumers})
        stats = _input_stats(model, consumers, calib, options, reporter)
    scores = unit_scores(analysis, options.criterion, stats)
    leave_alone: dict[str, str] = {}
    speeds: dict[str, GroupSpeed] = {}
    if options.measure:
        speeds = _measure(model, analysis, scores, options, multiple, sample, timer, reporter)
        leave_alone = {
            name: f"pruning it measured {s.ratio:.2f}x on {timer.where} (no gain)"
            for name, s in speeds.items()
            if s.ratio >= NO_GAIN_RATIO
        }
    sensitivity = None
    if options.allocation == "sensitivity":
        sensitivity = measure_sensitivity(
            model,
            analysis,
            scores,
            options.sparsity,
            multiple,
            checks(),
            list(leave_alone),
            reporter,
        )
    plan, decisions = plan_channels(
        analysis, scores, options.sparsity, multiple, leave_alone, sensitivity
    )
    reporter.phase(f"pruning {sum(d.status == 'pruned' for d in decisions)} groups")
    _, result = _prune_channels(model, analysis, plan, stats, calib, options, reporter)
    if sensitivity is not None:
        feeds = checks().feeds
        left = total_multiply_accumulates(result.model, feeds[0], "prune: the pruned model")
        notes.append(
            f"channels went where they cost the least accuracy: each group was pruned alone by "
            f"{options.sparsity:.0%} and by twice that, its output error measured on "
            f"{len(feeds)} calibration feeds, and channels removed where the error grows "
            f"least per channel and per multiply-accumulate saved; the model's "
            f"multiply-accumulates went down by {1 - left / sensitivity.total_macs:.0%}"
        )
    total = sum(g.channels for g in eligible)
    removed = sum(d.channels - d.kept for d in decisions if d.status == "pruned")
    notes.append(
        f"kept channel counts are multiples of {multiple} so ONNX Runtime's blocked (NCHWc) "
        "kernels stay on their fast path; groups with too few channels to round are left "
        "alone"
    )
    if options.measure:
        notes.append(
            "each group was timed alone (its layers cut out of the model, interleaved against "
            f"the original); groups not at least {1 - NO_GAIN_RATIO:.0%} faster were left "
            "alone and the others pruned more to keep the overall sparsity"
        )
    if removed < round(options.sparsity * total) * 0.9:
        notes.append(
            f"only {removed / total:.1%} of prunable channels could be removed (target "
            f"{options.sparsity:.0%}): each group keeps at least a tenth of its channels"
        )
    return _Outcome(
        model=result.model,
        achieved=removed / total,
        per_layer={d.name: d.kept / d.channels for d in decisions if d.status != "skipped"},
        decisions=decisions,
        speeds=speeds,
        compensated=result.stats.get("consumers_refit", 0),
        stats=stats,
        scores=scores,
        leave_alone=leave_alone,
        sensitivity=sensitivity,
    )


def _magnitude_pass(
    options: PruneOptions, sparsity: float, stats: InputStats | None
) -> PruneMagnitudePass:
    return PruneMagnitudePass(
        sparsity,
        ops=options.ops,
        exclude=options.exclude,
        scope=options.scope,
        criterion=options.criterion,
        stats=stats,
        refit=options.compensate and stats is not None,
    )


def _prune_channels(
    model: ir.Model,
    analysis: ChannelAnalysis,
    plan: ChannelPlan,
    stats: InputStats | None,
    calib: Sequence[Feed],
    options: PruneOptions,
    reporter: Reporter | None = None,
) -> tuple[ir.Model, StatsResult]:
    """Applies `plan`, with sequential least-squares refits when compensating."""
    if options.compensate and stats is not None and stats.grams:
        return _refit_sequentially(model, analysis, plan, stats, calib, reporter or Reporter())
    return model, _run(PruneChannelsPass(plan), model)


def _refit_sequentially(
    model: ir.Model,
    analysis: ChannelAnalysis,
    plan: ChannelPlan,
    stats: InputStats,
    calib: Sequence[Feed],
    reporter: Reporter,
) -> tuple[ir.Model, StatsResult]:
    """Prunes with least-squares refits, layer by layer from the input.

    The first pass refits every consumer on the original model's activations. Then, level by
    level (a consumer's level is the number of consumers upstream of it), the inputs each
    consumer really receives in the pruned model are measured against the original ones and
    the model is pruned again with refits that also undo the error of earlier layers.

    Levels are not batched: measured on a 54-level detector, refitting them in 6 batches took
    the output's cosine to the original from 0.989 down to 0.714 (a layer's refit then assumes
    inputs that the refits before it in the batch go on to change).
    """
    levels = _consumer_levels(model, {c.node.name or "" for c in analysis.consumers})
    current = _clone(model)
    solved: dict[tuple, tuple[np.ndarray, np.ndarray | None]] = {}
    result = _run(PruneChannelsPass(plan, stats, solved), current)
    per_feed = rows_per_feed(len(calib))
    index = 1
    for chunk in _chunks(levels[1:], stats):
        # the original's rows for a run of levels at once: one original run per feed per chunk
        original = sample_rows(model, [n for names in chunk for n in names], calib,
                               rows_per_feed=per_feed, label="original")  # fmt: skip
        for names in chunk:
            index += 1
            reporter.phase(f"  refitting level {index}/{len(levels)} ({len(names)} layers)")
            pruned = sample_rows(current, names, calib, rows_per_feed=per_feed, label="pruned")
            pairs = pair_stats(original, pruned)
            stats = dataclasses.replace(
                stats,
                cross={**stats.cross, **{k: v[0] for k, v in pairs.items()}},
                pruned_grams={**stats.pruned_grams, **{k: v[1] for k, v in pairs.items()}},
            )
            current = _clone(model)
            result = _run(PruneChannelsPass(plan, stats, solved), current)
    return current, result


def _chunks(levels: list[list[str]], stats: InputStats) -> list[list[list[str]]]:
    """Consecutive levels whose original input rows together fit in `ROWS_BUDGET` bytes."""
    chunks: list[list[list[str]]] = []
    used = ROWS_BUDGET
    for names in levels:
        size = sum(stats.rows.get(n, 0) * len(stats.means_sq.get(n, ())) * 4 for n in names)
        if used + size > ROWS_BUDGET:
            chunks.append([])
            used = 0
        chunks[-1].append(names)
        used += size
    return chunks


def _consumer_levels(model: ir.Model, consumers: set[str]) -> list[list[str]]:
    """Consumers grouped by how many consumers lie upstream of them (inputs first)."""
    depth: dict[ir.Value, int] = {}
    levels: dict[int, list[str]] = {}
    for node in model.graph:
        upstream = max((depth.get(v, 0) for v in node.inputs if v is not None), default=0)
        if node.name in consumers:
            levels.setdefault(upstream, []).append(node.name or "")
            upstream += 1
        for out in node.outputs:
            depth[out] = upstream
    return [levels[k] for k in sorted(levels)]


def _measure(
    model: ir.Model,
    analysis: ChannelAnalysis,
    scores: dict[str, np.ndarray],
    options: PruneOptions,
    multiple: int,
    sample: Feed,
    timer: Timer,
    reporter: Reporter,
) -> dict[str, GroupSpeed]:
    """Prunes each group alone at the target sparsity and times its region."""
    trial, _ = plan_channels(analysis, scores, options.sparsity, multiple)
    trials = {
        group.name: (copy, group.producers, group.consumers)
        for group, copy, _ in pruned_alone(model, analysis, trial)
    }
    if not trials:
        return {}
    reporter.phase(f"timing {len(trials)} channel groups, each alone against the original")

    def timed(index: int, name: str, speed: GroupSpeed, seconds: float) -> None:
        reporter.phase(
            f"  group {index}/{len(trials)} {name}: {speed.ratio:.2f}x "
            f"[{speed.low:.2f}, {speed.high:.2f}] in {seconds:.1f}s"
        )

    return measure_group_speed(
        timer,
        model,
        trials,
        sample,
        seconds=options.seconds / 5,
        threads=options.threads,
        on_group=timed,
    )


def _sweep(
    reference: ir.Model,
    original: ir.Model,
    options: PruneOptions,
    calib: Sequence[Feed],
    outcome: _Outcome,
    sample: Feed,
    multiple: int,
    timer: Timer,
    judge: EvalSet,
) -> list[SweepPoint]:
    """Agreement and latency at each sweep sparsity, reusing the run's statistics and verdicts."""
    points = []
    for sparsity in sorted({*SWEEP, options.sparsity}):
        model = _copy(reference)
        if options.structured:
            analysis = analyze_channels(model, ops=options.ops, exclude=options.exclude)
            assert outcome.scores is not None
            plan, decisions = plan_channels(
                analysis,
                outcome.scores,
                sparsity,
                multiple,
                outcome.leave_alone,
                outcome.sensitivity,
            )
            model, _ = _prune_channels(model, analysis, plan, outcome.stats, calib, options)
            eligible = sum(d.channels for d in decisions if d.status != "skipped")
            achieved = sum(d.channels - d.kept for d in decisions if d.status == "pruned")
            achieved_fraction = achieved / max(eligible, 1)
        else:
            result = _run(_magnitude_pass(options, sparsity, outcome.stats), model)
            achieved_fraction = result.stats["sparsity"]
        latency, _ = _latency(timer, original, model, sample, options, share=0.25)
        points.append(SweepPoint(sparsity, achieved_fraction, _agreement(judge, model), latency[0]))
    return points


def _input_stats(
    model: ir.Model,
    nodes: Sequence[str],
    calib: Sequence[Feed],
    options: PruneOptions,
    reporter: Reporter,
) -> InputStats:
    reporter.phase(f"calibration statistics of {len(nodes)} layer inputs")
    with reporter.bar("calibration feeds", len(calib)) as tick:
        return collect_input_stats(
            model,
            nodes,
            calib,
            grams=options.compensate,
            rows_per_feed=rows_per_feed(len(calib)),
            on_feed=tick,
        )


def _calib_feeds(model: ir.Model, calib: str | Path | None) -> list[Feed]:
    if calib is None:
        return []
    data = DataDir(calib, input_specs(model), step="prune")
    return list(itertools.islice(data, MAX_CALIB_FEEDS))


def _check_exclude(model: ir.Model, exclude: Sequence[str]) -> None:
    names = {n.name for n in model.graph}
    unknown = [name for name in exclude if name not in names]
    if unknown:
        raise UsageError(
            f"prune: --exclude names {name_list(unknown)}, which are not nodes of the model — "
            "see `onnxsmith inspect` for node names"
        )


def _run(transform: ir.passes.PassBase, model: ir.Model) -> StatsResult:
    """Runs one of the prune passes, which all report their stats."""
    result = transform(model)
    assert isinstance(result, StatsResult)
    return result


def _follow_renames(
    original: ir.Model, cleaned: ir.Model, names: tuple[str, ...]
) -> tuple[str, ...]:
    """The names that nodes in `names` carry after the cleanup recipe.

    Folding BatchNormalization replaces a Conv with a new node that produces the BN's output,
    so a node is found again by the values it (or the BN/Identity/Dropout after it) produced.

    Raises:
        PassError: an excluded node left no trace (the cleanup removed it).
    """
    nodes = {n.name: n for n in original.graph}
    producers = {o.name: n.name for n in cleaned.graph for o in n.outputs}
    result = []
    for name in names:
        if name in {n.name for n in cleaned.graph}:
            result.append(name)
            continue
        found = None
        node: ir.Node | None = nodes[name]
        while node is not None and found is None:
            found = next((producers[o.name] for o in node.outputs if o.name in producers), None)
            uses = list(node.outputs[0].uses()) if node.outputs else []
            follows = len(uses) == 1 and uses[0][0].op_type in (
                "BatchNormalization",
                "Identity",
                "Dropout",
            )
            node = uses[0][0] if follows else None
        if found is None:
            raise PassError(
                f"prune: --exclude {name!r} names a node that the cleanup removed — exclude "
                "the layer it was folded into (see `onnxsmith optimize` output)"
            )
        result.append(found or "")
    return tuple(result)


def _name_nodes(model: ir.Model) -> None:
    """Names unnamed nodes `<op>_<index>`: plans, statistics and reports refer to nodes by name."""
    taken = {n.name for n in model.graph if n.name}
    for index, node in enumerate(model.graph):
        if node.name:
            continue
        name = f"{node.op_type}_{index}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)


def _copy(model: ir.Model) -> ir.Model:
    copy = ir.from_proto(ir.to_proto(model))
    copy.meta.update(model.meta)
    return copy


def _clone(model: ir.Model) -> ir.Model:
    """A copy sharing the weight tensors, for `PruneChannelsPass`, which replaces tensors and
    never writes into them: per group and per refit level, a full serialized copy of a 5 M
    parameter model cost more than the pruning itself."""
    return model.clone()


def _agreement(judge: EvalSet, pruned: ir.Model) -> Agreement:
    """The pruned model's outputs against the original's: in the task's terms, and as plain
    cosine and relative error over all outputs."""
    try:
        session = create_session(pruned, label="the pruned model")
    except SessionError as e:
        raise PassError(
            f"prune: {e} — an onnxsmith bug, nothing written; rerun with --debug and report it"
        ) from e
    outputs = judge.outputs(session, "pruned model")
    diff = norm = dot = norm_after = 0.0
    for want, got in zip(judge.reference, outputs, strict=True):
        for a, b in zip(want, got, strict=True):
            if a.shape != b.shape:
                raise PassError(
                    f"prune: an output changed shape from {a.shape} to {b.shape} — nothing "
                    "written; rerun with --debug and report it"
                )
            a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
            diff += float(np.sum((a64 - b64) ** 2))
            norm += float(np.sum(a64**2))
            norm_after += float(np.sum(b64**2))
            dot += float(a64 @ b64)
    return Agreement(
        rel_error=float(np.sqrt(diff / max(norm, 1e-30))),
        cosine=float(dot / max(np.sqrt(norm * norm_after), 1e-30)),
        fidelity=judge.plan.score(judge.reference, outputs),
    )


def _latency(
    timer: Timer,
    original: ir.Model,
    pruned: ir.Model,
    feed: Feed,
    options: PruneOptions,
    share: float = 1.0,
) -> tuple[tuple[float, float, float], tuple[float, float]]:
    rounds = Rounds(warmup=3, seconds=options.seconds * share)
    ((after, before),) = timer.time(
        [TimingJob((pruned, original), (feed,), rounds, options.threads)]
    )
    medians = (float(np.median(before)), float(np.median(after)))
    return ratio_ci95(after, before), medians


def _sizes(model: ir.Model) -> dict[str, int]:
    return compressed_sizes(ir.to_proto(model).SerializeToString())
