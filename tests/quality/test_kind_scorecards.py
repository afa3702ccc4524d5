"""The non-categorical scorecards compare an annotator with the consensus only on tasks where
the aggregate is more than their own answer: someone else judged the task too, or it is gold."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from annotation_pipelines.quality.kinds import (
    KIND_SCORECARDS,
    SCORED_KINDS,
    KindThresholds,
    score_kind_project,
)
from annotation_pipelines.synthetic.kinds import draw_project_day

DAY = date(2026, 11, 1)


def with_a_lone_annotator(kind: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(a synthetic day with "solo" alone on twelve tasks of their own and on three gold tasks
    of their own, the day's gold with those three, the day's tasks): solo's tasks copy one
    judgment each of the day's tasks under new task ids."""
    day, _ = draw_project_day(kind, day=DAY, count=150, seed=5)
    rows, gold, tasks = day["judgments"], day["gold_labels"], day["tasks"]
    golden = gold.get_column("task_id")
    plain = rows.filter(~pl.col("task_id").is_in(golden.implode()))
    picked = plain.unique("task_id", keep="first", maintain_order=True).head(12)
    chosen_gold = rows.filter(pl.col("task_id").is_in(golden.implode())).unique(
        "task_id", keep="first", maintain_order=True
    )
    chosen_gold = chosen_gold.head(3)
    solo = pl.concat([picked, chosen_gold]).with_columns(
        task_id=pl.lit("solo-") + pl.col("task_id"),
        judgment_id=pl.lit("solo-") + pl.col("judgment_id"),
        annotator_id=pl.lit("solo"),
    )
    solo_gold = gold.join(chosen_gold.select("task_id"), on="task_id", how="semi").with_columns(
        task_id=pl.lit("solo-") + pl.col("task_id")
    )
    solo_tasks = tasks.join(pl.concat([picked, chosen_gold]).select("task_id"), on="task_id")
    solo_tasks = solo_tasks.with_columns(task_id=pl.lit("solo-") + pl.col("task_id"))
    return (
        pl.concat([rows, solo], how="vertical_relaxed"),
        pl.concat([gold, solo_gold], how="vertical_relaxed"),
        pl.concat([tasks, solo_tasks], how="vertical_relaxed"),
    )


def compared_counts(rows: pl.DataFrame, gold: pl.DataFrame) -> dict[str, int]:
    """Per annotator the judgments on tasks another annotator judged too, or on gold tasks."""
    others = pl.col("annotator_id").n_unique().over("task_id") >= 2
    golden = pl.col("task_id").is_in(gold.get_column("task_id").implode())
    counted = rows.with_columns(_compared=others | golden).group_by("annotator_id")
    return dict(counted.agg(pl.col("_compared").sum()).iter_rows())


@pytest.mark.parametrize("kind", SCORED_KINDS)
def test_a_lone_annotator_has_no_consensus_agreement_and_no_flag_on_it(kind):
    rows, gold, tasks = with_a_lone_annotator(kind)
    project = str(rows["project"][0])
    # Any agreement would flag: only a null flags no one.
    strict = KindThresholds(min_consensus_alpha=2.0)
    solos_gold = pl.col("task_id").str.starts_with("solo-") & pl.col("task_id").is_in(
        gold.get_column("task_id").implode()
    )
    without_gold = rows.filter(~solos_gold)
    scores = score_kind_project(
        without_gold,
        project=project,
        day=DAY,
        gold=gold,
        tasks=tasks,
        kind=kind,
        thresholds=strict,
        n_resamples=10,
    )
    cards = scores.scorecards
    assert list(cards.columns) == list(KIND_SCORECARDS)
    solo = cards.filter(pl.col("annotator_id") == "solo").row(0, named=True)
    assert solo["n_judgments"] == 12 and solo["n_consensus_compared"] == 0
    assert solo["consensus_agreement"] is None and solo["consensus_alpha"] is None
    assert not solo["flagged"] and solo["flag_reason"] is None
    # Everyone else is compared on exactly the tasks someone else judged too, or gold.
    expected = compared_counts(without_gold, gold)
    assert dict(cards.select("annotator_id", "n_consensus_compared").iter_rows()) == expected
    others = cards.filter(pl.col("annotator_id") != "solo")
    assert others["consensus_alpha"].null_count() == 0
    assert others["flagged"].all()

    # On a gold task the consensus is the gold answer: solo's lone answers there are compared.
    scores = score_kind_project(
        rows, project=project, day=DAY, gold=gold, tasks=tasks, kind=kind, n_resamples=10
    )
    solo = scores.scorecards.filter(pl.col("annotator_id") == "solo").row(0, named=True)
    assert solo["n_judgments"] == 15 and solo["n_consensus_compared"] == 3
    assert solo["consensus_agreement"] is not None
    expected = compared_counts(rows, gold)
    assert dict(scores.scorecards.select("annotator_id", "n_consensus_compared").iter_rows()) == (
        expected
    )
