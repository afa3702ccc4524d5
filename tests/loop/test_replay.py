"""The replay simulator on a synthetic crowd with known truth, through the real policy."""

from __future__ import annotations

import polars as pl

from annotation_pipelines.aggregation import fit
from annotation_pipelines.loop.policy import PolicyOptions
from annotation_pipelines.loop.posterior import CategoricalConfidence
from annotation_pipelines.loop.replay import replay
from tests.loop.synthetic import crowd
from tests.realdata import accuracy


def _first(judgments: pl.DataFrame, k: int) -> pl.DataFrame:
    return judgments.filter(pl.int_range(pl.len()).over("task_id") < k)


def test_adaptive_beats_fixed_three_at_equal_cost() -> None:
    judgments, truth = crowd()
    fixed = _first(judgments, 3)
    fixed_accuracy = accuracy(fit(fixed, "dawid_skene").labels, truth)
    result = replay(
        judgments,
        confidence=CategoricalConfidence(),
        options=PolicyOptions(min_votes=2, max_votes=9, target_confidence=0.98, budget=1 / 3),
    )
    assert result.judgments_used <= fixed.height
    assert accuracy(result.labels, truth) > fixed_accuracy + 0.01, (
        accuracy(result.labels, truth),
        fixed_accuracy,
    )


def test_reveals_in_file_order_and_respects_max_votes() -> None:
    judgments, _ = crowd(n_tasks=60)
    options = PolicyOptions(min_votes=3, max_votes=5, target_confidence=0.999)
    result = replay(judgments, confidence=CategoricalConfidence(), options=options)
    assert result.revealed is not None
    per_task = result.revealed.group_by("task_id").len()
    assert per_task["len"].min() >= 3 and per_task["len"].max() <= 5
    # What was revealed of each task is a prefix of its rows in file order.
    for task, rows in result.revealed.group_by("task_id"):
        expected = judgments.filter(pl.col("task_id") == task[0]).head(rows.height)
        assert rows.equals(expected)
    assert result.judgments_used == result.revealed.height
    assert result.rounds >= 2
    assert result.labels.columns == ["task_id", "label", "confidence"]
    assert result.labels.height == 60


def test_budget_smaller_than_the_first_votes_reveals_vote_by_vote() -> None:
    judgments, _ = crowd(n_tasks=50, votes=4)
    result = replay(
        judgments,
        confidence=CategoricalConfidence(),
        options=PolicyOptions(min_votes=3, budget=0.5),
    )
    assert result.judgments_used == 100
    assert result.revealed.group_by("task_id").len()["len"].to_list() == [2] * 50


def test_task_without_rows_left_is_done() -> None:
    judgments = pl.DataFrame(
        {
            "task_id": ["a", "a", "a", "b", "b", "b", "b"],
            "annotator_id": ["x", "y", "z", "x", "y", "z", "w"],
            "label": ["p", "q", "p", "p", "p", "q", "q"],
        }
    )
    result = replay(
        judgments,
        confidence=CategoricalConfidence(),
        options=PolicyOptions(min_votes=3, max_votes=9, target_confidence=0.999),
    )
    assert result.judgments_used == 7
    assert result.decisions.get("needs_another_judgment", 0) == 0
