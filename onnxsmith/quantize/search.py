"""Choosing what runs in int8, and how, measured on the target machine and this data.

1. Latency probe: each op group (Conv, MatMul, Gemm, ...) is quantized alone in each of its modes
   (static QDQ, dynamic) and timed against fp32, interleaved, over the eval set's shape buckets
   (see `quantize.latency`). A mode is kept for a group only if it is faster; the modes left,
   fastest first, form each node's ladder (then fp32). Embedding Gathers are not timed: their
   int8 table (weight-only) saves size, not compute.
2. Calibration for the nodes whose ladder has a static rung; `auto` tries every method's ranges.
3. SmoothQuant (alpha searched unless given), kept when the target needs it or it cuts the
   loss by a fifth: accuracy that costs no latency is taken even when the target is met.
4. On request, bias correction of the static Conv/Gemm nodes (the weights' rounding error times
   the mean input, from the calibration data), kept when it lowers the loss; then, where the
   target is missed, per-tensor ranges for the inputs of the most sensitive static nodes.
5. Fallback: each int8 node's error in isolation (it alone in int8, error at the model's output,
   see `isolation.py`) ranks the nodes; the most sensitive ones step down their ladder
   (static → dynamic → fp32), the smallest such set found by bisection on the real metric.
   Ranked once by error and once by error per multiply-accumulate (`runtime/compute.py`); of
   two plans that fit, the one measured faster here is kept (see `Search.fall_back`).
"""

from __future__ import annotations

import dataclasses
import itertools
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common

from onnxsmith.calibration import WeightHessians
from onnxsmith.errors import NotFasterError, OnnxsmithError, PassError
from onnxsmith.linear import contraction_spec
from onnxsmith.passes.quantize import (
    DYNAMIC,
    FP32,
    ROUNDABLE_OPS,
    STATIC,
    WEIGHT_ONLY,
    Candidate,
    CorrectBiasPass,
    FakeQuantizePass,
    InsertQdqPass,
    QuantizeDynamicPass,
    QuantizeGatherPass,
    QuantPlan,
    RoundWeightsPass,
    SmoothQuantPass,
    activation_name,
    correctable,
    dynamic_ok,
    input_channel_axis,
    qdq_tensors,
    smoothing_scales,
)
from onnxsmith.pipeline import apply
from onnxsmith.progress import Reporter
from onnxsmith.quantize.isolation import output_noise
from onnxsmith.quantize.latency import CONFIDENCE_BUDGET
from onnxsmith.quantize.sensitivity import layer_errors
from onnxsmith.runtime.calibrate import (
    METHODS,
    ActivationStats,
    CalibrationTable,
    ChannelMeans,
    channel_means,
    collect_statistics,
    compute_ranges,
)
from onnxsmith.runtime.compute import multiply_accumulates
from onnxsmith.runtime.data import Feed
from onnxsmith.runtime.fidelity import Score
from onnxsmith.runtime.input_stats import collect_weight_hessians
from onnxsmith.runtime.metric import EvalSet
from onnxsmith.runtime.session import create_session
from onnxsmith.runtime.timer import BucketJob, LocalTimer, Timer
from onnxsmith.runtime.timing import shape_buckets

# A mode is kept for a group only if it beats fp32 by 3 % (median of interleaved rounds) and
# the 95 % interval of that ratio lies below 1: noise must not buy int8 a place.
FASTER = 0.97
ALPHAS = (0.5, 0.65, 0.8, 0.9)
SMOOTHING_GAIN = 0.8  # with the target met, "auto" keeps SmoothQuant only if loss drops by 1/5
_SENSITIVITY_FEEDS = 4
_ISOLATION_FEEDS = 2  # a ranking, not a verdict: two feeds order the layers
_MEAN_FEEDS = 16  # channel means for bias correction settle within a few feeds
_HESSIAN_FEEDS = 16  # input second moments for weight rounding: up to 16 feeds ...
_HESSIAN_ROWS = 1024  # ... of at most 1 Ki rows each (≥ 4× the widest 3×3×96 group it rounds)
_RANGE_NODES = 6  # static nodes, most sensitive first, whose input range is searched
_EXTRA_PERCENTILES = (99.9, 99.99)  # range candidates beyond the methods' own
RANKINGS = ("isolated", "accumulated")
# Latency probe: fewest rounds before its intervals are read. A round runs every configuration
# on every shape bucket, so on a large variable-width model one round can take seconds.
_MIN_ROUNDS = 6

FeedSource = Callable[[], Iterator[Feed]]
Fallback = tuple[QuantPlan, Score, ir.Model]  # a plan, its score and its model


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Knobs of the search (the CLI options, resolved); the fidelity tolerance is the
    eval set's (`EvalSet.plan`)."""

    method: str = "auto"
    per_channel: bool = True
    smoothquant: float | str = "auto"  # "auto" (when it helps), "search", "off", or an alpha
    latency_aware: bool = True
    quant_format: str = "qdq"
    reduce_range: bool = False  # 7-bit static weights (x86 without VNNI, see runtime.cpu)
    # 8-bit weights are tried against 7-bit ones by their loss, which is measured here: sound
    # only if this machine saturates like the target (a VNNI host hides a target's saturation).
    full_range_measurable: bool = True
    threads: int | None = None
    probe_seconds: float = 6.0
    # Tried on the static nodes and kept when it lowers the loss; off by default: on PP-OCRv4
    # det and rec it never did (bench/RESULTS.md, "accuracy techniques").
    bias_correction: bool = False
    # Tried on the static nodes and kept when it lowers the loss (rounding.py).
    weight_rounding: bool = True
    companions: str = "auto"  # "auto" (both placements scored), or one of COMPANIONS
    range_search: bool = True  # per-tensor ranges for the most sensitive inputs (method auto)
    ranking: str = "isolated"  # fallback order: RANKINGS (isolated: see isolation.py)
    keep_trials: bool = False  # keep every scored int8 model (to time the frontier)


@dataclasses.dataclass(frozen=True)
class GroupTiming:
    """Latency of one op group quantized alone, per mode, as a ratio to fp32 (median, CI)."""

    group: str
    nodes: int
    ratios: Mapping[str, tuple[float, float, float]]
    kept: tuple[str, ...]  # modes faster than fp32, fastest first


@dataclasses.dataclass(frozen=True)
class Trial:
    """One configuration the search evaluated."""

    label: str
    loss: float  # the worst output's loss as a share of its tolerance (<= 1: within it)
    static: int
    dynamic: int


@dataclasses.dataclass(frozen=True)
class Smoothing:
    alpha: float
    nodes: tuple[str, ...]
    absmax: Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The chosen configuration, its model and how it was found."""

    plan: QuantPlan
    model: ir.Model
    base: ir.Model  # the float model the int8 one approximates (prepared, smoothed if any)
    score: Score
    method: str | None  # calibration method used (None: nothing static)
    smoothing: Smoothing | None
    timings: tuple[GroupTiming, ...]
    trials: tuple[Trial, ...]
    reasons: Mapping[str, str]  # why each candidate left in fp32 is there
    met: bool
    weight_bits: int  # of static nodes: 7 where 8 would saturate ORT's int8 kernels
    bias_corrected: int = 0  # static nodes whose bias was corrected
    weights_rounded: int = 0  # static nodes whose weights were rounded on calibration data
    companions: str = "all"  # which neighbours joined the int8 chains (plan.COMPANIONS)
    trial_models: tuple[tuple[Trial, ir.Model], ...] = ()  # with keep_trials: int8 ones only
    fallback: str = ""  # which of the two fallback plans was kept, and why


def clone(model: ir.Model) -> ir.Model:
    """A deep copy (passes mutate in place; the prepared model must stay pristine)."""
    copy = ir.from_proto(ir.to_proto(model))
    copy.meta.update(model.meta)
    return copy


class Search:
    """Runs the steps in the module docstring; `run()` returns a `SearchResult`."""

    def __init__(
        self,
        prepared: ir.Model,
        candidates: Sequence[Candidate],
        calib: FeedSource,
        evalset: EvalSet,
        settings: SearchSettings,
        reporter: Reporter,
        calib_count: int | None = None,
        timer: Timer | None = None,
    ) -> None:
        self.prepared = prepared
        self.timer = timer or LocalTimer()
        self.candidates = {c.node: c for c in candidates}
        self.calib = calib
        self.calib_count = calib_count
        self.evalset = evalset
        self.settings = settings
        self.reporter = reporter
        self.trials: list[Trial] = []
        self.trial_models: list[tuple[Trial, ir.Model]] = []
        self.reasons: dict[str, str] = {}
        self.best: tuple[Score, QuantPlan, ir.Model, ir.Model] | None = None
        self.reduce_range = settings.reduce_range
        self.companions = "all" if settings.companions == "auto" else settings.companions
        self.means: ChannelMeans | None = None  # set when bias correction is kept
        self.corrected: frozenset[str] = frozenset()  # nodes whose input means were measured
        self.hessians: WeightHessians | None = None  # set when weight rounding is kept
        self.isolated: dict[tuple[str, str], float] = {}
        self.range_options: dict[str, CalibrationTable] = {}  # candidate ranges per tensor
        self.macs: dict[str, float] | None = None  # each candidate's multiply-accumulates
        self.fallback_choice = ""  # set when two different fallback plans fit
        # "all one step down" scored per (base, table, plan), shared by the two rankings
        self.all_down: dict[
            tuple[int, int, frozenset[tuple[str, str]]], tuple[Score, ir.Model]
        ] = {}

    # -- building and scoring -------------------------------------------------------------

    def build(self, plan: QuantPlan, base: ir.Model, table: CalibrationTable | None) -> ir.Model:
        passes: list[ir.passes.PassBase] = []
        static, dynamic = plan.nodes(STATIC), plan.nodes(DYNAMIC)
        if static:
            if table is None:
                raise PassError("quantize: static nodes planned without a calibration table")
            grid = {"per_channel": self.settings.per_channel, "reduce_range": self.reduce_range}
            if self.hessians is not None:
                rounded = [n for n in static if n in self.hessians.hessians]
                passes += [RoundWeightsPass(self.hessians, rounded, **grid)] if rounded else []
            corrected = [n for n in static if n in self.corrected]
            if self.means is not None and corrected:
                passes.append(CorrectBiasPass(self.means, corrected, **grid))
            passes += [
                InsertQdqPass(
                    table,
                    static,
                    per_channel=self.settings.per_channel,
                    quant_format=self.settings.quant_format,
                    reduce_range=self.reduce_range,
                    companions=self.companions,
                ),
            ]
        if dynamic:
            passes.append(
                QuantizeDynamicPass(
                    dynamic,
                    per_channel=self.settings.per_channel,
                    weight_bits=7 if self.reduce_range else 8,
                )
            )
        if plan.nodes(WEIGHT_ONLY):
            passes.append(QuantizeGatherPass(plan.nodes(WEIGHT_ONLY)))
        passes.append(common.RemoveUnusedNodesPass())
        model, _ = apply(passes, clone(base))
        return model

    def evaluate(
        self, plan: QuantPlan, base: ir.Model, table: CalibrationTable | None, label: str
    ) -> tuple[Score, ir.Model]:
        model = self.build(plan, base, table)
        score = self.evalset.score(model)
        static, dynamic = len(plan.nodes(STATIC)), len(plan.nodes(DYNAMIC))
        self.trials.append(Trial(label, score.loss, static, dynamic))
        if self.settings.keep_trials and plan.modes:
            self.trial_models.append((self.trials[-1], model))
        self.reporter.phase(f"{label}: {score.describe()} ({static} static, {dynamic} dynamic)")
        if plan.modes and (self.best is None or score.loss < self.best[0].loss):
            self.best = (score, plan, model, base)
        return score, model

    # -- step 1: latency ------------------------------------------------------------------

    def ladders(self) -> tuple[dict[str, tuple[str, ...]], tuple[GroupTiming, ...]]:
        """Each candidate's int8 modes to try, best first; with the probe's timings."""
        if not self.settings.latency_aware:
            return {n: c.modes for n, c in self.candidates.items()}, ()
        timings = self.probe_latency()
        kept = {t.group: t.kept for t in timings}
        ladders: dict[str, tuple[str, ...]] = {}
        for name, candidate in self.candidates.items():
            if candidate.modes == (WEIGHT_ONLY,):
                ladders[name] = candidate.modes
                continue
            ladders[name] = _ladder(kept[candidate.group])
            if not ladders[name]:
                timing = next(t for t in timings if t.group == candidate.group)
                measured = ", ".join(f"{m} {r[0]:.2f}x" for m, r in timing.ratios.items())
                self.reasons[name] = f"not faster in int8 on {self.timer.where} ({measured})"
        if not any(ladder and ladder != (WEIGHT_ONLY,) for ladder in ladders.values()):
            measured = "; ".join(
                f"{t.group}: " + ", ".join(f"{m} {r[0]:.2f}x" for m, r in t.ratios.items())
                for t in timings
            )
            raise NotFasterError(
                f"quantize: no int8 mode runs faster than fp32 on {self.timer.where} "
                f"({measured}) — nothing written; pass --no-latency-aware to quantize anyway "
                "(e.g. for an int8 accelerator)"
            )
        return ladders, timings

    def probe_latency(self) -> tuple[GroupTiming, ...]:
        groups: dict[str, list[Candidate]] = {}
        timings = []
        for candidate in self.candidates.values():
            if candidate.modes == (WEIGHT_ONLY,):
                continue  # a lookup table's storage, not compute: nothing to time
            groups.setdefault(candidate.group, []).append(candidate)
        static_nodes = [n for n, c in self.candidates.items() if STATIC in c.modes]
        # Ranges change accuracy, not speed: placeholder ranges save a calibration pass here.
        placeholder = dict.fromkeys(qdq_tensors(self.prepared, static_nodes), (-1.0, 1.0))
        table = CalibrationTable("placeholder", placeholder, 0)
        configs: list[tuple[str, str]] = []
        threads = self.settings.threads
        models = [self.prepared]
        failed: dict[tuple[str, str], str] = {}
        for group, members in groups.items():
            for mode in dict.fromkeys(m for c in members for m in c.modes):
                plan = QuantPlan({c.node: mode for c in members if mode in c.modes})
                try:
                    model = self.build(plan, self.prepared, table)
                    self.timer.load(model, threads)
                except OnnxsmithError as e:
                    failed[group, mode] = str(e)
                    continue
                models.append(model)
                configs.append((group, mode))
        if not configs:
            return ()
        self.reporter.phase(
            f"latency probe on {self.timer.where}: timing fp32 against {len(configs)} int8 "
            "configurations, interleaved"
        )
        job = self.timing_job(models, decide=tuple((i + 1, 0) for i in range(len(configs))))
        timing = self.timer.time_buckets(job)
        index = {config: i + 1 for i, config in enumerate(configs)}
        ratios: dict[str, dict[str, tuple[float, float, float]]] = {g: {} for g in groups}
        for (group, mode), i in index.items():
            ratios[group][mode] = timing.ratio(i, 0)
        for group, members in groups.items():
            kept = sorted(
                (m for m, r in ratios[group].items() if r[0] < FASTER and r[2] < 1.0),
                key=lambda m: ratios[group][m][0],
            )
            if kept[:1] == [STATIC] and DYNAMIC in kept:
                # Static is less accurate: lead with it only if it is clearly faster.
                _, _, high = timing.ratio(index[group, STATIC], index[group, DYNAMIC])
                if high >= 1.0:
                    kept = [DYNAMIC, STATIC]
            timings.append(GroupTiming(group, len(members), ratios[group], tuple(kept)))
            shown = ", ".join(f"{m} {r[0]:.2f}x" for m, r in ratios[group].items())
            self.reporter.phase(f"  {group} ×{len(members)}: {shown} → {kept or 'fp32'}")
        return tuple(timings)

    def timing_job(
        self, models: Sequence[ir.Model], decide: tuple[tuple[int, int], ...]
    ) -> BucketJob:
        """`models` timed interleaved over the eval set's shape buckets, within the probe's
        budget, until each (candidate, baseline) pair of `decide` is told apart."""
        return BucketJob(
            tuple(models),
            shape_buckets(self.evalset.feeds),
            decide=decide,
            seconds=self.settings.probe_seconds,
            max_seconds=self.settings.probe_seconds * CONFIDENCE_BUDGET,
            threads=self.settings.threads,
            warmup=1,
            min_rounds=_MIN_ROUNDS,
        )

    # -- step 2: calibration --------------------------------------------------------------

    def statistics(self, base: ir.Model, nodes: Sequence[str], histograms: bool) -> ActivationStats:
        tensors = qdq_tensors(base, nodes)
        with self.reporter.bar("calibrating", self.calib_count) as tick:
            return collect_statistics(
                base, self.calib(), tensors, histograms=histograms, on_feed=tick
            )

    def tables(self, base: ir.Model, nodes: Sequence[str]) -> dict[str, CalibrationTable]:
        methods = METHODS if self.settings.method == "auto" else (self.settings.method,)
        self.reporter.phase(f"calibrating {len(nodes)} static nodes ({', '.join(methods)})")
        stats = self.statistics(base, nodes, histograms=methods != ("minmax",))
        tables = {m: compute_ranges(stats, m) for m in methods}
        if self.settings.method == "auto" and self.settings.range_search:
            extra = {
                f"percentile {p}": compute_ranges(stats, "percentile", percentile=p)
                for p in _EXTRA_PERCENTILES
            }
            self.range_options = {**tables, **extra}
        return tables

    # -- the whole search -----------------------------------------------------------------

    def run(self) -> SearchResult:
        ladders, timings = self.ladders()
        plan = QuantPlan(
            {n: ladder[0] for n, ladder in ladders.items() if ladder}, self.settings.per_channel
        )
        base = self.prepared
        static_capable = [n for n, ladder in ladders.items() if STATIC in ladder]
        tables = self.tables(base, static_capable) if static_capable else {}
        method, score, model = self.choose_method(plan, base, tables)
        table = tables.get(method) if method else None

        smoothing = None
        if self.settings.smoothquant != "off":
            found = self.smooth(plan, table, score)
            if found is not None:
                smoothing, base, table, score, model = found
        if self.settings.weight_rounding and plan.nodes(STATIC) and score.loss > 0:
            score, model = self.round_weights(plan, base, table, score, model)
        if self.settings.bias_correction and plan.nodes(STATIC):
            score, model = self.correct_bias(plan, base, table, score, model)
        if self.range_options and table is not None and not score.met:
            table, score, model = self.search_ranges(plan, base, table, score, model)

        if not score.met:
            plan, score, model = self.fall_back(plan, ladders, base, table, score)
        # An all-fp32 plan meets any target but is no int8 model: then the best int8 one found
        # is returned with met=False, and the caller warns by how much it misses.
        met = score.met and bool(plan.modes)
        if not met and self.best is not None:
            score, plan, model, base = self.best
        for name in self.candidates:
            if name not in plan.modes and name not in self.reasons:
                self.reasons[name] = (
                    f"sensitive: kept in fp32 so that fidelity ({score.metric}) stays within "
                    "its tolerance"
                )
        return SearchResult(
            plan=plan,
            model=model,
            base=base,
            score=score,
            method=method if plan.nodes(STATIC) else None,
            smoothing=smoothing,
            timings=timings,
            trials=tuple(self.trials),
            reasons=types.MappingProxyType(dict(self.reasons)),
            met=met,
            weight_bits=7 if self.reduce_range else 8,
            bias_corrected=len(set(plan.nodes(STATIC)) & self.corrected),
            weights_rounded=len(
                set(plan.nodes(STATIC)) & set(self.hessians.hessians if self.hessians else ())
            ),
            companions=self.companions,
            trial_models=tuple(self.trial_models),
            fallback=self.fallback_choice,
        )

    def choose_method(
        self, plan: QuantPlan, base: ir.Model, tables: Mapping[str, CalibrationTable]
    ) -> tuple[str | None, Score, ir.Model]:
        """Scores the plan with each method's ranges (lowest loss wins), then 8-bit weights
        against 7-bit ones where 7 was the default (7 avoid saturation, 8 have finer steps)."""
        bits = 7 if self.reduce_range else 8
        methods: dict[str | None, CalibrationTable | None] = {None: None}
        if plan.nodes(STATIC) and tables:
            methods = {method: table for method, table in tables.items()}
        best: tuple[str | None, Score, ir.Model] | None = None
        for method, table in methods.items():
            ranges = f", {method} ranges" if method else ""
            score, model = self.evaluate(
                plan, base, table, f"int8 plan{ranges}, {bits}-bit weights"
            )
            if best is None or score.loss < best[1].loss:
                best = (method, score, model)
        assert best is not None
        if self.settings.companions == "auto" and best[0] is not None and best[1].loss > 0:
            best = self.choose_companions(plan, base, methods, best)
        if self.reduce_range and best[1].loss > 0 and self.settings.full_range_measurable:
            self.reduce_range = False
            method = best[0]
            ranges = f", {method} ranges" if method else ""
            table = methods[method]
            score, model = self.evaluate(plan, base, table, f"int8 plan{ranges}, 8-bit weights")
            if score.loss < best[1].loss:
                return method, score, model
            self.reduce_range = True
        return best

    def choose_companions(
        self,
        plan: QuantPlan,
        base: ir.Model,
        methods: Mapping[str | None, CalibrationTable | None],
        best: tuple[str | None, Score, ir.Model],
    ) -> tuple[str | None, Score, ir.Model]:
        """Scores every method's ranges with Add/Mul left in float; keeps the lower loss.

        Every method, not only the best one with Add/Mul in int8: the ranges that suit the
        requantized Add/Mul outputs are not the ones that suit the convolutions' inputs (on
        PP-OCRv4 det entropy wins with them, percentile without). The structural tensors are a
        subset of those calibrated, so no calibration pass is needed.
        """
        self.companions = "structural"
        found = best
        for method, table in methods.items():
            score, model = self.evaluate(
                plan, base, table, f"int8 plan, {method} ranges, Add/Mul in float"
            )
            if score.loss < found[1].loss:
                found = (method, score, model)
        if found is best:
            self.companions = "all"
        return found

    def smooth(
        self, plan: QuantPlan, table: CalibrationTable | None, current: Score
    ) -> tuple[Smoothing, ir.Model, CalibrationTable | None, Score, ir.Model] | None:
        """Tries SmoothQuant on the plan's int8 MatMul/Gemm nodes; returns it if it helps.

        Static ranges of the smoothed activations are derived from their per-channel min/max
        (X' = X / s channel by channel), so no alpha needs a calibration pass of its own.
        """
        by_name = {node.name: node for node in self.prepared.graph}
        nodes = tuple(n for n in plan.modes if dynamic_ok(by_name[n]))
        if not nodes:
            return None
        inputs = list(dict.fromkeys(activation_name(by_name[n]) for n in nodes))
        self.reporter.phase(f"SmoothQuant: channel statistics for {len(inputs)} activations")
        with self.reporter.bar("channel statistics", self.calib_count) as tick:
            stats = collect_statistics(
                self.prepared,
                self.calib(),
                [],
                histograms=False,
                channel_tensors=inputs,
                on_feed=tick,
            )
        absmax = _channel_absmax(stats)
        nodes = tuple(n for n in nodes if activation_name(by_name[n]) in absmax)
        setting = self.settings.smoothquant
        alphas = (float(setting),) if isinstance(setting, float) else ALPHAS
        best = None
        for alpha in alphas:
            smoothing = Smoothing(alpha, nodes, types.MappingProxyType(absmax))
            base = clone(self.prepared)
            apply([SmoothQuantPass(absmax, alpha, nodes)], base)
            smoothed_table = None
            if plan.nodes(STATIC) and table is not None:
                smoothed_table = self.smoothed_table(table, base, stats, alpha, nodes)
                if smoothed_table is None:
                    continue
            score, model = self.evaluate(plan, base, smoothed_table, f"SmoothQuant alpha {alpha:g}")
            if best is None or score.loss < best[3].loss:
                best = (smoothing, base, smoothed_table, score, model)
        if best is None:
            return None
        # Where the target is already met, smoothing must buy a clear gain: it changes the
        # weights and may add a Mul per activation, so a gain within the metric's noise is not
        # worth it. Where the target is missed, any gain is.
        needed = not current.met
        if setting != "auto" or best[3].loss < current.loss * (1.0 if needed else SMOOTHING_GAIN):
            return best
        self.reporter.phase("SmoothQuant did not help enough; not used")
        return None

    def smoothed_table(
        self,
        table: CalibrationTable,
        base: ir.Model,
        stats: ActivationStats,
        alpha: float,
        nodes: Sequence[str],
    ) -> CalibrationTable | None:
        scales = smoothing_scales(self.prepared, _channel_absmax(stats), alpha, nodes)
        before = {node.name: node for node in self.prepared.graph}
        after = {node.name: node for node in base.graph}
        ranges = dict(table.ranges)
        for name in nodes:
            x = activation_name(before[name])
            smoothed = activation_name(after[name])
            low, high = stats.tensors[x].channel_min, stats.tensors[x].channel_max
            assert low is not None and high is not None
            ranges[smoothed] = (
                min(float(np.min(low / scales[x])), 0.0),
                max(float(np.max(high / scales[x])), 0.0),
            )
        static = [n for n in nodes if n in after]
        if any(t not in ranges for t in qdq_tensors(base, static)):
            return None
        return CalibrationTable(f"{table.method}, smoothed", ranges, table.feeds)

    # -- step 4: weight rounding, bias correction -----------------------------------------------

    def round_weights(
        self,
        plan: QuantPlan,
        base: ir.Model,
        table: CalibrationTable | None,
        score: Score,
        model: ir.Model,
    ) -> tuple[Score, ir.Model]:
        """Measures the static nodes' input Hessians; keeps the chosen rounding if it lowers
        the loss."""
        static = set(plan.nodes(STATIC))
        nodes = [
            n.name or ""
            for n in base.graph
            if n.name in static and n.op_type in ROUNDABLE_OPS and contraction_spec(n) is not None
        ]
        if not nodes:
            return score, model
        self.reporter.phase(f"weight rounding: input statistics of {len(nodes)} layers")
        self.hessians = collect_weight_hessians(
            base, nodes, itertools.islice(self.calib(), _HESSIAN_FEEDS), rows_per_feed=_HESSIAN_ROWS
        )
        rounded_score, rounded_model = self.evaluate(plan, base, table, "weight rounding")
        if rounded_score.loss < score.loss:
            return rounded_score, rounded_model
        self.reporter.phase("weight rounding did not lower the loss; not used")
        self.hessians = None
        return score, model

    def correct_bias(
        self,
        plan: QuantPlan,
        base: ir.Model,
        table: CalibrationTable | None,
        score: Score,
        model: ir.Model,
    ) -> tuple[Score, ir.Model]:
        """Measures the inputs' channel means and keeps bias correction if it lowers the loss."""
        by_name = {node.name: node for node in base.graph}
        nodes = [n for n in plan.nodes(STATIC) if correctable(by_name[n])]
        if not nodes:
            return score, model
        axes = {activation_name(by_name[n]): input_channel_axis(by_name[n]) for n in nodes}
        self.reporter.phase(f"bias correction: channel means of {len(axes)} inputs")
        self.means = channel_means(base, self.calib(), axes, limit=_MEAN_FEEDS)
        self.corrected = frozenset(nodes)
        corrected_score, corrected_model = self.evaluate(plan, base, table, "bias correction")
        if corrected_score.loss < score.loss:
            return corrected_score, corrected_model
        self.reporter.phase("bias correction did not lower the loss; not used")
        self.means, self.corrected = None, frozenset()
        return score, model

    # -- step 5: fallback -----------------------------------------------------------------

    def fall_back(
        self,
        plan: QuantPlan,
        ladders: Mapping[str, tuple[str, ...]],
        base: ir.Model,
        table: CalibrationTable | None,
        score: Score,
    ) -> Fallback:
        """Steps the most sensitive nodes down their ladders until the loss fits.

        With the isolated ranking, sensitivity is taken twice: as the error, and as the error
        per multiply-accumulate (see `runtime/compute.py`). Of two different plans that fit, the
        one measured faster here is kept, the more accurate where the timing cannot tell them
        apart; without latency awareness, the one leaving less compute off its fastest rung.
        """
        if self.settings.ranking == "accumulated":
            return self.step_down(plan, ladders, base, table, score, per_mac=False)
        by_error = self.step_down(plan, ladders, base, table, score, per_mac=False)
        per_mac = self.step_down(plan, ladders, base, table, score, per_mac=True)
        if not (by_error[1].met and per_mac[1].met) or by_error[0].modes == per_mac[0].modes:
            return by_error if by_error[1].met or not per_mac[1].met else per_mac
        if self.settings.latency_aware:
            return self.faster(by_error, per_mac)
        macs = self.multiply_accumulates(base)

        def slowed(candidate: Fallback) -> float:
            modes = candidate[0].modes
            return sum(
                macs[n] for n, rungs in ladders.items() if rungs and modes.get(n) != rungs[0]
            )

        kept = per_mac if slowed(per_mac) < slowed(by_error) else by_error
        self.fallback_choice = (
            f"fallback kept {'per MAC' if kept is per_mac else 'by error'}: multiply-accumulates "
            f"off their fastest rung {slowed(per_mac):.3g} ranked per MAC, "
            f"{slowed(by_error):.3g} by error"
        )
        self.reporter.phase(self.fallback_choice)
        return kept

    def faster(self, by_error: Fallback, per_mac: Fallback) -> Fallback:
        """The faster of two fitting plans, timed against each other over the shape buckets;
        the more accurate when the 95 % interval of the ratio contains 1."""
        job = self.timing_job([by_error[2], per_mac[2]], decide=((1, 0),))
        ratio, low, high = self.timer.time_buckets(job).ratio(1, 0)
        if high < 1.0 or low > 1.0:
            kept = per_mac if high < 1.0 else by_error
            why = "faster"
        else:
            kept = per_mac if per_mac[1].loss < by_error[1].loss else by_error
            why = "as fast and more accurate"
        self.fallback_choice = (
            f"fallback ranked per MAC runs {ratio:.2f}x (95% CI {low:.2f}-{high:.2f}) the plan "
            f"ranked by error on {self.timer.where}; kept "
            f"{'per MAC' if kept is per_mac else 'by error'} ({why})"
        )
        self.reporter.phase(self.fallback_choice)
        return kept

    def step_down(
        self,
        plan: QuantPlan,
        ladders: Mapping[str, tuple[str, ...]],
        base: ir.Model,
        table: CalibrationTable | None,
        score: Score,
        *,
        per_mac: bool,
    ) -> Fallback:
        """One fallback: the smallest prefix of the ranking, found by bisection."""
        model = self.build(plan, base, table)
        what = "most sensitive per MAC" if per_mac else "most sensitive"
        while not score.met and plan.modes:
            order = self.rank(plan, base, model, table)
            if per_mac:
                macs = self.multiply_accumulates(base)
                # a lookup table's int8 saves size, not time: it steps down after every
                # compute node here
                rates = {
                    n: (
                        plan.modes[n] != WEIGHT_ONLY,
                        self.isolated[n, plan.modes[n]] / max(macs[n], 1.0),
                    )
                    for n in order
                }
                order = sorted(order, key=rates.__getitem__, reverse=True)
            steps = [(n, _next_rung(ladders[n], plan.modes[n])) for n in order]
            everything = plan.with_modes(dict(steps))
            # the same plan whatever the order: the second ranking reuses the first's score
            key = (id(base), id(table), frozenset(everything.modes.items()))
            if key not in self.all_down:
                self.all_down[key] = self.evaluate(
                    everything, base, table, f"fallback: all {len(order)} one step down"
                )
            all_score, all_model = self.all_down[key]
            if not all_score.met:
                plan, score, model = everything, all_score, all_model
                continue
            low, high = 0, len(order)
            found = (everything, all_score, all_model)
            while high - low > 1:
                middle = (low + high) // 2
                trial = plan.with_modes(dict(steps[:middle]))
                trial_score, trial_model = self.evaluate(
                    trial, base, table, f"fallback: {middle} {what} one step down"
                )
                if trial_score.met:
                    high, found = middle, (trial, trial_score, trial_model)
                else:
                    low = middle
            plan, score, model = found
        return plan, score, model

    def multiply_accumulates(self, base: ir.Model) -> dict[str, float]:
        """Each candidate's compute on the first eval feed (measured once)."""
        if self.macs is None:
            self.macs = multiply_accumulates(
                base, list(self.candidates), self.evalset.feeds[0], "quantize: the fp32 model"
            )
        return self.macs

    def rank(
        self, plan: QuantPlan, base: ir.Model, model: ir.Model, table: CalibrationTable | None
    ) -> list[str]:
        """Int8 nodes, most sensitive first, by `settings.ranking`."""
        if self.settings.ranking == "accumulated":
            return self.rank_accumulated(plan, base, model)
        todo = [(n, m) for n, m in plan.modes.items() if (n, m) not in self.isolated]
        if todo:
            self.reporter.phase(f"ranking {len(plan.modes)} int8 nodes by their error in isolation")
        with self.reporter.bar("one layer in int8", len(todo)) as tick:
            for name, mode in todo:
                self.isolated[name, mode] = self.isolated_error(name, mode, base, table)
                tick()
        return sorted(plan.modes, key=lambda n: self.isolated[n, plan.modes[n]], reverse=True)

    def isolated_error(
        self, name: str, mode: str, base: ir.Model, table: CalibrationTable | None
    ) -> float:
        """Noise ratio at the output of `base` with only `name` in int8 (`mode`)."""
        alone = self.quantized_alone(name, mode, base, table)
        # basic: the one-layer model runs in float anyway, and ORT's full graph optimization
        # is most of a session's start-up here
        session = create_session(alone, threads=self.settings.threads, optimization="basic")
        feeds = self.evalset.feeds[:_ISOLATION_FEEDS]
        return output_noise(session, feeds, self.evalset.reference[:_ISOLATION_FEEDS])

    def search_ranges(
        self,
        plan: QuantPlan,
        base: ir.Model,
        table: CalibrationTable,
        score: Score,
        model: ir.Model,
    ) -> tuple[CalibrationTable, Score, ir.Model]:
        """Per-tensor activation ranges, scored at the output.

        For the `_RANGE_NODES` static nodes with the largest error in isolation, every candidate
        range of the node's input (each method's, tighter percentiles) is scored by that node's
        isolated error at the model's output, and the best one taken; the mixed table is kept
        if the whole model's loss drops.
        """
        by_name = {node.name: node for node in base.graph}
        order = [n for n in self.rank(plan, base, model, table) if plan.modes[n] == STATIC]
        ranges = dict(table.ranges)
        errors = {}
        self.reporter.phase(f"range search: inputs of the {_RANGE_NODES} most sensitive nodes")
        for name in order[:_RANGE_NODES]:
            x = activation_name(by_name[name])
            best, errors[name] = ranges[x], self.isolated[name, STATIC]
            for option in self.range_options.values():
                candidate = option.ranges.get(x)
                if candidate is None or candidate == best:
                    continue
                trial = CalibrationTable(table.method, {**ranges, x: candidate}, table.feeds)
                error = self.isolated_error(name, STATIC, base, trial)
                if error < errors[name]:
                    best, errors[name] = candidate, error
            ranges[x] = best
        searched = CalibrationTable(f"{table.method}, searched per tensor", ranges, table.feeds)
        new_score, new_model = self.evaluate(plan, base, searched, "ranges searched per tensor")
        if new_score.loss >= score.loss:
            self.reporter.phase("per-tensor ranges did not lower the loss; not used")
            return table, score, model
        self.isolated.update({(name, STATIC): error for name, error in errors.items()})
        return searched, new_score, new_model

    def quantized_alone(
        self, name: str, mode: str, base: ir.Model, table: CalibrationTable | None
    ) -> ir.Model:
        """`base` with only `name` in int8 (static: simulated in float, see FakeQuantizePass)."""
        if mode != STATIC or table is None:
            return self.build(QuantPlan({name: mode}, self.settings.per_channel), base, table)
        options = {"per_channel": self.settings.per_channel, "reduce_range": self.reduce_range}
        passes: list[ir.passes.PassBase] = [FakeQuantizePass(table, [name], **options)]
        if self.means is not None and name in self.corrected:
            passes.insert(0, CorrectBiasPass(self.means, [name], **options))
        model, _ = apply(passes, clone(base))
        return model

    def rank_accumulated(self, plan: QuantPlan, base: ir.Model, model: ir.Model) -> list[str]:
        """Int8 nodes by the error each adds (output noise ratio minus input's), worst first."""
        by_name = {node.name: node for node in base.graph}
        pairs = {}
        for name in plan.modes:
            node = by_name[name]
            pairs[name] = (activation_name(node), observable_output(node))
        tensors = [t for pair in pairs.values() for t in pair if t]
        feeds = self.evalset.feeds[:_SENSITIVITY_FEEDS]
        errors = layer_errors(base, model, feeds, tensors)
        self.reporter.phase(f"ranking {len(pairs)} int8 nodes by the error they add")

        def added(name: str) -> float:
            x, out = pairs[name]
            if out not in errors:
                return 0.0
            before = errors[x].noise_ratio if x in errors else 0.0
            return errors[out].noise_ratio - before

        return sorted(pairs, key=added, reverse=True)


def _ladder(kept: tuple[str, ...]) -> tuple[str, ...]:
    """The fastest kept mode, then the kept modes more accurate than it (static < dynamic)."""
    if not kept:
        return ()
    accuracy = (STATIC, DYNAMIC)
    start = accuracy.index(kept[0])
    return (kept[0], *(m for m in accuracy[start + 1 :] if m in kept))


def _channel_absmax(stats: ActivationStats) -> dict[str, np.ndarray]:
    found = {name: s.channel_absmax for name, s in stats.tensors.items()}
    return {name: absmax for name, absmax in found.items() if absmax is not None}


def _next_rung(ladder: tuple[str, ...], mode: str) -> str:
    rungs = [*ladder, FP32]
    index = rungs.index(mode) if mode in rungs else len(rungs) - 2
    return rungs[min(index + 1, len(rungs) - 1)]


def observable_output(node: ir.Node) -> str:
    """The node's output, or that of a Relu/Clip right after it (QDQ folds those into it)."""
    out = node.outputs[0]
    uses = list(out.uses())
    if len(uses) == 1 and uses[0].node.op_type in ("Relu", "Clip"):
        return uses[0].node.outputs[0].name or ""
    return out.name or ""


def plan_summary(plan: QuantPlan, candidates: Iterable[Candidate]) -> dict[str, dict[str, int]]:
    """Per op group, how many nodes ended in each mode."""
    summary: dict[str, dict[str, int]] = {}
    for candidate in candidates:
        mode = plan.modes.get(candidate.node, FP32)
        counts = summary.setdefault(candidate.group, {})
        counts[mode] = counts.get(mode, 0) + 1
    return summary
