"""The daily kind aggregation sets aside, by the check ingest uses, answers that reached the lake
without it (the generator's, or rows staged before the check existed): a box with no area, a
box outside its image and a blank text answer are counted in the run's metadata and never
aggregated. A real Dagster
materialization over a local lake."""

from __future__ import annotations

import json
from datetime import date

import polars as pl

from annotation_pipelines.ingest import ingest_bytes
from resources.lake import LocalLake
from tests.aggregation.kind_day import materialize_kind_day

DAY = date(2026, 11, 2)
BOX = {"label": "car", "x_min": 0.0, "y_min": 0.0, "x_max": 10.0, "y_max": 10.0}


def _staged(project: str, kind: str, value: object) -> pl.DataFrame:
    """Two annotators' valid judgments of task t1, as ingest stages them."""
    column = {"boxes": "boxes", "text": "text"}[kind]
    lines = [
        {
            "judgment_id": f"{project}-t1-{rater}",
            "task_id": "t1",
            "annotator_id": rater,
            "kind": kind,
            column: value,
            "submitted_at": f"{DAY}T10:00:00Z",
        }
        for rater in "ab"
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    return ingest_bytes(data, format="jsonl", source_file="db", project=project).judgments


def _unchecked(staged: pl.DataFrame, column: str, value: object) -> pl.DataFrame:
    """Annotator c's judgment of task t2 holding `value`, written as no ingest would allow."""
    row = staged.head(1).with_columns(
        judgment_id=pl.lit("bad"), task_id=pl.lit("t2"), annotator_id=pl.lit("c")
    )
    return row.with_columns(pl.Series(column, [value], dtype=staged.schema[column]))


def test_answers_ingest_refuses_are_set_aside_and_counted(tmp_path):
    boxes = _staged("detection", "boxes", [BOX])
    texts = _staged("transcripts", "text", "a cat")
    point = dict(BOX, x_max=0.0)
    judgments = pl.concat(
        [
            boxes,
            _unchecked(boxes, "boxes", [point]),
            texts,
            _unchecked(texts, "text", " \u200b"),
        ]
    )
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    day = DAY.isoformat()
    (tmp_path / "landing").mkdir()
    result = materialize_kind_day(lake, judgments, day=day, landing=tmp_path / "landing")
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["kind_aggregated_labels"]
    ]
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["refused_values"] == {
        "detection": {"judgments": 1, "reasons": {"empty_box:boxes": 1}, "first": ["bad"]},
        "transcripts": {"judgments": 1, "reasons": {"missing_field:text": 1}, "first": ["bad"]},
    }
    labels = lake.read_table("kind_aggregated_labels", day=day)
    assert sorted(labels.select("project", "task_id").rows()) == [
        ("detection", "t1"),
        ("transcripts", "t1"),
    ]


def test_a_percent_box_staged_outside_its_image_is_set_aside(tmp_path):
    boxes = _staged("detection", "boxes", [BOX]).with_columns(coordinates=pl.lit("percent"))
    past = _unchecked(boxes, "boxes", [dict(BOX, x_max=120.0)])
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    day = DAY.isoformat()
    (tmp_path / "landing").mkdir()
    result = materialize_kind_day(
        lake, pl.concat([boxes, past]), day=day, landing=tmp_path / "landing"
    )
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["kind_aggregated_labels"]
    ]
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["refused_values"] == {
        "detection": {"judgments": 1, "reasons": {"outside_image:boxes": 1}, "first": ["bad"]},
    }
    labels = lake.read_table("kind_aggregated_labels", day=day)
    assert labels.select("project", "task_id").rows() == [("detection", "t1")]
