"""Task-true fidelity on small hand-built outputs: every number here is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from onnxsmith.runtime.fidelity import METRICS, choose_metric, load_plugin, plan_metrics
from onnxsmith.runtime.fidelity.detection import decode, nms, yolo_layout
from onnxsmith.runtime.fidelity.sequence import edit_distance, find_blank, greedy_decode

from onnxsmith.errors import DataError, UsageError


def one_hot(ids: list[int], classes: int) -> np.ndarray:
    """[1, T, C] softmax-like scores whose argmax per step is `ids`."""
    scores = np.full((len(ids), classes), 0.1 / (classes - 1), dtype=np.float32)
    scores[np.arange(len(ids)), ids] = 0.9
    return scores[None]


def test_top1_counts_changed_decisions():
    reference = [np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([[0.6, 0.4]])]
    outputs = [np.array([[0.2, 0.8], [0.3, 0.7]]), np.array([[0.6, 0.4]])]
    found = METRICS["top1"](reference, outputs)
    assert found.value == pytest.approx(2 / 3) and found.loss == pytest.approx(1 / 3)
    assert not found.met and found.tolerance == 0.01


def test_ctc_greedy_decoding_merges_repeats_and_drops_blanks():
    assert greedy_decode(one_hot([0, 1, 1, 0, 1, 2, 2, 0], 4), blank=0) == [[1, 1, 2]]
    assert greedy_decode(one_hot([3, 1, 3, 3, 2], 4)[0], blank=3) == [[1, 2]]  # [T, C]
    assert edit_distance([1, 2, 3], [1, 3]) == 1 and edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [4, 5]) == 2


def test_ctc_character_error_rate_against_the_reference_strings():
    # reference decodes to [1, 2] and [3]; the candidate to [1, 1, 2] (one insertion) and [3]
    reference = [one_hot([0, 1, 0, 2, 0], 4), one_hot([3, 3, 0, 0, 0], 4)]
    outputs = [one_hot([0, 1, 0, 1, 2], 4), one_hot([0, 3, 0, 0, 0], 4)]
    assert find_blank(reference) == 0  # the class the reference emits most often
    found = METRICS["ctc"](reference, outputs)
    assert found.loss == pytest.approx(1 / 3)  # 1 edit over 3 reference characters
    assert found.details["sequence_agreement"] == 0.5
    assert METRICS["ctc"](reference, reference).loss == 0.0


def test_mask_iou_thresholds_probabilities_at_half_and_logits_at_zero():
    reference = np.zeros((1, 1, 4, 4), np.float32)
    reference[0, 0, :2, :2] = 0.9  # 4 pixels
    output = np.zeros_like(reference)
    output[0, 0, :2, 1:3] = 0.6  # 4 pixels, 2 shared: IoU 2 / 6
    found = METRICS["mask_iou"]([reference], [output])
    assert found.value == pytest.approx(1 / 3) and found.details["threshold"] == 0.5
    logits = [reference * 10 - 5], [output * 10 - 5.5]  # -5 / +4 and -5.5 / +0.5
    assert METRICS["mask_iou"](*logits).details["threshold"] == 0.0
    assert METRICS["mask_iou"](*logits).value == pytest.approx(1 / 3)
    empty = [np.zeros((1, 1, 4, 4))]
    assert METRICS["mask_iou"](empty, empty).value == 1.0
    # A Sigmoid rounds to 1.0000001 in float32 (PP-OCRv4 det): still probabilities.
    rounded = reference.copy()
    rounded[0, 0, 0, 0] = np.float32(1.0000001)
    assert METRICS["mask_iou"]([rounded], [output]).details["threshold"] == 0.5


def test_mask_iou_of_class_maps_averages_marked_classes():
    reference = np.zeros((1, 3, 2, 2))
    reference[0, 0] = 1.0  # every pixel class 0
    output = reference.copy()
    output[0, 1, 0, 0] = 2.0  # one pixel becomes class 1
    # class 0: 3 / 4; class 1: 0 / 1; class 2 marked by neither: left out
    assert METRICS["mask_iou"]([reference], [output]).value == pytest.approx(0.375)


def yolo_v8(boxes: list[tuple[float, float, float, float, int, float]], anchors=200) -> np.ndarray:
    """[1, 84, anchors]: each (cx, cy, w, h, class, score) on its own anchor, the rest empty."""
    head = np.zeros((1, 84, anchors), np.float32)
    head[0, :4, :] = 10.0  # empty anchors still carry a box, with every score 0
    for i, (cx, cy, w, h, cls, score) in enumerate(boxes):
        head[0, :4, i] = (cx, cy, w, h)
        head[0, 4 + cls, i] = score
    return head


def yolo_v5(boxes: list[tuple[float, float, float, float, int, float]]) -> np.ndarray:
    """[1, anchors, 85]: the v8 head transposed, with objectness 1 inserted at index 4."""
    head = np.swapaxes(yolo_v8(boxes), 1, 2)
    return np.insert(head, 4, 1.0, axis=2)


def test_yolo_layouts_are_recognized_by_rule():
    v8 = yolo_layout(yolo_v8([(50, 50, 20, 20, 0, 0.9)]))
    assert v8 is not None and (v8.attributes_axis, v8.objectness, v8.classes) == (1, False, 80)
    v5 = yolo_layout(yolo_v5([(50, 50, 20, 20, 0, 0.9)]))
    assert v5 is not None and (v5.attributes_axis, v5.objectness, v5.classes) == (2, True, 80)
    small = np.zeros((1, 50, 7), np.float32)
    small[0, :, :4] = 30.0
    assert yolo_layout(small).objectness and yolo_layout(small).classes == 2  # type: ignore[union-attr]
    probabilities = np.full((1, 40, 97), 1 / 97, np.float32)  # CTC scores: no pixel boxes
    assert yolo_layout(probabilities) is None


def test_decode_drops_low_scores_and_nms_keeps_other_classes():
    head = yolo_v8([
        (100, 100, 50, 50, 0, 0.9),
        (102, 100, 50, 50, 0, 0.8),  # IoU ~0.92 with the first, same class: suppressed
        (100, 100, 50, 50, 1, 0.7),  # same place, other class: kept
        (300, 300, 40, 40, 2, 0.2),  # under the 0.25 confidence: dropped
    ])  # fmt: skip
    (found,) = decode(head, yolo_layout(head))  # type: ignore[arg-type]
    assert found.classes.tolist() == [0, 1] and found.scores.tolist() == pytest.approx([0.9, 0.7])
    assert found.boxes[0].tolist() == [75, 75, 125, 125]
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float64)
    assert nms(boxes, np.array([0.5, 0.6]), np.array([0, 0])).tolist() == [1]


def test_detection_f1_matches_boxes_of_the_same_class_at_iou_half():
    reference = yolo_v8([(100, 100, 50, 50, 0, 0.9), (100, 100, 50, 50, 1, 0.7)])
    output = yolo_v8([
        (100, 100, 50, 50, 0, 0.85),  # matches the class-0 box
        (100, 100, 50, 50, 2, 0.7),  # class changed: no match
        (400, 400, 30, 30, 0, 0.6),  # a new box: no match
    ])  # fmt: skip
    found = METRICS["detection_f1"]([reference], [output])
    assert found.value == pytest.approx(2 * 1 / (2 + 3))
    assert found.details["precision"] == pytest.approx(1 / 3) and found.details["recall"] == 0.5
    # a box shifted so that IoU is exactly 0.5 (w 60: overlap 40·60 / (2·3600 - 2400)) matches
    shifted = yolo_v8([(100, 100, 60, 60, 0, 0.9)]), yolo_v8([(120, 100, 60, 60, 0, 0.9)])
    assert METRICS["detection_f1"]([shifted[0]], [shifted[1]]).value == 1.0
    nothing = yolo_v8([])
    assert METRICS["detection_f1"]([nothing], [nothing]).value == 1.0
    assert METRICS["detection_f1"]([nothing], [reference]).value == 0.0


def test_embedding_cosine_and_nearest_neighbour_agreement():
    reference = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.3]], np.float64)
    output = reference.copy()
    output[1] = [0.5, 0.6, 0]  # row 1 now sits nearer row 2 than row 0
    # neighbours: reference 1, 0, 3, 2; output: 1, 2, 3, 2 → rows 0, 2, 3 agree
    found = METRICS["embedding"]([reference[:2], reference[2:]], [output[:2], output[2:]])
    assert found.details["neighbour_agreement"] == 0.75
    cos_row1 = (0.9 * 0.5 + 0.1 * 0.6) / (np.hypot(0.9, 0.1) * np.hypot(0.5, 0.6))
    assert found.value == pytest.approx((3 + cos_row1) / 4)
    assert found.loss == pytest.approx(max(1 - found.value, 0.025))
    tokens = np.stack([reference, reference * 3])[None]  # [1, 2, 4, 3]: not [N, T, D]
    assert METRICS["embedding"]([tokens[0]], [tokens[0]]).value == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "array", "metric"),
    [
        ("logits", np.array([[0.3, -1.0, 2.0]], np.float32), "top1"),
        ("softmax", one_hot([0, 1, 2], 5), "ctc"),
        ("logp", np.log(one_hot([0, 1, 2], 5)), "ctc"),
        ("mask", np.full((1, 1, 32, 32), 0.3, np.float32), "mask_iou"),
        ("seg", np.zeros((2, 21, 64, 64), np.float32), "mask_iou"),
        ("output0", yolo_v8([(50, 50, 20, 20, 0, 0.9)]), "detection_f1"),
        ("sentence_embedding", np.ones((2, 384), np.float32), "embedding"),
        ("last_hidden_state", np.ones((1, 7, 384), np.float32), "embedding"),
        ("y", np.eye(2, 16, dtype=np.float32), "embedding"),  # unit rows
        ("ids", np.array([[3, 1]]), "exact"),
        ("features", np.ones((1, 256, 8, 8), np.float32), "cosine"),
        ("value", np.ones((4, 1), np.float32), "cosine"),
    ],
)
def test_the_metric_is_chosen_from_the_outputs_structure(name, array, metric):
    assert choose_metric(name, [array]).metric == metric


def test_a_ctc_head_of_rank_two_needs_a_varying_length():
    # [T, C] with T = 5 then 6, the blank (0) winning most steps
    steps = [one_hot([0, 1, 0, 0, 2], 5)[0], one_hot([0, 0, 3, 0, 4, 0], 5)[0]]
    assert choose_metric("probs", steps).metric == "ctc"
    assert choose_metric("probs", steps[:1]).metric == "top1"
    # a softmax classifier whose last batch is smaller: its argmax is spread over the classes
    batches = [np.eye(5, dtype=np.float32)[[0, 1, 2, 3]], np.eye(5, dtype=np.float32)[[4, 0]]]
    assert choose_metric("probs", batches).metric == "top1"


def test_plan_judges_each_output_and_records_the_tolerance():
    names = ("logits", "emb")
    reference = [[np.array([[2.0, 1.0]]), np.ones((1, 4))]]
    outputs = [[np.array([[1.0, 2.0]]), np.ones((1, 4))]]
    plan = plan_metrics(names, reference)
    assert [c.metric for c in plan.choices.values()] == ["top1", "embedding"]
    score = plan.score(reference, outputs)
    assert not score.met and score.worst == "logits" and score.loss == pytest.approx(100.0)
    assert plan_metrics(names, reference, tolerance=1.0).score(reference, outputs).met
    cosine = plan_metrics(names, reference, "cosine").score(reference, outputs)
    assert cosine.outputs["logits"].value == pytest.approx(0.8)
    with pytest.raises(
        UsageError, match=r"--metric ctc does not fit output 'emb': ctc: scores of shape \(4,\)"
    ):
        plan_metrics(names, [[np.zeros((1, 2)), np.ones(4)]], "ctc")
    with pytest.raises(UsageError, match="unknown --metric 'f1' — choose from 'auto', 'top1'"):
        plan_metrics(names, reference, "f1")


def test_labels_count_only_what_the_task_loses_on_ctc():
    """Two lines, truth [1, 2] and [3]. fp32 reads [1, 1] (wrong) and [3]; the candidate reads
    [1, 2] (it changed fp32's string, but to the truth) and [2]: against fp32 it moved 2 of 3
    characters; against the truth it lost 1 and gained 1 — no accuracy lost."""
    reference = [one_hot([0, 1, 0, 1, 0], 4), one_hot([3, 0, 0, 0, 0], 4)]
    outputs = [one_hot([0, 1, 0, 2, 0], 4), one_hot([2, 0, 0, 0, 0], 4)]
    labels = [np.array([1, 2]), np.array([3, 0])]  # the blank pads the second
    plan = plan_metrics(("probs",), [[r] for r in reference], labels=labels)
    assert plan.labelled == "probs"
    found = plan.score([[r] for r in reference], [[o] for o in outputs]).outputs["probs"]
    assert found.metric == "ctc vs labels" and found.loss == 0.0
    assert found.value == pytest.approx(2 / 3)
    assert found.details["fp32_accuracy"] == pytest.approx(2 / 3)
    unlabelled = plan_metrics(("probs",), [[r] for r in reference])
    assert unlabelled.score([[r] for r in reference], [[o] for o in outputs]).loss > 100
    worse = [one_hot([0, 2, 0, 2, 0], 4), one_hot([2, 0, 0, 0, 0], 4)]  # reads [2, 2] and [2]
    lost = plan.score([[r] for r in reference], [[w] for w in worse]).outputs["probs"]
    assert lost.loss == pytest.approx(1 / 3) and not lost.met  # 2 of 3 right before, 1 now


def test_labels_on_a_classifier_give_the_accuracy_drop():
    reference = [[np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])]]
    outputs = [[np.array([[0.1, 0.9], [0.3, 0.7], [0.4, 0.6]])]]  # 2 of 3 decisions changed
    labels = [np.array([1, 1, 1])]
    found = plan_metrics(("logits",), reference, labels=labels).score(reference, outputs)
    assert found.outputs["logits"].value == 1.0 and found.loss == 0.0  # 1/3 right → 3/3
    flipped = [[np.array([[0.9, 0.1], [0.7, 0.3], [0.6, 0.4]])]]  # none right: 1/3 lost
    drop = plan_metrics(("logits",), reference, labels=labels, tolerance=0.5).score(
        reference, flipped
    )
    assert drop.outputs["logits"].loss == pytest.approx(1 / 3) and drop.met


@pytest.mark.parametrize(
    ("names", "reference", "labels", "metric", "error", "message"),
    [
        (("a", "b"), [[np.eye(2), np.eye(2)]], [np.array([0, 1])], "auto", UsageError,
         r"--labels needs exactly one output judged by top1 or ctc; the outputs are judged by "
         r"'a': top1, 'b': top1 — drop --labels"),
        (("a",), [[np.ones((1, 8))]], [np.array([0])], "cosine", UsageError,
         r"judged by 'a': cosine"),
        (("a",), [[np.eye(2)]], [np.array([0.0, 1.0])], "auto", DataError,
         r"quantize: --labels: eval feed 0: labels are float64, class ids must be integers"),
        (("a",), [[np.eye(2)]], [np.array([0, 1, 1])], "auto", DataError,
         r"eval feed 0: 3 labels for 2 predictions"),
        (("a",), [[np.eye(2)], [np.eye(2)]], [np.array([0, 1])], "auto", DataError,
         r"--labels: 1 labels for 2 eval feeds"),
    ],
)  # fmt: skip
def test_labels_that_do_not_fit_fail_before_any_work(
    names, reference, labels, metric, error, message
):
    with pytest.raises(error, match=message):
        plan_metrics(names, reference, metric, labels=labels)


def test_plugin_gets_outputs_by_name_and_its_loss_is_one_minus_fidelity(tmp_path):
    script = tmp_path / "task.py"
    script.write_text(
        "def agree(reference, outputs):\n"
        "    same = [r['y'].argmax() == o['y'].argmax() for r, o in zip(reference, outputs)]\n"
        "    return sum(same) / len(same)\n"
        "def words(reference, outputs):\n"
        "    return 'good'\n"
        "def big(reference, outputs):\n"
        "    return 1.7\n"
    )
    reference = [[np.array([1.0, 0.0])], [np.array([0.0, 1.0])]]
    outputs = [[np.array([1.0, 0.0])], [np.array([1.0, 0.0])]]
    plan = plan_metrics(["y"], reference, f"{script}:agree")
    fidelity = plan.score(reference, outputs).outputs["all outputs"]
    assert (fidelity.metric, fidelity.value, fidelity.loss) == ("task.py:agree", 0.5, 0.5)


@pytest.mark.parametrize(
    ("fn", "error", "message"),
    [
        (
            "missing.py:fn",
            UsageError,
            r"quantize: --metric missing.py:fn: missing.py does not exist",
        ),
        ("{script}:nope", UsageError, "has no function 'nope' — it defines 'words', 'big'"),
        ("{script}:words", DataError, "returned str, not a number — return a fidelity in"),
        ("{script}:big", DataError, r"returned 1.7 — return a fidelity in \[0, 1\]"),
    ],
)
def test_plugin_errors_are_one_line_with_the_fix(tmp_path, monkeypatch, fn, error, message):
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "task.py"
    script.write_text("def words(r, o):\n    return 'good'\ndef big(r, o):\n    return 1.7\n")
    spec = fn.format(script=script)
    with pytest.raises(error, match=message):
        plan_metrics(["y"], [[np.zeros(2)]], spec)
    assert load_plugin(f"{script}:big", "prune").name == "task.py:big"
