"""What `quantize` did, as data: JSON, Markdown, and the compact provenance stored in the model."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from onnxsmith.errors import ModelSaveError
from onnxsmith.passes.quantize import Candidate
from onnxsmith.passes.quantize.plan import MODES
from onnxsmith.pipeline import PipelineReport
from onnxsmith.quantize.frontier import FrontierPoint, frontier_rows, frontier_svg, frontier_title
from onnxsmith.quantize.latency import Latency
from onnxsmith.quantize.search import SearchResult, plan_summary
from onnxsmith.runtime.fidelity import MetricPlan
from onnxsmith.runtime.kernels import KernelReport

_PROVENANCE_NODES = 20  # fp32 nodes listed by name in the model's metadata


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One candidate node: its final mode, its output's SQNR and why it is fp32 if it is."""

    node: str
    op_type: str
    mode: str
    sqnr_db: float | None
    reason: str


@dataclasses.dataclass(frozen=True)
class QuantizeReport:
    """Everything `quantize` measured and decided."""

    source: str
    output: str
    options: Mapping[str, Any]
    pipeline: PipelineReport
    candidates: tuple[Candidate, ...]
    result: SearchResult
    metric_plan: MetricPlan
    latency: Latency
    kernels: KernelReport
    weight_bytes: tuple[int, int]
    layers: tuple[LayerRow, ...]
    data: Mapping[str, Any]
    warnings: tuple[str, ...]
    seconds: float
    frontier: tuple[FrontierPoint, ...] = ()  # with `frontier=True`: every configuration, timed

    @property
    def size_ratio(self) -> float:
        before, after = self.weight_bytes
        return after / before if before else 1.0

    def groups(self) -> dict[str, dict[str, int]]:
        return plan_summary(self.result.plan, self.candidates)

    def as_dict(self) -> dict[str, Any]:
        result = self.result
        return {
            "source": self.source,
            "output": self.output,
            "options": dict(self.options),
            "seconds": round(self.seconds, 2),
            "data": dict(self.data),
            "metric": {
                "name": result.score.metric,
                "choice": self.metric_plan.as_dict(),
                "max_loss": self.options["max_loss"],
                "int8": result.score.as_dict(),
                "share_of_tolerance": result.score.loss,
                "met": result.met,
            },
            "latency": dataclasses.asdict(self.latency),
            "size": {
                "weight_bytes_before": self.weight_bytes[0],
                "weight_bytes_after": self.weight_bytes[1],
                "ratio": self.size_ratio,
            },
            "kernels": {
                "integer_ops": dict(self.kernels.integer_ops),
                "float_compute_ops": dict(self.kernels.float_compute_ops),
                "qdq_nodes_left": self.kernels.qdq_nodes,
            },
            "groups": self.groups(),
            "calibration_method": result.method,
            "smoothquant_alpha": result.smoothing.alpha if result.smoothing else None,
            "latency_probe": [
                {"group": t.group, "nodes": t.nodes, "ratios": dict(t.ratios), "kept": t.kept}
                for t in result.timings
            ],
            "trials": [dataclasses.asdict(t) for t in result.trials],
            "fallback": result.fallback,
            "frontier": [dataclasses.asdict(p) for p in self.frontier],
            "layers": [_finite(dataclasses.asdict(row)) for row in self.layers],
            "prepare": self.pipeline.as_dict(),
            "warnings": list(self.warnings),
        }

    def provenance(self) -> dict[str, Any]:
        """The short record stored in the model: method, fp32 nodes and why, metric, speedup."""
        kept = {name: "excluded (--exclude)" for name in self.options.get("exclude") or ()}
        kept |= {row.node: row.reason for row in self.layers if row.mode == "fp32"}
        listed = dict(list(kept.items())[:_PROVENANCE_NODES])
        return {
            "method": self.result.method,
            "smoothquant_alpha": self.result.smoothing.alpha if self.result.smoothing else None,
            "groups": self.groups(),
            "fp32_nodes": listed,
            "fp32_nodes_not_listed": len(kept) - len(listed),
            "metric": self.result.score.metric,
            "fidelity": self.result.score.as_dict(),
            "met": self.result.met,
            "latency_ratio_vs_fp32": round(self.latency.vs_input[0], 4),
            "latency_ci95": [round(x, 4) for x in self.latency.vs_input[1:]],
            "latency_verdict": self.latency.verdict,
            "size_ratio": round(self.size_ratio, 4),
            "target": self.options.get("target"),
        }

    @property
    def tuned_for(self) -> str:
        """The cluster target whose CPU timed the choices, or the machine quantize ran on."""
        target = self.options.get("target")
        return f"target {target} (cluster node)" if target else "the machine quantize ran on"

    def fidelity_lines(self) -> list[str]:
        """The metric of each output and why, then each output's fidelity against fp32."""
        lines = self.metric_plan.describe()
        lines += self.result.score.lines("fp32")
        if self.result.score.met and not self.result.met:  # met only by leaving all in fp32
            lines[-1] = "fidelity: NOT within tolerance with any node in int8"
        return lines

    def markdown(self) -> str:
        r = self.result
        lat = self.latency
        lines = [
            f"# onnxsmith quantize: {Path(self.source).name}",
            "",
            f"- output: `{self.output}`",
            *(f"- {line}" for line in self.fidelity_lines()),
            f"- latency: {lat.int8_ms:.2f} ms vs {lat.fp32_ms:.2f} ms fp32 → {lat.describe()}",
            f"- tuned for: {self.tuned_for}",
            f"- size: {self.weight_bytes[0] / 1e6:.2f} MB → {self.weight_bytes[1] / 1e6:.2f} MB "
            f"({self.size_ratio:.2f}x)",
            f"- calibration: {r.method or 'not needed (no static nodes)'}; SmoothQuant: "
            f"{'alpha ' + format(r.smoothing.alpha, 'g') if r.smoothing else 'off'}",
            f"- ORT kernels: {self.kernels.describe()}",
            f"- intermediate shapes (value_info): {self.options['intermediate_shapes']}",
            f"- data: {self.data}",
            f"- wall time: {self.seconds:.1f} s",
            "",
            "## What ran in int8",
            "",
            "| op group | " + " | ".join(MODES) + " |",
            "|---|" + "---:|" * len(MODES),
        ]
        for group, counts in self.groups().items():
            lines.append(f"| {group} | " + " | ".join(str(counts.get(m, 0)) for m in MODES) + " |")
        if lat.buckets:
            lines += ["", "## Latency per shape bucket (int8 / cleaned-up fp32)", ""]
            lines += ["| inputs | share of eval | fp32 ms | int8 ms | ratio (95% CI) | verdict |"]
            lines.append("|---|---:|---:|---:|---|---|")
            lines += [
                f"| {b.label} | {b.share:.0%} | {b.fp32_ms:.2f} | {b.int8_ms:.2f} | "
                f"{b.ratio[0]:.2f}x ({b.ratio[1]:.2f}-{b.ratio[2]:.2f}) | {b.verdict} |"
                for b in lat.buckets
            ]
        if r.timings:
            lines += ["", "## Latency probe (each group alone vs fp32)", ""]
            lines += ["| op group | nodes | ratios | kept |", "|---|---:|---|---|"]
            for t in r.timings:
                ratios = ", ".join(f"{m} {v[0]:.2f}x" for m, v in t.ratios.items())
                lines.append(f"| {t.group} | {t.nodes} | {ratios} | {', '.join(t.kept) or '-'} |")
        lines += ["", "## Search", "", "| step | loss / tolerance | static | dynamic |"]
        lines.append("|---|---:|---:|---:|")
        lines += [f"| {t.label} | {t.loss:.4g} | {t.static} | {t.dynamic} |" for t in r.trials]
        lines += ["", r.fallback] if r.fallback else []
        if self.frontier:
            lines += ["", "## Frontier: fidelity against latency of every configuration tried", ""]
            lines += ["![frontier](frontier.svg)", "", *frontier_rows(self.frontier)]
        lines += ["", "## Per layer", "", "| node | op | mode | SQNR dB | note |"]
        lines.append("|---|---|---|---:|---|")
        for row in self.layers:
            sqnr = "-" if row.sqnr_db is None else f"{row.sqnr_db:.1f}"
            lines.append(f"| `{row.node}` | {row.op_type} | {row.mode} | {sqnr} | {row.reason} |")
        if self.warnings:
            lines += ["", "## Warnings", ""] + [f"- {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "report.json").write_text(json.dumps(self.as_dict(), indent=2) + "\n")
            (folder / "report.md").write_text(self.markdown())
            if self.frontier:
                title = frontier_title(self.source)
                (folder / "frontier.svg").write_text(frontier_svg(self.frontier, title))
        except OSError as e:
            raise ModelSaveError(f"quantize: cannot write the report to {folder} ({e})") from e


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: an exact layer reports SQNR as the string "inf"."""
    value = row.get("sqnr_db")
    if isinstance(value, float) and math.isinf(value):
        row["sqnr_db"] = "inf" if value > 0 else "-inf"
    return row
