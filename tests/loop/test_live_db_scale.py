"""A project's scale declared in the annotation DB (`projects.scale`, migration 10) in the live
layer, against a real PostgreSQL DB and a real Dagster materialization of `live_quality_state`:
the DB's numeric judgments and gold off it never reach the numeric kind state and are counted
in the run's metadata; an edit that moves a folded answer off it withdraws that answer once,
and an edit back folds it again; a scale declared later withdraws the answers it refuses, once;
and an export's project.json whose scale disagrees with the DB's keeps the project's files out,
naming both."""

from __future__ import annotations

import json
import time

import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.live import load_files
from annotation_pipelines.loop.live_kinds import load_kind_state
from tests.loop.test_live_scale_db import _export
from tests.loop.test_live_writeback import QUIET
from tests.services import fresh_database
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
INSERT = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, kind, answer, "
    "submitted_at, duration_s) VALUES (%s, %s, %s, %s, 'numeric', %s::jsonb, "
    "'2026-11-02T10:00:00+00:00', 2.0)"
)
GOLD = "INSERT INTO gold_labels (task_id, project, kind, answer) VALUES (%s, %s, 'numeric', %s)"
RATERS = ("a0", "a1", "a2")
SCALE = {"min": 1, "max": 5, "step": 1}
BATCH = "exports/%s/jsonl/batch.jsonl"


def _run(dsn: str, *statements: tuple[str, tuple]) -> None:
    """The statements in one committed transaction; a few ms apart from the next one's stamp."""
    with psycopg.connect(dsn) as connection:
        for statement, parameters in statements:
            connection.execute(statement, parameters)
    time.sleep(0.01)


def _ratings(project: str, answers: dict[str, tuple[float, ...]]) -> list[tuple[str, tuple]]:
    return [
        (
            INSERT,
            (f"{project}-{task}-{rater}", f"{project}-{task}", project, rater, json.dumps(value)),
        )
        for task, values in answers.items()
        for rater, value in zip(RATERS, values, strict=True)
    ]


def _declare(project: str, scale: dict | None) -> tuple[str, tuple]:
    return (
        "INSERT INTO projects (project, scale) VALUES (%s, %s::jsonb) "
        "ON CONFLICT (project) DO UPDATE SET scale = excluded.scale, updated_at = now()",
        (project, None if scale is None else json.dumps(scale)),
    )


def _edit(judgment_id: str, value: float) -> tuple[str, tuple]:
    return (
        "UPDATE judgments SET answer = %s::jsonb WHERE judgment_id = %s",
        (json.dumps(value), judgment_id),
    )


def _values(lake, project: str) -> dict[str, float]:
    ledger = load_kind_state(project, "numeric", lake_reader(lake)).ledger
    return dict(ledger.select("judgment_id", "value").iter_rows())


def test_db_answers_off_their_projects_scale_never_stay_in_the_live_numeric_state(
    tmp_path, monkeypatch
):
    data = tmp_path / "data"
    landing, lake = data / "landing", data / "lake"
    with fresh_database("live_db_scale") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            _declare("rated", SCALE),
            _declare("later", None),
            *_ratings("rated", {"t1": (3, 4, 3), "t2": (5, 5, 50)}),
            *_ratings("later", {"t1": (3, 4, 9)}),
            *_ratings("twice", {"t1": (3, 4, 9)}),
            *_ratings("back", {"t1": (3, 4, 9)}),
            (GOLD, ("rated-t1", "rated", "3")),
            (GOLD, ("rated-t2", "rated", "9")),
            (GOLD, ("later-t1", "later", "9")),
        )
        # An export of a project declaring no scale anywhere yet: folded as it is.
        _export(landing, "filed", None)
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        first = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        # Set aside and counted, never folded: the answer of 50 and the gold of 9.
        assert first["outside_scale"] == 2
        assert first["quarantine_reasons"] == {"outside_scale": 2}
        assert first["db_scales"] == {"rated": "scale [1, 5] step 1"}
        assert first["outside_scale_withdrawn"] == 0
        assert sorted(_values(lake, "rated").values()) == [3, 3, 4, 5, 5]
        assert sorted(_values(lake, "later").values()) == [3, 4, 9]
        assert load_kind_state("later", "numeric", lake_reader(lake)).gold.height == 1
        gold = load_kind_state("rated", "numeric", lake_reader(lake)).gold
        assert gold["task_id"].to_list() == ["rated-t1"]

        # An edit moves a folded answer off the scale, and the other project declares one
        # that refuses an answer folded before: both withdrawn.
        _run(dsn, _edit("rated-t1-a1", 0), _declare("later", {"min": 1, "max": 5}))
        second = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert second["outside_scale"] == 1
        assert second["outside_scale_withdrawn"] == 3
        assert second["kind_withdrawn_judgments"] == 2 and second["kind_withdrawn_gold"] == 1
        assert load_kind_state("later", "numeric", lake_reader(lake)).gold.height == 0
        assert "rated-t1-a1" not in _values(lake, "rated")
        assert sorted(_values(lake, "later").values()) == [3, 4]

        # Exactly once: a quiet run (the overlap reads the edit again) withdraws nothing more.
        quiet = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert quiet["outside_scale"] == 0 and quiet["outside_scale_withdrawn"] == 0
        assert quiet["kind_withdrawn_judgments"] == 0 and quiet["kind_withdrawn_gold"] == 0
        assert quiet["deletions_unknown"] == 0

        # Edited back onto the scale, the answer is folded again.
        _run(dsn, _edit("rated-t1-a1", 4))
        back = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert back["kind_new_judgments"] == 1 and back["outside_scale"] == 0
        assert _values(lake, "rated")["rated-t1-a1"] == 4

        # An export whose project.json declares another scale than the DB's: refused whole,
        # the error naming both, until they agree.
        _export(landing, "rated", {"scale": {"min": 0, "max": 10}})
        refused = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert refused["files_read"] == []
        record = load_files(lake_reader(lake))["exports/rated/jsonl/batch.jsonl"]
        assert record["error"] == (
            "exports/rated/project.json: scale: scale [0, 10] disagrees with the annotation "
            "DB's projects.scale for 'rated' (scale [1, 5] step 1); declare one, or the same "
            "in both"
        )
        (landing / "exports" / "rated" / "project.json").write_text(json.dumps({"scale": SCALE}))
        agreed = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert agreed["files_read"] == ["exports/rated/jsonl/batch.jsonl"]
        assert agreed["files_quarantine_reasons"] == {"outside_scale": 2}

        # In one window, a scale declared for two projects whose answer of 9 it refuses, the
        # one edited further off it and the other edited onto it: the first answer is
        # withdrawn and counted once (the edit's tombstone and the scale's both name it), the
        # second is replaced by its new version and withdrawn by neither.
        # The export's project.json is changed to disagree with the DB again: refused.
        _run(
            dsn,
            _declare("twice", SCALE),
            _declare("back", SCALE),
            _edit("twice-t1-a2", 10),
            _edit("back-t1-a2", 4),
        )
        wide = {"scale": {"min": 0, "max": 10}}
        (landing / "exports" / "rated" / "project.json").write_text(json.dumps(wide))
        both = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert both["files_read"] == []
        assert "disagrees" in load_files(lake_reader(lake))[BATCH % "rated"]["error"]
        assert both["outside_scale"] == 1
        assert both["outside_scale_withdrawn"] == 1
        assert both["kind_withdrawn_judgments"] == 1
        assert _values(lake, "twice") == {"twice-t1-a0": 3, "twice-t1-a1": 4}
        assert _values(lake, "back") == {"back-t1-a0": 3, "back-t1-a1": 4, "back-t1-a2": 4}

        # The DB's side changed to agree with the refused file's, and a scale declared in the
        # DB for the project whose file was folded without one: both files are read again,
        # the first folded, the second's answers off the DB's scale withdrawn (as the daily
        # kind aggregation sets them aside).
        assert load_kind_state("filed", "numeric", lake_reader(lake)).ledger.height == 12
        _run(dsn, _declare("rated", wide["scale"]), _declare("filed", SCALE))
        rescaled = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert rescaled["files_read"] == [BATCH % "filed", BATCH % "rated"]
        assert rescaled["files_quarantine_reasons"] == {"outside_scale": 3}
        assert rescaled["kind_withdrawn_judgments"] == 2
        files = load_files(lake_reader(lake))
        assert "error" not in files[BATCH % "rated"] and "error" not in files[BATCH % "filed"]
        filed = load_kind_state("filed", "numeric", lake_reader(lake)).ledger
        assert filed.height == 10 and filed["value"].max() == 5.0
        rated = load_kind_state("rated", "numeric", lake_reader(lake)).ledger
        assert rated.filter(pl.col("source").is_not_null()).height == 11
        quiet = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert quiet["files_read"] == [] and quiet["kind_withdrawn_judgments"] == 0
