"""Gold tasks in the live layer, against a real PostgreSQL annotation DB and real Dagster
materializations: a gold task's live answer is its gold answer at confidence 1 and no request
is written for it, whichever source gives the gold (the DB's gold table, of any kind, or the
quality team's gold sets in the landing zone, which the daily layers read from the lake), as
the daily layers write gold for it."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import polars as pl
import psycopg
import pytest
from dagster import materialize

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live import load_state
from annotation_pipelines.loop.live_kinds import load_kind_state
from assets.sources.assets import gold_sets
from resources.lake import LocalLake
from resources.landing import LocalLandingZone
from tests.loop.test_live_kinds_db import GOLD, INSERT, RATERS, _run
from tests.loop.test_live_writeback import QUIET, _launch, _tick
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
WHEN = datetime(2026, 11, 2, 10, tzinfo=UTC)


def _judgment(
    judgment_id: str, task: str, project: str, annotator: str, kind: str | None, answer: object
) -> tuple[str, tuple]:
    if kind is None:
        return INSERT, (judgment_id, task, project, annotator, answer, None, None, WHEN)
    return INSERT, (judgment_id, task, project, annotator, None, kind, json.dumps(answer), WHEN)


def _requested(dsn: str, project: str) -> set[str]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT task_id FROM task_requests WHERE project = %s", (project,)
        ).fetchall()
    return {task for (task,) in rows}


def _span(start: int, end: int) -> dict[str, object]:
    return {"start": start, "end": end, "label": "PER"}


# Per kind: the crowd's three split answers on every task (so the policy asks about each), and
# a gold answer none of them gave.
SPLIT: dict[str | None, tuple[list[object], object]] = {
    None: (["pos", "pos", "neg"], "neutral"),
    "numeric": ([3, 4, 1], 5),
    "spans": ([[_span(0, 4)], [_span(0, 4)], [_span(0, 6)]], [_span(10, 14)]),
    "multilabel": ([["x"], ["x", "y"], ["y"]], ["z"]),
}


def test_db_gold_of_every_kind_is_the_live_answer_and_never_requested(tmp_path, monkeypatch):
    data = tmp_path / "data"
    read = lake_reader(data / "lake")
    with fresh_database("live_gold_answers") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        statements = []
        for kind, (answers, gold) in SPLIT.items():
            project = f"p-{kind or 'categorical'}"
            # The DB keys gold by task alone: each project's tasks are its own.
            for t in range(4):
                statements += [
                    _judgment(f"{project}-{t}-{r}", f"{project}-t{t}", project, rater, kind, answer)
                    for r, (rater, answer) in enumerate(zip(RATERS, answers, strict=True))
                ]
            label, answer = (gold, None) if kind is None else (None, json.dumps(gold))
            statements.append((GOLD, (f"{project}-t0", project, label, kind, answer)))
        _run(dsn, *statements)
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        assert job.execute_in_process(instance=instance, run_config=QUIET).success

        categorical = load_state("p-categorical", read).tasks.filter(
            pl.col("task_id") == "p-categorical-t0"
        )
        assert categorical.select("label", "confidence").row(0) == ("neutral", 1.0)
        for kind in ("numeric", "spans", "multilabel"):
            state = load_kind_state(f"p-{kind}", kind, read)
            (column,) = [c for c in state.gold.columns if c not in ("task_id", "gold_sources")]
            row = state.tasks.filter(pl.col("task_id") == f"p-{kind}-t0")
            assert row["confidence"].item() == 1.0, kind
            assert row[column].to_list() == state.gold[column].to_list(), kind
        for kind in SPLIT:
            project = f"p-{kind or 'categorical'}"
            # The other tasks are split as the gold task's votes are: the policy asks.
            assert _requested(dsn, project) == {f"{project}-t{t}" for t in (1, 2, 3)}, kind


def _gold_set(landing, project: str, text: str) -> None:
    path = landing / "gold" / project / "gold.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    # Past the local landing zone's settle time: a file that fresh is not read yet.
    os.utime(path, (1, 1))


def test_a_gold_set_is_the_live_answer_of_its_tasks_and_never_requested(tmp_path, monkeypatch):
    """The quality team's gold sets reach the daily layers through `gold_sets` (staged in the
    lake); the live layer reads the same staged gold, so a gold task's live answer is the gold
    label at confidence 1 with no request, and a gold set removed withdraws it."""
    data = tmp_path / "data"
    landing = data / "landing"
    project = "reviews"
    read = lake_reader(data / "lake")
    lake = LocalLake(base_path=str(data / "lake"))
    zone = LocalLandingZone(path=str(landing))

    def stage_gold_sets() -> None:
        assert materialize([gold_sets], resources={"lake": lake, "landing": zone}).success

    with fresh_database("live_gold_sets") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            *(
                _judgment(f"j{t}-{r}", f"t{t}", project, rater, None, answer)
                for t in range(4)
                for r, (rater, answer) in enumerate(zip(RATERS, SPLIT[None][0], strict=True))
            ),
        )
        _gold_set(landing, project, "task_id,label\nt0,neutral\nt1,neg\n")
        stage_gold_sets()
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        tick = _tick(defs, instance)
        _launch(job, instance, tick)

        tasks = load_state(project, read).tasks.sort("task_id")
        gold = tasks.filter(pl.col("task_id").is_in(["t0", "t1"]))
        assert gold.select("task_id", "label", "confidence", "gold").rows() == [
            ("t0", "neutral", 1.0, "neutral"),
            ("t1", "neg", 1.0, "neg"),
        ]
        assert gold["gold_sources"].to_list() == [[f"gold/{project}/gold.csv"]] * 2
        assert _requested(dsn, project) == {"t2", "t3"}
        # Folded: the sensor has nothing new to run for.
        tick = _tick(defs, instance, tick.cursor)
        assert not tick.run_requests
        # Restaged unchanged (`gold_sets` stamps its rows anew): read again, nothing new.
        version = load_state(project, read).version
        stage_gold_sets()
        tick = _tick(defs, instance, tick.cursor)
        assert tick.run_requests, tick.skip_message
        _launch(job, instance, tick)
        assert load_state(project, read).version == version
        assert not _tick(defs, instance, tick.cursor).run_requests

        # The gold set loses t1 (restaged for the daily layers): the sensor runs for it, t1's
        # gold leaves the live state, the task is fitted from its votes and asked about again.
        _gold_set(landing, project, "task_id,label\nt0,neutral\n")
        stage_gold_sets()
        tick = _tick(defs, instance, tick.cursor)
        assert tick.run_requests, tick.skip_message
        edited = first_metadata(_launch(job, instance, tick)[0])
        assert edited["withdrawn_gold"] == 1
        tasks = load_state(project, read).tasks.sort("task_id")
        lost = tasks.filter(pl.col("task_id") == "t1")
        assert lost["gold"].item() is None and lost["confidence"].item() < 1.0
        assert tasks.filter(pl.col("task_id") == "t0")["label"].item() == "neutral"
        assert _requested(dsn, project) == {"t1", "t2", "t3"}
