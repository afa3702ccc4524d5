"""The multilabel kind: the KindAggregation surface over per-class truth inference."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from annotation_pipelines.aggregation.multilabel import (
    aggregate_multilabel,
    aggregate_multilabel_kind,
    gold_score,
)


def _sets(seed: int = 0, n_tasks: int = 200) -> tuple[pl.DataFrame, dict[str, set[str]]]:
    """Three careful annotators and one who ticks classes at random."""
    rng = np.random.default_rng(seed)
    classes = ["animal", "outdoor", "person", "vehicle"]
    rows, truth = [], {}
    for task in range(n_tasks):
        true = {name for name in classes if rng.random() < 0.4}
        truth[f"t{task}"] = true
        for annotator in ("a", "b", "c", "noisy"):
            if annotator == "noisy":
                chosen = [name for name in classes if rng.random() < 0.5]
            else:
                chosen = [name for name in classes if (name in true) != (rng.random() < 0.08)]
            rows.append((f"t{task}", annotator, chosen))
    frame = pl.DataFrame(rows, schema=["task_id", "annotator_id", "labels"], orient="row")
    return frame, truth


def test_kind_surface_matches_the_existing_function_and_scores_annotators() -> None:
    judgments, truth = _sets()
    kind = aggregate_multilabel_kind(judgments)
    old = aggregate_multilabel(judgments.rename({"labels": "label"}))
    assert kind.labels["labels"].to_list() == old["labels"].to_list()
    assert kind.labels.columns == ["task_id", "labels", "confidence", "n_votes", "probability"]
    assert kind.iterations > 0  # convergence is the per-class EM's own verdict
    exact = np.mean(
        [
            set(labels) == truth[task]
            for task, labels in zip(kind.labels["task_id"], kind.labels["labels"], strict=True)
        ]
    )
    assert exact > 0.85
    confidence = kind.labels["confidence"]
    assert ((confidence >= 0) & (confidence <= 1)).all()
    # A task everyone labels identically is more confident than the average task.
    assert confidence.mean() < 1.0
    reliability = dict(
        zip(kind.annotators["annotator_id"], kind.annotators["reliability"], strict=True)
    )
    assert reliability["noisy"] < min(reliability["a"], reliability["b"], reliability["c"]) - 0.2
    assert kind.annotators.columns == [
        "annotator_id",
        "reliability",
        "n_judgments",
        "mean_masi_distance",
    ]


def test_gold_score_and_gold_reference() -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["1", "1", "2", "2"],
            "annotator_id": ["a", "b", "a", "b"],
            "labels": [["x"], ["x", "y"], [], ["z"]],
        }
    )
    gold = pl.DataFrame({"task_id": ["1"], "labels": [["x", "y"]]})
    scores = gold_score(judgments, gold)
    assert scores.to_dicts() == [
        {"annotator_id": "a", "n_gold": 1, "mean_jaccard": 0.5, "exact_match": 0.0},
        {"annotator_id": "b", "n_gold": 1, "mean_jaccard": 1.0, "exact_match": 1.0},
    ]
    fitted = aggregate_multilabel_kind(judgments, method="majority_vote", gold=gold)
    assert fitted.annotators["n_judgments"].to_list() == [2, 2]


def test_missing_column_is_named() -> None:
    judgments, _ = _sets(n_tasks=3)
    with pytest.raises(ValueError, match="missing column"):
        aggregate_multilabel_kind(judgments.rename({"labels": "label"}))
