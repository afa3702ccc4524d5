import numpy as np
import polars as pl
import pytest
from scipy.optimize import linear_sum_assignment

from annotation_pipelines.aggregation.boxes import BOX, aggregate_boxes, gold_score, iou
from annotation_pipelines.agreement.boxes import box_f1_at_iou, box_pair_distances
from tests.kinds.synthetic_geo import scenes

BOXES = pl.List(BOX)


def box(x0, y0, x1, y1, label="car"):
    return {"label": label, "x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1}


def frame(rows):
    return pl.DataFrame(
        rows, schema={"task_id": pl.String, "annotator_id": pl.String, "boxes": BOXES}, orient="row"
    )


def test_iou_hand_computed():
    a = np.array([[0.0, 0.0, 10.0, 10.0], [0, 0, 10, 10], [0, 0, 1, 1], [0, 0, 0, 0]])
    b = np.array([[5.0, 5.0, 15.0, 15.0], [0, 0, 10, 5], [2, 2, 3, 3], [0, 0, 0, 0]])
    # 25 / (100 + 100 - 25); 50 / 100; disjoint; both empty.
    assert iou(a, b) == pytest.approx([25 / 175, 0.5, 0.0, 0.0])


def test_unweighted_fusion_averages_coordinates_and_drops_a_lone_box():
    judgments = frame(
        [
            ("t", "a", [box(0, 0, 10, 10)]),
            ("t", "b", [box(2, 0, 12, 10)]),
            ("t", "c", [box(1, 1, 11, 11), box(50, 50, 60, 60)]),
            ("t", "d", []),
        ]
    )
    result = aggregate_boxes(judgments, method="majority")
    (fused,) = result.labels["boxes"][0].to_list()
    assert (fused["x_min"], fused["y_min"], fused["x_max"], fused["y_max"]) == pytest.approx(
        (1.0, 1 / 3, 11.0, 31 / 3)
    )
    # 3 of 4 annotators drew it; the lone box (1 of 4) is dropped.
    member_iou = iou(
        np.array([[0, 0, 10, 10], [2, 0, 12, 10], [1, 1, 11, 11]], dtype=float),
        np.array([[1.0, 1 / 3, 11.0, 31 / 3]] * 3),
    ).mean()
    assert fused["confidence"] == pytest.approx(0.75 * member_iou)
    # Task confidence: kept (0.75) and dropped (1 − 0.25) decisions.
    assert result.labels["confidence"][0] == pytest.approx(0.75)


def test_one_annotator_contributes_at_most_one_box_per_cluster_and_labels_must_match():
    judgments = frame(
        [
            ("t", "a", [box(0, 0, 10, 10), box(1, 0, 11, 10)]),
            ("t", "b", [box(0, 0, 10, 10, "person")]),
        ]
    )
    result = aggregate_boxes(judgments, method="majority")
    assert result.labels["boxes"][0].len() == 3  # three clusters, each with support 1/2


def test_duplicate_judgment_is_named():
    judgments = frame([("t", "a", []), ("t", "a", [])])
    with pytest.raises(ValueError, match=r"row 1: task_id 't'.*annotator_id 'a'"):
        aggregate_boxes(judgments)


def _model_score(result, truth):
    return gold_score(result.labels.with_columns(annotator_id=pl.lit("model")), truth).row(
        0, named=True
    )


def test_reliability_weighting_beats_unweighted_fusion_against_truth():
    truth, judgments = scenes(400, seed=1, n_spammers=3)
    weighted = aggregate_boxes(judgments)
    unweighted = aggregate_boxes(judgments, method="majority")
    assert weighted.converged
    good = _model_score(weighted, truth)
    baseline = _model_score(unweighted, truth)
    # Small objects are seen by 3 of 7 annotators: kept only when spammers are down-weighted.
    assert good["f1"] > baseline["f1"] + 0.05
    assert good["f1"] > 0.97
    assert good["mean_iou"] > baseline["mean_iou"]
    annotators = {row["annotator_id"]: row for row in weighted.annotators.iter_rows(named=True)}
    assert max(annotators[f"spammer_{i}"]["reliability"] for i in range(3)) < 0.1
    assert annotators["misser"]["recall"] < 0.9 < annotators["good_1"]["recall"]


def test_loose_annotator_shows_its_looseness():
    _, judgments = scenes(300, seed=2)
    result = aggregate_boxes(judgments)
    looseness = dict(result.annotators.select("annotator_id", "looseness").iter_rows())
    # Sides pushed out by 15% each: area 1.3² = 1.69 of the object's.
    assert looseness["loose"] > 0.35
    assert all(abs(looseness[name]) < 0.2 for name in ("good_1", "good_2", "misser"))
    reliability = dict(result.annotators.select("annotator_id", "reliability").iter_rows())
    assert reliability["loose"] < reliability["good_1"]


def test_confidence_is_higher_for_objects_more_annotators_saw():
    _, judgments = scenes(300, seed=3)
    boxes = aggregate_boxes(judgments).labels.select("boxes").explode("boxes").unnest("boxes")
    small = pl.min_horizontal(pl.col("x_max") - pl.col("x_min"), pl.col("y_max") - pl.col("y_min"))
    means = boxes.group_by(small < 40).agg(pl.col("confidence").mean())
    confidence = dict(means.iter_rows())
    # The misser skips small objects: fewer annotators, lower confidence.
    assert confidence[True] < confidence[False] - 0.05


def test_gold_anchors_the_gold_tasks():
    truth, judgments = scenes(100, seed=4)
    result = aggregate_boxes(judgments, gold=truth.head(20))
    anchored = result.labels.head(20).select("task_id", "boxes")
    score = gold_score(anchored.with_columns(annotator_id=pl.lit("model")), truth.head(20))
    assert score["f1"][0] == 1.0
    assert score["mean_iou"][0] == pytest.approx(1.0)
    assert "\x00gold" not in result.annotators["annotator_id"].to_list()


def test_gold_score_hand_computed():
    judgments = frame([("t", "a", [box(0, 0, 10, 10), box(20, 20, 30, 30)])])
    gold = pl.DataFrame(
        {"task_id": ["t"], "boxes": [[box(0, 0, 10, 5), box(100, 100, 110, 110)]]},
        schema={"task_id": pl.String, "boxes": BOXES},
    )
    row = gold_score(judgments, gold).row(0, named=True)
    assert (row["precision"], row["recall"], row["f1"], row["mean_iou"]) == (0.5, 0.5, 0.5, 0.5)


def test_pair_distances_hand_computed():
    a = pl.Series(
        [[box(0, 0, 10, 10), box(20, 20, 30, 30)], [], [], [box(0, 0, 10, 10)]], dtype=BOXES
    )
    b = pl.Series(
        [[box(0, 0, 10, 5)], [], [box(0, 0, 1, 1)], [box(0, 0, 10, 10, "person")]], dtype=BOXES
    )
    # Objects: the matched pair (IoU 0.5) and the unmatched box → 1 − 0.5 / 2.
    assert box_pair_distances(a, b) == pytest.approx([0.75, 0.0, 1.0, 1.0])
    assert box_f1_at_iou(a, b) == pytest.approx([2 / 3, 1.0, 0.0, 0.0])
    assert box_f1_at_iou(a, b, threshold=0.6) == pytest.approx([0.0, 1.0, 0.0, 0.0])


def test_matching_is_optimal_like_scipy():
    rng = np.random.default_rng(5)
    rows_a, rows_b, expected = [], [], []
    for _ in range(200):
        n_a, n_b = rng.integers(1, 7, size=2)
        a = rng.uniform(0, 50, size=(n_a, 2))
        b = rng.uniform(0, 50, size=(n_b, 2))
        a = np.hstack([a, a + rng.uniform(5, 30, size=(n_a, 2))])
        b = np.hstack([b, b + rng.uniform(5, 30, size=(n_b, 2))])
        gain = np.array(
            [[iou(a[i : i + 1], b[j : j + 1])[0] for j in range(n_b)] for i in range(n_a)]
        )
        rows, columns = linear_sum_assignment(gain, maximize=True)
        matched = gain[rows, columns]
        objects = n_a + n_b - np.count_nonzero(matched > 0)
        expected.append(1 - matched.sum() / objects)
        rows_a.append([box(*coords) for coords in a])
        rows_b.append([box(*coords) for coords in b])
    got = box_pair_distances(pl.Series(rows_a, dtype=BOXES), pl.Series(rows_b, dtype=BOXES))
    assert got == pytest.approx(expected, abs=1e-12)
