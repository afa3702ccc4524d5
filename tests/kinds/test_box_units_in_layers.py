"""The daily kind layer fuses a task's boxes in one unit, as the commands do: the lake keeps
each judgment's unit and image size, and a pixel box beside percent ones is one object."""

from datetime import date

import polars as pl
import pytest

from annotation_pipelines.quality.kinds import aggregate_kind_day, assess_kind_day
from tests.kinds.test_by_kind import PERCENT_BOX, mixed_unit_boxes


def _judgments() -> pl.DataFrame:
    return mixed_unit_boxes().with_columns(project=pl.lit("p"), kind=pl.lit("boxes"))


def test_the_daily_fusion_reads_a_pixel_box_beside_percent_ones_as_one_object() -> None:
    day = aggregate_kind_day(_judgments(), project="p", day=date(2026, 3, 2))
    row = day.labels.row(0, named=True)
    assert row["boxes"] == [pytest.approx({**PERCENT_BOX, "confidence": 1.0})]
    assert row["coordinates"] == "percent"


def test_daily_gold_in_pixels_anchors_a_task_judged_in_percent() -> None:
    gold = _judgments().head(1).drop("annotator_id")
    day = aggregate_kind_day(_judgments(), project="p", day=date(2026, 3, 2), gold=gold)
    assert day.labels.row(0, named=True)["boxes"] == [
        pytest.approx({**PERCENT_BOX, "confidence": 1.0})
    ]


def test_the_day_scores_a_pixel_annotator_against_percent_gold_and_consensus() -> None:
    judgments = _judgments()
    gold = judgments.slice(1, 1).drop("annotator_id")
    day = aggregate_kind_day(judgments, project="p", day=date(2026, 3, 2), gold=gold)
    assessed = assess_kind_day(
        judgments,
        day.labels,
        day.annotators,
        project="p",
        day=date(2026, 3, 2),
        gold=gold,
        n_resamples=20,
    )
    cards = {row["annotator_id"]: row for row in assessed.scorecards.iter_rows(named=True)}
    assert [cards[a]["gold_score"] for a in "abc"] == pytest.approx([1.0, 1.0, 1.0])
    assert cards["a"]["consensus_agreement"] == pytest.approx(cards["b"]["consensus_agreement"])
