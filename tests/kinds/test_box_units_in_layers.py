"""The daily kind layer fuses a task's boxes in one unit, as the commands do: the lake keeps
each judgment's unit and image size, and a pixel box beside percent ones is one object."""

from datetime import date

import polars as pl
import pytest

from annotation_pipelines.kinds import BOX
from annotation_pipelines.quality.kinds import aggregate_kind_day, assess_kind_day

PERCENT = {"label": "car", "x_min": 10.0, "y_min": 10.0, "x_max": 40.0, "y_max": 40.0}
PIXELS = {"label": "car", "x_min": 64.0, "y_min": 48.0, "x_max": 256.0, "y_max": 192.0}


def _judgments() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task_id": ["t1"] * 3,
            "annotator_id": ["a", "b", "c"],
            "project": ["p"] * 3,
            "kind": ["boxes"] * 3,
            "boxes": [[PIXELS], [PERCENT], [PERCENT]],
            "coordinates": ["pixel", "percent", "percent"],
            "image_width": [640.0] * 3,
            "image_height": [480.0] * 3,
        },
        schema_overrides={"boxes": pl.List(BOX)},
    )


def test_the_daily_fusion_reads_a_pixel_box_beside_percent_ones_as_one_object() -> None:
    day = aggregate_kind_day(_judgments(), project="p", day=date(2026, 3, 2))
    row = day.labels.row(0, named=True)
    assert row["boxes"] == [pytest.approx({**PERCENT, "confidence": 1.0})]
    assert row["coordinates"] == "percent"


def test_daily_gold_in_pixels_anchors_a_task_judged_in_percent() -> None:
    gold = _judgments().head(1).drop("annotator_id")
    day = aggregate_kind_day(_judgments(), project="p", day=date(2026, 3, 2), gold=gold)
    assert day.labels.row(0, named=True)["boxes"] == [pytest.approx({**PERCENT, "confidence": 1.0})]


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
