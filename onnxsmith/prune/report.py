"""The `prune --report DIR` files: report.json, report.md and sparsity.png."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from onnxsmith.prune.result import PruneReport


def write_report(report: PruneReport, folder: str | Path) -> list[Path]:
    """Writes the JSON, Markdown and (when matplotlib is installed) the PNG; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "report.json", folder / "report.md"]
    written[0].write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    png = folder / "sparsity.png"
    plotted = bool(report.sweep) and plot_sweep(
        [p.sparsity for p in report.sweep],
        {"output agreement (cosine)": [p.agreement.cosine for p in report.sweep]}
        | {
            f"{name}: {f.metric}": [p.agreement.fidelity.outputs[name].value for p in report.sweep]
            for name, f in report.agreement.fidelity.outputs.items()
        },
        {report.mode: [p.latency_ratio for p in report.sweep]},
        png,
        title=f"{report.mode} pruning",
    )
    written[1].write_text(markdown(report, png.name if plotted else None))
    return [*written, png] if plotted else written


def plot_sweep(
    sparsities: Sequence[float],
    accuracy: Mapping[str, Sequence[float]],
    latency: Mapping[str, Sequence[float]],
    path: Path,
    *,
    title: str,
    accuracy_label: str = "agreement with the original",
) -> bool:
    """Accuracy (left axis) and latency ratio (right axis) against sparsity; False when
    matplotlib is missing (install the `bench` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, left = plt.subplots(figsize=(7, 4.2))
    right = left.twinx()
    for label, values in accuracy.items():
        left.plot(sparsities, values, marker="o", label=label)
    for label, values in latency.items():
        right.plot(sparsities, values, marker="s", linestyle="--", label=f"latency: {label}")
    right.axhline(1.0, color="grey", linewidth=0.8)
    left.set_xlabel("sparsity")
    left.set_ylabel(accuracy_label)
    right.set_ylabel("latency ratio (pruned / original)")
    handles = left.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    left.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="lower left")
    left.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def markdown(report: PruneReport, plot: str | None) -> str:
    """The report as Markdown: summary, sizes, per-layer table, skipped groups, sweep, notes."""
    o = report.options
    ratio, low, high = report.latency
    lines = [
        f"# prune report ({report.mode})",
        "",
        f"- target sparsity {o.sparsity:.0%}, achieved {report.achieved_sparsity:.1%} "
        f"({'of prunable channels' if o.structured else 'of weights'}); criterion {o.criterion}",
        f"- output agreement on {report.check_feeds}: cosine {report.agreement.cosine:.4f}, "
        f"relative error {report.agreement.rel_error:.3g}",
        *(f"- {line}" for line in report.metric_lines),
        *(f"- {line}" for line in report.agreement.fidelity.lines("the original")),
        f"- latency pruned/original {ratio:.2f}x (95 % CI {low:.2f}–{high:.2f}), "
        f"{report.latency_ms[0]:.3f} → {report.latency_ms[1]:.3f} ms, measured interleaved "
        f"on {report.timing_feed}, on {report.timed_on}",
        f"- least-squares compensation: {report.compensated} layers refit on "
        f"{report.calib_feeds} calibration feeds"
        if report.compensated
        else "- no compensation (pass --calib DIR to refit layers by least squares)",
    ]
    if o.structured:
        lines.append(f"- channel multiple {report.channel_multiple} ({report.multiple_source})")
    lines += _recovery(report)
    lines += ["", "## Size", "", "| | raw | zip | " + _third(report) + " |", "|---|---|---|---|"]
    for name, sizes in report.sizes.items():
        third = sizes.get("zstd", sizes.get("lzma", 0))
        lines.append(f"| {name} | {sizes['raw']:,} | {sizes['zip']:,} | {third:,} |")
    if "zstd" not in report.sizes["original"]:
        lines.append("\n`zstandard` is not installed: lzma (xz) shown instead of zstd.")
    lines += ["", *_layer_table(report)]
    if report.sweep:
        lines += [
            "",
            "## Sweep",
            "",
            "| sparsity | achieved | cosine | task fidelity (worst output) | latency ratio |",
            "|---|---|---|---|---|",
        ]
        for p in report.sweep:
            task = p.agreement.fidelity.outputs[p.agreement.fidelity.worst]
            lines.append(
                f"| {p.sparsity:.2f} | {p.achieved:.1%} | {p.agreement.cosine:.4f} | "
                f"{task.metric} {task.value:.4f} | "
                f"{p.latency_ratio:.2f}x |"
            )
        if plot:
            lines += ["", f"![accuracy and latency vs sparsity]({plot})"]
    if report.notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in report.notes)]
    return "\n".join(lines) + "\n"


def _recovery(report: PruneReport) -> list[str]:
    """`--recover`: how training went, and fidelity and latency before it (after: above)."""
    if report.recovery is None:
        return []
    before, training = report.recovery.before, report.recovery.training
    return [
        f"- --recover: {training['epochs']} epochs (best {training['best_epoch']}) in "
        f"{training['train_seconds']} s on {training['data']}, lr {training['lr']:.2g}, "
        f"loss {training['loss']}; stopped: {training['stop_reason']}",
        f"- training steps: {training['step_mode']}",
        *([f"- feature hints: {training['hints']}"] if training.get("hints") else []),
        f"- before --recover: {before.fidelity.describe()}, cosine {before.cosine:.4f}, "
        f"relative error {before.rel_error:.3g}, latency {report.recovery.latency_before[0]:.2f}x",
    ]


def _third(report: PruneReport) -> str:
    return "zstd" if "zstd" in report.sizes["original"] else "lzma"


def _layer_table(report: PruneReport) -> list[str]:
    if not report.options.structured:
        rows = ["## Layers", "", "| layer | sparsity |", "|---|---|"]
        return rows + [f"| {name} | {value:.1%} |" for name, value in report.per_layer.items()]
    rows = [
        "## Channel groups",
        "",
        "| group | producers | channels | kept | multiple | region latency | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in report.groups:
        speed = report.group_speed.get(d.name)
        timed = f"{speed.ratio:.2f}x" if speed else "-"
        status = f"{d.status}: {d.reason}" if d.reason else d.status
        producers = ", ".join(d.producers[:3]) + (" …" if len(d.producers) > 3 else "")
        rows.append(
            f"| {d.name} | {producers} | {d.channels} | {d.kept} | {d.multiple} | {timed} | "
            f"{status} |"
        )
    return rows
