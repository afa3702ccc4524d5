"""Boxes from the annotation DB in the live layer, against a real PostgreSQL DB and a real
Dagster materialization of `live_quality_state`: a task judged with a pixel box by one
annotator and percent boxes by two others, and a task whose gold is in pixels, get the live
answers the daily layer gives the same judgments."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.kinds import BOX
from annotation_pipelines.loop.live_kinds import KindState, load_kind_state
from annotation_pipelines.quality.kinds import aggregate_kind_day
from tests.loop.test_live_box_units import HEIGHT, PERCENT, PIXELS, WIDTH
from tests.loop.test_live_kinds_db import GOLD, INSERT, PROJECT, WHEN, _run
from tests.loop.test_live_writeback import QUIET
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
# (task, annotator, unit): each task holds one pixel box beside two percent ones.
JUDGED = [
    (t, a, "pixel" if a == "a0" else "percent") for t in ("t1", "t2") for a in ("a0", "a1", "a2")
]


def _answer(unit: str) -> dict[str, object]:
    box = PIXELS if unit == "pixel" else PERCENT
    return {"boxes": [box], "coordinates": unit, "image_width": WIDTH, "image_height": HEIGHT}


def _judgments(project: str) -> pl.DataFrame:
    """`JUDGED` as the lake's judgments, which the daily layer fuses."""
    return pl.DataFrame(
        {
            "task_id": [t for t, _, _ in JUDGED],
            "annotator_id": [a for _, a, _ in JUDGED],
            "project": [project] * len(JUDGED),
            "kind": ["boxes"] * len(JUDGED),
            "boxes": pl.Series([_answer(u)["boxes"] for *_, u in JUDGED], dtype=pl.List(BOX)),
            "coordinates": [u for *_, u in JUDGED],
            "image_width": [WIDTH] * len(JUDGED),
            "image_height": [HEIGHT] * len(JUDGED),
        }
    )


def _assert_daily_answer(state: KindState, daily: pl.DataFrame, task: str) -> None:
    """The live answer of `task` is the daily one: the same boxes, confidence and unit."""
    live = state.tasks.filter(pl.col("task_id") == task).row(0, named=True)
    day = daily.filter(pl.col("task_id") == task).row(0, named=True)
    plain = [{k: v for k, v in b.items() if k != "confidence"} for b in day["boxes"]]
    assert live["boxes"] == [pytest.approx(b) for b in plain]
    assert live["boxes"] == [pytest.approx(PERCENT)]
    assert live["confidence"] == pytest.approx(day["confidence"])
    assert live["coordinates"] == day["coordinates"] == "percent"


def test_a_db_task_with_mixed_box_units_gets_the_daily_answer_live(tmp_path, monkeypatch):
    data = tmp_path / "data"
    read = lake_reader(data / "lake")
    with fresh_database("live_box_units") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            *(
                (
                    INSERT,
                    (f"{t}-{a}", t, PROJECT, a, None, "boxes", json.dumps(_answer(u)), WHEN),
                )
                for t, a, u in JUDGED
            ),
            (GOLD, ("t2", PROJECT, None, "boxes", json.dumps(_answer("pixel")))),
        )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        result = job.execute_in_process(instance=instance, run_config=QUIET)
        assert result.success
        assert first_metadata(result)["kind_new_judgments"] == len(JUDGED)
        state = load_kind_state(PROJECT, "boxes", read)
        assert sorted(state.ledger["coordinates"].to_list()) == ["percent"] * 4 + ["pixel"] * 2
        assert state.gold["coordinates"].to_list() == ["pixel"]

    judgments = _judgments(PROJECT)
    gold = judgments.filter(pl.col("task_id") == "t2").head(1).drop("annotator_id")
    daily = aggregate_kind_day(judgments, project=PROJECT, day=date(2026, 11, 2), gold=gold)
    for task in ("t1", "t2"):
        _assert_daily_answer(state, daily.labels, task)


def test_an_export_with_mixed_box_units_gets_the_daily_answer_live(tmp_path, monkeypatch):
    project = "frames"
    judgments = _judgments(project).with_columns(
        judgment_id=pl.format("{}-{}", "task_id", "annotator_id"),
        submitted_at=pl.lit(WHEN),
        duration_s=pl.lit(2.0),
    )
    exports = tmp_path / "data" / "landing" / "exports" / project / "parquet"
    exports.mkdir(parents=True)
    judgments.drop("project").write_parquet(exports / "batch-1.parquet")
    with fresh_database("live_box_units_file") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=tmp_path / "data")
        result = job.execute_in_process(instance=instance, run_config=QUIET)
        assert result.success
        assert first_metadata(result)["kind_new_judgments"] == len(JUDGED)
    state = load_kind_state(project, "boxes", lake_reader(tmp_path / "data" / "lake"))
    daily = aggregate_kind_day(judgments, project=project, day=date(2026, 11, 2))
    for task in ("t1", "t2"):
        _assert_daily_answer(state, daily.labels, task)
