"""What keeps structured pruning of a deep detector within minutes, and its progress lines.

The shortcuts must not change what they shortcut: reused refits give the same weights bit for
bit, the row budget only shrinks with many feeds. No timing asserts (the machine is shared);
the before/after time on a real 5 M-parameter YOLO-style detector is in bench/RESULTS.md.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import prune_zoo
from onnxsmith.passes.cleanup import cleanup_passes
from onnxsmith.passes.prune import PruneChannelsPass, analyze_channels, plan_channels, unit_scores
from onnxsmith.runtime.input_stats import (
    MAX_ROWS,
    ROWS_PER_FEED,
    collect_input_stats,
    rows_per_feed,
)
from test_prune_cli import held_out_error

from onnxsmith.io import save_model
from onnxsmith.pipeline import apply
from onnxsmith.prune import PruneOptions, prune_file, prune_model

FAST = {"seconds": 0.1, "measure": False, "channel_multiple": 4}


def image_feeds(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.normal(0, 1, (2, 3, 16, 16)).astype(np.float32)} for _ in range(count)]


def weights(model: ir.Model) -> dict[str, bytes]:
    return {name: v.const_value.numpy().tobytes() for name, v in model.graph.initializers.items()}


def test_reused_refits_give_the_same_weights_and_solve_once():
    model, _ = apply(cleanup_passes(), prune_zoo.resnet_like())
    analysis = analyze_channels(model)
    names = sorted({c.node.name or "" for c in analysis.consumers})
    stats = collect_input_stats(model, names, image_feeds(4, seed=0))
    plan, _ = plan_channels(analysis, unit_scores(analysis, "l1", stats), 0.5, 1)
    fresh = model.clone()
    PruneChannelsPass(plan, stats)(fresh)
    solved: dict = {}
    first, second = model.clone(), model.clone()
    PruneChannelsPass(plan, stats, solved)(first)
    count = len(solved)
    PruneChannelsPass(plan, stats, solved)(second)
    assert count >= 2 and len(solved) == count  # the second run solved nothing new
    assert weights(first) == weights(fresh) == weights(second)
    assert weights(model) != weights(first)  # the clones shared nothing they changed


def test_row_budget_shrinks_only_with_many_feeds():
    assert rows_per_feed(1) == rows_per_feed(4) == ROWS_PER_FEED
    assert rows_per_feed(8) * 8 <= MAX_ROWS + 8
    assert rows_per_feed(100_000) >= 1


def test_structured_prune_with_calib_still_compensates_deep_models():
    """10 refit levels with shared-weight copies and reused solves: the refit still compensates."""
    model = prune_zoo.deep_cnn(depth=10)
    calib, held_out = image_feeds(4, seed=1), image_feeds(3, seed=2)
    plain, _ = prune_model(
        model, PruneOptions(0.5, structured=True, compensate=False, **FAST), calib
    )
    refit, report = prune_model(model, PruneOptions(0.5, structured=True, **FAST), calib)
    assert report.compensated >= 2
    assert held_out_error(model, refit, held_out) < held_out_error(model, plain, held_out)


def test_progress_names_each_step_and_each_group(tmp_path, capsys):
    source = save_model(prune_zoo.resnet_like(), tmp_path / "m.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, feed in enumerate(image_feeds(2, seed=3)):
        np.savez(calib / f"{i}.npz", **feed)
    options = PruneOptions(0.5, structured=True, seconds=0.1)
    prune_file(source, tmp_path / "o.onnx", options, calib=calib, progress=True)
    err = capsys.readouterr().err
    for step in ("cleanup", "calibration statistics", "timing", "group 1/", "checking", "writing"):
        assert step in err, step
    capsys.readouterr()
    prune_file(source, tmp_path / "q.onnx", options, calib=calib)
    assert capsys.readouterr().err == ""  # quiet unless asked


def test_rows_from_the_upstream_part_match_the_full_model_and_pair_with_themselves():
    """`sample_rows` runs only what the named layers depend on; the rows, drawn at the same
    positions, equal those of a full run (collect_input_stats), so the twin statistics of a
    model with itself are its own Gram matrices (exact: the same float32 products)."""
    from onnxsmith.runtime.input_stats import pair_stats, sample_rows, upstream_of

    model, _ = apply(cleanup_passes(), prune_zoo.resnet_like())
    names = sorted({c.node.name or "" for c in analyze_channels(model).consumers})
    first = names[:1]
    upstream = upstream_of(model, [n.inputs[0].name for n in model.graph if n.name in first])
    assert upstream is None or len(upstream.graph) < len(model.graph)
    feeds = image_feeds(3, seed=1)
    rows = sample_rows(model, names, feeds, rows_per_feed=64)
    again = sample_rows(model, names[::-1], feeds, rows_per_feed=64)
    for name in names:
        for a, b in zip(rows[name], again[name], strict=True):
            assert (a is None and b is None) or np.array_equal(a, b)
    pairs = pair_stats(rows, rows)
    assert set(pairs) == {n for n in names if rows[n][0] is not None} and pairs
    for cross, gram in pairs.values():
        np.testing.assert_array_equal(cross, gram)
