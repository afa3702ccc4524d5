"""Gold of a task the day did not judge shapes nothing of that day: not the fit, not the
annotators' gold scores, not the report (as the categorical `fit` drops such gold)."""

from datetime import date

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from annotation_pipelines.aggregation.registry import KIND_REGISTRY
from annotation_pipelines.quality.kinds import aggregate_kind_day, assess_kind_day
from tests.kinds.test_by_kind import FRAMES, _box, _span

DAY = date(2026, 3, 2)
# Per kind: a gold answer of a judged task, and one of a task nobody judged that day, as far
# from the day's answers as the kind allows (a new class, a value 1,000 times the range).
GOLD = {
    "multilabel": ({"labels": ["a", "b"]}, {"labels": ["q", "r", "s"]}),
    "numeric": ({"value": 1.0}, {"value": 5000.0}),
    "ranking": ({"ranking": ["p", "q", "r"]}, {"ranking": ["z", "y", "x", "w"]}),
    "spans": ({"spans": [_span(0, 5)]}, {"spans": [_span(0, 90, "ORG")]}),
    "boxes": ({"boxes": [_box(0, 0)]}, {"boxes": [_box(900.0, 900.0, 500.0, "bus")]}),
    "text": ({"text": "a cat"}, {"text": "something else entirely"}),
    "pairwise": (
        {"left": "m1", "right": "m2", "winner": "right"},
        {"left": "m9", "right": "m1", "winner": "left"},
    ),
}


def _day(kind: str, gold: list[tuple[str, dict]], method: str):
    rows = FRAMES[kind].with_columns(project=pl.lit("p"), kind=pl.lit(kind))
    schema = {"task_id": pl.String, **{c: rows.schema[c] for c in gold[0][1]}}
    gold_frame = pl.DataFrame(
        [{"task_id": task, **value} for task, value in gold], schema=schema
    ).with_columns(project=pl.lit("p"))
    fitted = aggregate_kind_day(rows, project="p", day=DAY, gold=gold_frame, method=method)
    assessed = assess_kind_day(
        rows,
        fitted.labels,
        fitted.annotators,
        project="p",
        day=DAY,
        gold=gold_frame,
        n_resamples=20,
    )
    return fitted, assessed


@pytest.mark.parametrize(
    ("kind", "method"), [(declared.kind, declared.name) for declared in KIND_REGISTRY]
)
def test_gold_of_an_unjudged_task_changes_nothing_of_the_day(kind, method):
    judged, unjudged = GOLD[kind]
    alone_fit, alone = _day(kind, [("t1", judged)], method)
    with_fit, with_other = _day(kind, [("t1", judged), ("t9", unjudged)], method)
    assert_frame_equal(alone_fit.labels, with_fit.labels)
    assert_frame_equal(alone_fit.annotators, with_fit.annotators)
    assert_frame_equal(alone.scorecards, with_other.scorecards)
    assert_frame_equal(alone.report, with_other.report)
