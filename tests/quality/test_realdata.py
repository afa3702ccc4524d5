"""Scorecards on real crowd data: flagged annotators really are the less accurate ones."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from annotation_pipelines.quality import (
    annotator_scorecards,
    item_disagreement,
    quality_report,
    reannotation_queue,
)
from tests.quality.conftest import majority
from tests.realdata import accuracy, load_crowd


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["d_sentiment", "rte"])
def test_scorecards_on_real_crowd(name):
    judgments, truth = load_crowd(name)
    judgments = judgments.with_columns(
        pl.lit(name).alias("project"), pl.lit(dt.date(2026, 11, 20)).alias("day")
    )
    gold = truth.with_columns(pl.lit(name).alias("project"))
    aggregated = majority(judgments)
    cards = annotator_scorecards(judgments, aggregated, gold)
    assert cards.height == judgments["annotator_id"].n_unique()
    flagged = cards.filter(pl.col("flagged"))
    kept = cards.filter(~pl.col("flagged"))
    assert 0 < flagged.height < cards.height

    # Weighted by volume, flagged annotators answer gold worse than the rest.
    def weighted(frame: pl.DataFrame) -> float:
        return float((frame["gold_accuracy"] * frame["n_gold"]).sum() / frame["n_gold"].sum())

    assert weighted(flagged) < weighted(kept)
    # The spammer score ranks like gold accuracy: high-spam annotators are less accurate.
    ranked = cards.filter(pl.col("n_judgments") >= 20).drop_nulls("spammer_score")
    assert ranked.select(pl.corr("spammer_score", "gold_accuracy", method="spearman")).item() < 0
    report = quality_report(judgments, aggregated, gold, scorecards=cards)
    assert report["consensus_accuracy_on_gold"][0] == pytest.approx(
        accuracy(aggregated, truth), abs=1e-12
    )
    queue = reannotation_queue(item_disagreement(judgments), aggregated, gold)
    wrong = aggregated.join(truth, on="task_id").filter(pl.col("label") != pl.col("label_right"))
    # Most tasks the majority gets wrong are in the queue (gold disagreement at least).
    assert wrong["task_id"].is_in(queue["task_id"].implode()).mean() > 0.9
