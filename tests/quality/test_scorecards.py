"""Annotator scorecards: exact toy figures, Wilson intervals, spammer score, flags and trend."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from statsmodels.stats.proportion import proportion_confint

from annotation_pipelines import schema
from annotation_pipelines.quality import annotator_scorecards, spammer_scores
from annotation_pipelines.quality.scorecards import stale_history
from tests.agreement.conftest import TOY_TRUTH
from tests.quality.conftest import DAY, majority

NO_GOLD = pl.DataFrame(schema={"task_id": pl.String, "project": pl.String, "label": pl.String})


def test_toy_consensus_agreement_matches_reference(toy_day):
    cards = annotator_scorecards(toy_day, majority(toy_day), NO_GOLD)
    shares = dict(cards.select("annotator_id", "consensus_agreement").rows())
    assert shares == pytest.approx({"w1": 0.6, "w2": 0.8, "w3": 1.0, "w4": 0.4, "w5": 0.8})
    overall = (cards["consensus_agreement"] * cards["n_judgments"]).sum() / cards[
        "n_judgments"
    ].sum()
    assert overall == pytest.approx(17 / 24)
    schema.conform(cards, schema.ANNOTATOR_SCORECARDS, name="annotator_scorecards")
    assert cards["gold_accuracy"].null_count() == cards.height
    assert (cards["n_gold"] == 0).all()


def test_gold_accuracy_and_wilson_interval_match_statsmodels(toy_day):
    gold = pl.DataFrame(
        {"task_id": list(TOY_TRUTH), "project": "toy", "label": list(TOY_TRUTH.values())}
    )
    cards = annotator_scorecards(toy_day, majority(toy_day), gold, confidence=0.9)
    for row in cards.iter_rows(named=True):
        answers = toy_day.filter(pl.col("annotator_id") == row["annotator_id"])
        correct = sum(
            TOY_TRUTH[t] == label for t, label in answers.select("task_id", "label").rows()
        )
        assert row["n_gold"] == answers.height
        assert row["gold_accuracy"] == pytest.approx(correct / answers.height)
        low, high = proportion_confint(correct, answers.height, alpha=0.1, method="wilson")
        assert row["gold_accuracy_low"] == pytest.approx(low, abs=1e-12)
        assert row["gold_accuracy_high"] == pytest.approx(high, abs=1e-12)


def _answers(annotator: str, pairs: list[tuple[str, str]]) -> list[tuple]:
    return [(f"t{i}", "p", annotator, label, DAY) for i, (_, label) in enumerate(pairs)]


def crowd_with_profiles(n_tasks: int = 60, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    generator = np.random.default_rng(seed)
    truth = generator.choice(["a", "b", "c"], n_tasks)
    rows = []
    for i, label in enumerate(truth):
        for annotator in ("good1", "good2", "good3"):
            rows.append((f"t{i}", "p", annotator, str(label), DAY, 20.0))
        rows.append((f"t{i}", "p", "constant", "a", DAY, 1.0))
        rows.append((f"t{i}", "p", "random", str(generator.choice(["a", "b", "c"])), DAY, 15.0))
    judgments = pl.DataFrame(
        rows,
        schema=["task_id", "project", "annotator_id", "label", "day", "duration_s"],
        orient="row",
    )
    gold = pl.DataFrame(
        {"task_id": [f"t{i}" for i in range(0, n_tasks, 3)], "project": "p", "label": truth[::3]}
    )
    return judgments, gold


def test_spammer_score_separates_profiles():
    judgments, _ = crowd_with_profiles()
    scores = dict(
        spammer_scores(judgments, majority(judgments))
        .select("annotator_id", "spammer_score")
        .rows()
    )
    assert scores["good1"] == pytest.approx(0.0, abs=1e-12)
    assert scores["constant"] == pytest.approx(1.0, abs=1e-12)
    assert scores["random"] > 0.8


def test_flags_name_every_reason_and_respect_thresholds():
    judgments, gold = crowd_with_profiles()
    skill = pl.DataFrame({"annotator_id": ["good1", "random"], "skill": [0.9, 0.3]})
    cards = annotator_scorecards(
        judgments, majority(judgments), gold, skill=skill, min_median_duration_s=5.0
    )
    by_annotator = {row["annotator_id"]: row for row in cards.iter_rows(named=True)}
    assert not by_annotator["good1"]["flagged"] and by_annotator["good1"]["flag_reason"] is None
    assert by_annotator["good1"]["skill"] == 0.9 and by_annotator["good2"]["skill"] is None
    assert by_annotator["good1"]["median_duration_s"] == 20.0
    constant = by_annotator["constant"]
    assert constant["flagged"]
    for fragment in ("gold accuracy", "spammer score", "consensus agreement", "median 1.0 s"):
        assert fragment in constant["flag_reason"], constant["flag_reason"]
    assert by_annotator["random"]["flagged"]
    lenient = annotator_scorecards(
        judgments,
        majority(judgments),
        gold,
        min_gold_accuracy=0.0,
        min_consensus_agreement=0.0,
        max_spammer_score=1.0,
    )
    assert not lenient["flagged"].any()


def test_trend_against_own_history():
    judgments, gold = crowd_with_profiles()
    aggregated = majority(judgments)
    today = annotator_scorecards(judgments, aggregated, gold)
    history = pl.concat(
        [
            today.with_columns(
                pl.lit(DAY - dt.timedelta(days=offset)).alias("day"),
                pl.lit(1.0).alias("consensus_agreement"),
            )
            for offset in (1, 2, 40)  # day 40 is outside the 28-day window
        ]
    )
    cards = annotator_scorecards(judgments, aggregated, gold, history=history)
    row = cards.filter(pl.col("annotator_id") == "random").row(0, named=True)
    assert row["history_days"] == 2
    assert row["history_consensus_agreement"] == pytest.approx(1.0)
    assert row["consensus_agreement_change"] == pytest.approx(row["consensus_agreement"] - 1.0)
    assert "fell" in row["flag_reason"]
    good = cards.filter(pl.col("annotator_id") == "good1").row(0, named=True)
    assert good["consensus_agreement_change"] == pytest.approx(0.0) and not good["flagged"]


def test_stale_history_names_the_cards_scored_with_another_history():
    judgments, gold = crowd_with_profiles()
    aggregated = majority(judgments)
    alone = annotator_scorecards(judgments, aggregated, gold)
    earlier = alone.with_columns(pl.lit(DAY - dt.timedelta(days=1)).alias("day"))
    # Scored before the earlier day existed: every card's history differs now.
    stale = stale_history(alone, earlier)
    assert stale.height == alone.height
    assert stale["history_days"].to_list() == [0] * alone.height
    assert stale["history_days_now"].to_list() == [1] * alone.height
    # Scored with it: current, whether the history is read again or is outside the window.
    scored = annotator_scorecards(judgments, aggregated, gold, history=earlier)
    assert stale_history(scored, earlier).is_empty()
    assert stale_history(alone, earlier, history_days=0).is_empty()
    # Only the annotators whose own history changed are named.
    one = earlier.filter(pl.col("annotator_id") == "random")
    assert stale_history(alone, one)["annotator_id"].to_list() == ["random"]


def test_days_come_from_submitted_at_in_utc():
    judgments, gold = crowd_with_profiles(n_tasks=6)
    stamped = judgments.drop("day").with_columns(
        pl.lit(dt.datetime(2026, 11, 20, 23, 30, tzinfo=dt.UTC))
        .cast(pl.Datetime("us", "UTC"))
        .dt.convert_time_zone("Asia/Tokyo")
        .alias("submitted_at")
    )
    cards = annotator_scorecards(stamped, majority(judgments), gold)
    assert cards["day"].unique().to_list() == [DAY]
    with pytest.raises(ValueError, match="'day' or a 'submitted_at'"):
        annotator_scorecards(judgments.drop("day"), majority(judgments), gold)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_none_right_has_a_lower_bound_of_zero_and_all_right_an_upper_bound_of_one(confidence):
    # Per annotator n gold answers, all wrong ("none-n") or all right ("all-n"); the bounds at
    # the ends are exact, not 2.8e-17 or 0.9999999999999998, and the others match statsmodels.
    rows, gold_rows = [], []
    for n in range(1, 41):
        for i in range(n):
            task = f"g{n}-{i}"
            gold_rows.append((task, "p", "right"))
            rows.append((task, "p", f"none-{n}", "wrong", DAY))
            rows.append((task, "p", f"all-{n}", "right", DAY))
            rows.append((task, "p", f"half-{n}", "right" if i % 2 else "wrong", DAY))
    judgments = pl.DataFrame(
        rows, schema=["task_id", "project", "annotator_id", "label", "day"], orient="row"
    )
    gold = pl.DataFrame(gold_rows, schema=["task_id", "project", "label"], orient="row")
    cards = annotator_scorecards(judgments, majority(judgments), gold, confidence=confidence)
    assert cards.height == 120
    for row in cards.iter_rows(named=True):
        profile, n = row["annotator_id"].split("-")[0], row["n_gold"]
        correct = {"none": 0, "all": n, "half": n // 2}[profile]
        assert row["gold_accuracy"] == correct / n
        if profile == "none":
            assert row["gold_accuracy_low"] == 0.0
        if profile == "all":
            assert row["gold_accuracy_high"] == 1.0
        low, high = proportion_confint(correct, n, alpha=1 - confidence, method="wilson")
        assert row["gold_accuracy_low"] == pytest.approx(low, abs=1e-12)
        assert row["gold_accuracy_high"] == pytest.approx(high, abs=1e-12)


def test_a_lone_annotator_has_no_consensus_agreement_and_no_flag_on_it():
    # "solo" judged t0–t11 and nobody else did: the consensus there is their own vote. "pair"
    # shares t20–t31 with "mate", and judged t40–t49 alone; g0–g2 are gold tasks "solo" alone
    # answered, where the consensus is the gold answer, not their vote.
    rows = [(f"t{i}", "p", "solo", "a" if i % 2 else "b", DAY) for i in range(12)]
    rows += [(f"t{i}", "p", who, "a", DAY) for i in range(20, 32) for who in ("pair", "mate")]
    rows[-1] = ("t31", "p", "mate", "b", DAY)
    rows += [(f"t{i}", "p", "pair", "b", DAY) for i in range(40, 50)]
    judgments = pl.DataFrame(
        rows, schema=["task_id", "project", "annotator_id", "label", "day"], orient="row"
    )
    history = annotator_scorecards(judgments, majority(judgments), NO_GOLD).with_columns(
        pl.lit(DAY - dt.timedelta(days=1)).alias("day"), pl.lit(1.0).alias("consensus_agreement")
    )
    cards = annotator_scorecards(
        judgments,
        majority(judgments),
        NO_GOLD,
        history=history,
        min_consensus_agreement=0.99,
        max_spammer_score=-1.0,
    )
    schema.conform(cards, schema.ANNOTATOR_SCORECARDS, name="annotator_scorecards")
    by = {row["annotator_id"]: row for row in cards.iter_rows(named=True)}
    solo = by["solo"]
    assert solo["n_judgments"] == 12 and solo["n_consensus_compared"] == 0
    assert solo["consensus_agreement"] is None and solo["spammer_score"] is None
    assert solo["consensus_agreement_change"] is None
    # Every threshold would flag a number; a null raises nothing.
    assert not solo["flagged"] and solo["flag_reason"] is None
    # Only the tasks someone else judged count: 11 of 12 shared ones agree (t31 was a tie,
    # which majority() gives to "a"), the ten lone ones are left out.
    assert by["pair"]["n_consensus_compared"] == 12
    assert by["pair"]["consensus_agreement"] == pytest.approx(1.0)
    assert by["mate"]["consensus_agreement"] == pytest.approx(11 / 12)
    # Gold makes the consensus the gold answer: a lone answer on a gold task is compared.
    gold = pl.DataFrame({"task_id": ["t0", "t1", "t2"], "project": "p", "label": "a"})
    with_gold = annotator_scorecards(judgments, majority(judgments), gold)
    solo = with_gold.filter(pl.col("annotator_id") == "solo").row(0, named=True)
    assert solo["n_consensus_compared"] == 3
    # majority() leaves lone labels unclamped, as a consensus built before gold would be:
    # the scorecard reads the consensus as given, on the tasks compared.
    assert solo["consensus_agreement"] == pytest.approx(1.0)
