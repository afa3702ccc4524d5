"""The adaptive-redundancy policy: done, one more judgment, escalate, within a budget."""

from __future__ import annotations

import numpy as np
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
    label_uncertainty,
    stopping_confidence,
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


def test_a_confidence_the_fit_could_not_compute_is_never_done() -> None:
    options = PolicyOptions(min_votes=3, max_votes=5, target_confidence=0.9)
    tasks = _tasks([float("nan"), 0.95, float("nan")], [3, 3, 5]).with_columns(
        pl.when(pl.col("task_id") == "t2")
        .then(None)
        .otherwise(pl.col("confidence"))
        .alias("confidence")
    )
    decided = decide(tasks, options)
    assert _decisions(decided) == [NEEDS_ANOTHER_JUDGMENT, DONE, ESCALATE]
    assert decided.get_column("confidence").to_list() == [0.0, 0.95, 0.0]


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


def test_a_confident_task_below_min_votes_needs_another_unless_exhausted() -> None:
    tasks = _tasks([0.99, 0.99, 0.99], [1, 2, 2], exhausted=[False, False, True])
    decided = decide(tasks, PolicyOptions(min_votes=3, target_confidence=0.9))
    assert _decisions(decided) == [NEEDS_ANOTHER_JUDGMENT, NEEDS_ANOTHER_JUDGMENT, DONE]
    assert decided.get_column("reason")[0] == "1 vote(s) < min_votes 3"


def test_exhausted_task_is_done_as_it_stands() -> None:
    decided = decide(_tasks([0.6, 0.6], [3, 3], exhausted=[True, False]), PolicyOptions())
    assert _decisions(decided) == [DONE, NEEDS_ANOTHER_JUDGMENT]
    assert "no judgment left" in decided.get_column("reason")[0]


def test_label_uncertainty_is_the_beta_tail_beyond_an_even_split() -> None:
    # Beta(4, 1) below 1/2 is 0.5^4; an even split is a coin flip whatever its size.
    values = label_uncertainty(np.array([3, 4, 6]), np.array([0, 3, 6]))
    assert values[0] == pytest.approx(0.0625)
    assert 0.3 < values[1] < 0.4
    assert values[2] == pytest.approx(0.5)


def test_vote_split_holds_a_split_task_open_and_lets_a_unanimous_one_stop() -> None:
    options = PolicyOptions(target_confidence=0.97, label_uncertainty=True)
    tasks = _tasks([0.999, 0.998, 0.98], [3, 7, 3], top_votes=[3, 4, 3], runner_up_votes=[0, 3, 0])
    decided = decide(tasks, options)
    # 3-0 at 0.999: 1 - sqrt(0.001 * 0.0625) = 0.992; 4-3 at 0.998: 1 - sqrt(0.002 * 0.36) =
    # 0.973 would pass 0.97 but not 0.98; 3-0 at 0.98: 1 - sqrt(0.02 * 0.0625) = 0.965.
    assert _decisions(decided) == [DONE, DONE, NEEDS_ANOTHER_JUDGMENT]
    stricter = decide(tasks, PolicyOptions(target_confidence=0.98, label_uncertainty=True))
    assert _decisions(stricter) == [DONE, NEEDS_ANOTHER_JUDGMENT, NEEDS_ANOTHER_JUDGMENT]
    expected = stopping_confidence(
        np.array([0.999, 0.998, 0.98]), np.array([3, 4, 3]), np.array([0, 3, 0])
    )
    assert decided.get_column("confidence").to_list() == pytest.approx(expected.tolist())


def test_without_vote_counts_or_with_the_check_off_the_model_confidence_decides() -> None:
    # Kinds without a vote split, and callers that pass only the three columns, keep the
    # model's confidence as the stopping rule.
    plain = decide(_tasks([0.98, 0.96], [3, 3]), PolicyOptions(target_confidence=0.97))
    assert _decisions(plain) == [DONE, NEEDS_ANOTHER_JUDGMENT]
    split = _tasks([0.998], [7], top_votes=[4], runner_up_votes=[3])
    for options in (
        PolicyOptions(target_confidence=0.98),
        PolicyOptions(label_uncertainty=False, target_confidence=0.98),
    ):
        off = decide(split, options)
        assert _decisions(off) == [DONE]
        assert off.get_column("confidence").to_list() == [0.998]


def test_a_set_budget_is_spent_on_the_least_confident_once_every_task_is_at_target() -> None:
    tasks = _tasks(
        [0.99, 0.995, 0.999, 0.991], [3, 3, 3, 15], exhausted=[False, False, False, False]
    )
    options = PolicyOptions(target_confidence=0.98, budget=0.5)
    decided = decide(tasks, options, budget_left=2)
    # Five per cent of four tasks rounds up to one a round; the task at max_votes is not asked.
    assert _decisions(decided) == [NEEDS_ANOTHER_JUDGMENT, DONE, DONE, DONE]
    assert "budget is left" in decided.get_column("reason")[0]
    assert _decisions(decide(tasks, options, budget_left=0)) == [DONE] * 4
    # No budget set (the whole file), or spending off: done is done.
    assert (
        _decisions(decide(tasks, PolicyOptions(target_confidence=0.98), budget_left=2))
        == [DONE] * 4
    )
    frugal = PolicyOptions(target_confidence=0.98, budget=0.5, spend_budget=False)
    assert _decisions(decide(tasks, frugal, budget_left=2)) == [DONE] * 4


def test_round_share_asks_the_least_confident_first_and_the_rest_wait() -> None:
    tasks = _tasks([0.7, 0.5, 0.8, 0.6, 0.99], [3, 3, 3, 3, 3])
    # Two of five a round, under a budget.
    options = PolicyOptions(target_confidence=0.9, round_share=0.4, budget=0.5)
    decided = decide(tasks, options, budget_left=10)
    assert _decisions(decided) == [
        DEFERRED,
        NEEDS_ANOTHER_JUDGMENT,
        DEFERRED,
        NEEDS_ANOTHER_JUDGMENT,
        DONE,
    ]
    assert "waits for a later round" in decided.get_column("reason")[0]
    # The budget still caps the round, and what it cannot pay is deferred for the budget.
    tight = decide(tasks, options, budget_left=1)
    assert _decisions(tight) == [DEFERRED, NEEDS_ANOTHER_JUDGMENT, DEFERRED, DEFERRED, DONE]
    assert "budget spent" in tight.get_column("reason")[3]
    # Unset, or without a budget, every task below target is asked at once.
    for unrounded in (
        PolicyOptions(target_confidence=0.9, budget=0.5),
        PolicyOptions(target_confidence=0.9, round_share=0.4),
    ):
        wanted = _decisions(decide(tasks, unrounded, budget_left=10))
        assert wanted.count(NEEDS_ANOTHER_JUDGMENT) == 4


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
        ({"round_share": 0.0}, "round_share"),
    ],
)
def test_options_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyOptions(**options)


def test_missing_column_is_named() -> None:
    with pytest.raises(ValueError, match="n_votes"):
        decide(pl.DataFrame({"task_id": ["t"], "confidence": [0.5]}), PolicyOptions())


def test_a_confident_task_short_of_min_votes_says_so_when_it_waits_or_the_budget_is_spent() -> None:
    options = PolicyOptions(min_votes=3, max_votes=5, target_confidence=0.9)
    decided = decide(_tasks([0.99], [1]), options, budget_left=0)
    assert _decisions(decided) == [DEFERRED]
    assert decided.get_column("reason")[0] == "1 vote(s) < min_votes 3; budget spent"


def test_a_known_task_is_done_whatever_its_votes_and_budget() -> None:
    frame = pl.DataFrame(
        {
            "task_id": ["gold_low", "gold_few", "open"],
            "confidence": [0.4, 1.0, 0.99],
            "n_votes": [3, 1, 3],
            "known": [True, True, False],
        }
    )
    options = PolicyOptions(min_votes=3, target_confidence=0.9, budget=0.5)
    decided = decide(frame, options, budget_left=10)
    # Only the open task is left to spend the budget on, though both gold tasks rank below it.
    assert decided["decision"].to_list() == [DONE, DONE, NEEDS_ANOTHER_JUDGMENT]
    assert decided["reason"][0].startswith("gold: the answer is known")
