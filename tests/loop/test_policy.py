"""The adaptive-redundancy policy: done, one more judgment, escalate, within a budget."""

from __future__ import annotations

import polars as pl
import pytest

from annotation_pipelines.loop.policy import (
    DEFERRED,
    DONE,
    ESCALATE,
    NEEDS_ANOTHER_JUDGMENT,
    PolicyOptions,
    budget_judgments,
    decide,
)


def _tasks(confidence: list[float], votes: list[int], **extra: list) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": [f"t{index}" for index in range(len(confidence))],
            "confidence": confidence,
            "n_votes": votes,
            **extra,
        }
    )


def _decisions(frame: pl.DataFrame) -> list[str]:
    return frame.get_column("decision").to_list()


def test_done_another_and_escalate_at_max_votes() -> None:
    options = PolicyOptions(min_votes=3, max_votes=5, target_confidence=0.9)
    decided = decide(_tasks([0.95, 0.8, 0.8, 0.9], [3, 3, 5, 4]), options)
    assert _decisions(decided) == [DONE, NEEDS_ANOTHER_JUDGMENT, ESCALATE, DONE]
    assert "after max_votes 5" in decided.get_column("reason")[2]


def test_budget_serves_the_least_confident_first_and_defers_the_rest() -> None:
    options = PolicyOptions(target_confidence=0.9)
    decided = decide(_tasks([0.7, 0.5, 0.8, 0.6], [3, 3, 3, 3]), options, budget_left=2)
    assert _decisions(decided) == [
        DEFERRED,
        NEEDS_ANOTHER_JUDGMENT,
        DEFERRED,
        NEEDS_ANOTHER_JUDGMENT,
    ]
    none_left = decide(_tasks([0.7], [3]), options, budget_left=0)
    assert _decisions(none_left) == [DEFERRED]


def test_expert_when_cheaper_than_the_expected_crowd_votes() -> None:
    # Confident tasks show ~log(0.99/0.01)/3 ≈ 1.5 log-odds per vote; a task at 0.5 needs
    # ~log(19)/1.5 ≈ 2 more votes to reach 0.95.
    tasks = _tasks([0.99, 0.99, 0.5], [3, 3, 3])
    cheap_expert = decide(tasks, PolicyOptions(max_votes=9, expert_cost=1.5))
    assert _decisions(cheap_expert)[2] == ESCALATE
    assert "expert cost" in cheap_expert.get_column("reason")[2]
    dear_expert = decide(tasks, PolicyOptions(max_votes=9, expert_cost=10.0))
    assert _decisions(dear_expert)[2] == NEEDS_ANOTHER_JUDGMENT


def test_exhausted_task_is_done_as_it_stands() -> None:
    decided = decide(_tasks([0.6, 0.6], [3, 3], exhausted=[True, False]), PolicyOptions())
    assert _decisions(decided) == [DONE, NEEDS_ANOTHER_JUDGMENT]
    assert "no judgment left" in decided.get_column("reason")[0]


def test_budget_in_judgments() -> None:
    assert budget_judgments(1000, PolicyOptions(budget=0.5)) == 500
    assert budget_judgments(3, PolicyOptions(budget=1 / 3)) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_votes": 0}, "min_votes"),
        ({"min_votes": 4, "max_votes": 3}, "max_votes"),
        ({"target_confidence": 1.5}, "target_confidence"),
        ({"budget": 0.0}, "budget"),
        ({"expert_cost": -1.0}, "expert_cost"),
    ],
)
def test_options_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyOptions(**options)


def test_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match="n_votes"):
        decide(pl.DataFrame({"task_id": ["t"], "confidence": [0.5]}), PolicyOptions())
