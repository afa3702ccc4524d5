"""A project's rating scale declared in the annotation DB (migration 10: `projects.scale`), on
the real local Postgres: a declaration that is not a scale refused by the database, numeric
judgments and gold labels outside it quarantined by the extract as `outside_scale` naming
their table, key, field and the scale (in every read method), an edit that moves a row off
the scale handed on as the withdrawal of its older versions, and a database without the
migration (or with a `scale` of the tool's own) read as declaring no scale."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest

from annotation_pipelines.ingest.postgres import (
    OPTIONAL_MIGRATIONS,
    apply_schema,
    extract_since,
    migration_files,
    project_scales,
)
from annotation_pipelines.scale import RatingScale
from assets.live.assets import quarantine_lines
from tests.services import migrated_before

pytestmark = pytest.mark.services

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WHEN = datetime(2026, 11, 2, 10, tzinfo=UTC)
INSERT = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, kind, answer, "
    "submitted_at) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
)
GOLD = "INSERT INTO gold_labels (task_id, project, kind, answer) VALUES (%s, %s, 'numeric', %s)"
SCALE = {"min": 1, "max": 5, "step": 1}


def _run(dsn: str, schema: str, *statements: tuple[str, tuple]) -> None:
    with psycopg.connect(dsn) as connection:
        connection.execute(f"SET search_path TO {schema}")
        for statement, parameters in statements:
            connection.execute(statement, parameters)


def _rating(judgment_id: str, project: str, value: object, rater: str = "a1") -> tuple[str, tuple]:
    task = f"t-{judgment_id}"
    return INSERT, (judgment_id, task, project, rater, None, "numeric", json.dumps(value), WHEN)


def _declare(project: str, scale: object) -> tuple[str, tuple]:
    """The project's scale set as the tool's admin would: JSON text as given, else dumped."""
    text = scale if isinstance(scale, str) or scale is None else json.dumps(scale)
    return (
        "INSERT INTO projects (project, scale) VALUES (%s, %s::jsonb) "
        "ON CONFLICT (project) DO UPDATE SET scale = excluded.scale, updated_at = now()",
        (project, text),
    )


def test_a_declaration_that_is_not_a_scale_is_refused_by_the_database(postgres_dsn):
    schema = "project_scale_check"
    apply_schema(postgres_dsn, schema=schema)
    refused = [
        '{"min": 5, "max": 1}',
        '{"min": "1", "max": 5}',
        # jsonb holds any number of digits; no float does.
        '{"min": 1, "max": 1e400}',
        # Distinct as numbers, one float (the scale the extract would read is 1 to 1).
        '{"min": 1, "max": 1.00000000000000000001}',
        # Above zero as a number, zero as a float.
        '{"min": 0, "max": 1, "step": 1e-400}',
        '{"min": 1e-400, "max": 1}',
        '{"min": 1, "max": 5, "step": 0}',
        '{"min": 1, "max": 5, "step": null}',
        '{"min": 1, "max": 5, "integer": "yes"}',
        '{"min": 1, "max": 5, "unit": "stars"}',
        '{"max": 5}',
        "[1, 5]",
    ]
    for text in refused:
        with pytest.raises(psycopg.errors.CheckViolation, match="projects_scale_is_a_scale"):
            _run(postgres_dsn, schema, _declare("p", text))
    _run(postgres_dsn, schema, _declare("p", {**SCALE, "integer": True}), _declare("q", None))
    assert project_scales(postgres_dsn, schema=schema) == {"p": RatingScale(1, 5, 1, True)}


def test_numeric_rows_outside_their_projects_scale_are_quarantined_in_every_read_method(
    postgres_dsn,
):
    schema = "project_scale_extract"
    apply_schema(postgres_dsn, schema=schema)
    _run(
        postgres_dsn,
        schema,
        _declare("rated", SCALE),
        _declare("free", None),
        _rating("r-ok", "rated", 4),
        _rating("r-high", "rated", 1e200),
        _rating("r-half", "rated", 2.5),
        _rating("r-low", "rated", 0),
        # The same answers where no scale is declared: read as before.
        _rating("f-high", "free", 1e200),
        _rating("f-half", "free", 2.5),
        (
            "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
            "submitted_at) VALUES ('r-cat', 't-cat', 'rated', 'a1', 'cat', %s)",
            (WHEN,),
        ),
        (GOLD, ("t-r-ok", "rated", "4")),
        (GOLD, ("t-r-high", "rated", "9")),
        (GOLD, ("t-f-high", "free", "9")),
    )
    for method in ("adbc", "copy", "fetch"):
        extract = extract_since(postgres_dsn, since=EPOCH, schema=schema, method=method)
        result = extract.result
        assert sorted(result.judgments["judgment_id"]) == ["f-half", "f-high", "r-cat", "r-ok"]
        assert sorted(result.gold["task_id"]) == ["t-f-high", "t-r-ok"]
        assert result.quarantine["reason"].to_list() == ["outside_scale"] * 4, method
        assert set(result.quarantine["field"]) == {"answer (scale [1, 5] step 1)"}
        assert result.rows_read == result.judgments.height + result.gold.height + 4 + (
            result.tasks.height
        )
        lines = quarantine_lines(result.quarantine.sort("table", "raw"))
        assert lines == [
            "gold_labels task_id='t-r-high': answer (scale [1, 5] step 1): outside_scale",
            "judgments judgment_id='r-half': answer (scale [1, 5] step 1): outside_scale",
            "judgments judgment_id='r-high': answer (scale [1, 5] step 1): outside_scale",
            "judgments judgment_id='r-low': answer (scale [1, 5] step 1): outside_scale",
        ], method
        assert extract.scales == {"rated": RatingScale(1, 5, 1)}
        assert sorted(extract.off_scale["judgment_id"]) == ["r-half", "r-high", "r-low"]
        assert extract.off_scale_gold["task_id"].to_list() == ["t-r-high"]


def test_an_edit_off_the_scale_is_handed_on_as_the_withdrawal_of_the_version_read_before(
    postgres_dsn,
):
    schema = "project_scale_edit"
    apply_schema(postgres_dsn, schema=schema)
    _run(postgres_dsn, schema, _declare("rated", SCALE), _rating("j1", "rated", 3))
    first = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert first.result.judgments["value"].to_list() == [3.0] and first.off_scale.height == 0
    read = first.result.judgments["updated_at"].item()
    _run(
        postgres_dsn,
        schema,
        ("UPDATE judgments SET answer = '50'::jsonb WHERE judgment_id = 'j1'", ()),
    )
    second = extract_since(postgres_dsn, since=first.watermark, seen=first.seen, schema=schema)
    assert second.result.judgments.height == 0
    assert second.result.quarantine["reason"].to_list() == ["outside_scale"]
    [tombstone] = second.off_scale.to_dicts()
    # Dated by the version read off the scale: the version read before is older, so it goes.
    assert tombstone["judgment_id"] == "j1" and tombstone["project"] == "rated"
    assert tombstone["updated_at"] == tombstone["deleted_at"] > read
    # Read again in the next window's overlap, it is not handed on twice.
    third = extract_since(postgres_dsn, since=second.watermark, seen=second.seen, schema=schema)
    assert third.off_scale.height == 0 and third.result.quarantine.height == 0


def test_a_scale_declared_later_applies_to_the_rows_read_after_it(postgres_dsn):
    schema = "project_scale_later"
    apply_schema(postgres_dsn, schema=schema)
    _run(postgres_dsn, schema, _declare("rated", None), _rating("j1", "rated", 9))
    first = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert first.result.judgments.height == 1 and first.scales == {}
    _run(postgres_dsn, schema, _declare("rated", SCALE), _rating("j2", "rated", 9))
    second = extract_since(postgres_dsn, since=first.watermark, seen=first.seen, schema=schema)
    assert second.result.quarantine["reason"].to_list() == ["outside_scale"]
    assert second.scales == {"rated": RatingScale(1, 5, 1)}


def test_a_database_without_migration_10_declares_no_scale_and_says_so(postgres_dsn):
    schema = "project_scale_absent"
    migrated_before(postgres_dsn, 10, schema=schema)
    _run(postgres_dsn, schema, _rating("j1", "rated", 1e200))
    extract = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert extract.scales is None and extract.result.judgments.height == 1
    assert 10 in OPTIONAL_MIGRATIONS
    assert apply_schema(postgres_dsn, schema=schema) == []
    assert project_scales(postgres_dsn, schema=schema) == {}


def test_a_scale_column_the_tool_already_has_is_refused_not_reinterpreted(postgres_dsn):
    schema = "project_scale_taken"
    migrated_before(postgres_dsn, 10, schema=schema)
    _run(
        postgres_dsn,
        schema,
        ("ALTER TABLE projects ADD COLUMN scale jsonb", ()),
        ("INSERT INTO projects (project, scale) VALUES ('rated', '\"stars\"')", ()),
        _rating("j1", "rated", 1e200),
    )
    [skipped] = apply_schema(postgres_dsn, schema=schema)
    assert skipped.version == 10 and "projects.scale exists already" in skipped.cause
    assert "must be renamed first" in skipped.cause
    assert project_scales(postgres_dsn, schema=schema) is None
    extract = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert extract.result.judgments.height == 1


def test_migration_10_run_twice_and_after_its_record_is_lost_changes_nothing(postgres_dsn):
    schema = "project_scale_twice"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        connection.execute(f"SET search_path TO {schema}")
        for _ in range(2):
            for _, path in migration_files():
                connection.execute(path.read_text())
        connection.execute("DELETE FROM annotation_pipelines_migrations WHERE version = 10")
    assert apply_schema(postgres_dsn, schema=schema) == []
    _run(postgres_dsn, schema, _declare("rated", SCALE))
    assert project_scales(postgres_dsn, schema=schema) == {"rated": RatingScale(1, 5, 1)}
