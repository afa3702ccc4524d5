"""The annotation DB resource against a real PostgreSQL: a run brings the tool's schema up to
date before its first read or write of the live tables, and once, not before each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest
from dagster import job, op

from annotation_pipelines.loop.live import ANNOTATOR_ACTIONS, TASK_REQUESTS
from resources.annotation_db import AnnotationDatabase
from tests.loop.test_live_writeback import QUIET
from tests.services import fresh_database

pytestmark = pytest.mark.services


def _migrations(dsn: str) -> int:
    """How many migrations the schema records; 0 before the first `apply_schema`."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        found = connection.execute(
            "SELECT to_regclass('annotation_pipelines_migrations')"
        ).fetchone()
        if not found or found[0] is None:
            return 0
        counted = connection.execute(
            "SELECT count(*) FROM annotation_pipelines_migrations"
        ).fetchone()
        return int(counted[0]) if counted else 0


def _forget_migrations(dsn: str) -> None:
    """As if nothing were applied: the next `apply_schema` runs every migration again (each is
    idempotent) and records them."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("DELETE FROM annotation_pipelines_migrations")


def test_a_run_applies_the_schema_before_its_first_read_and_not_again(monkeypatch):
    seen: list[tuple[int, int]] = []

    @op
    def read_then_write(annotation_db: AnnotationDatabase) -> None:
        dsn = annotation_db.required_dsn
        now = datetime.now(UTC)
        annotation_db.read_reversals(since=now - timedelta(minutes=1), until=now)
        applied = _migrations(dsn)
        _forget_migrations(dsn)
        annotation_db.write_requests_recorded(
            task_requests=pl.DataFrame(schema=TASK_REQUESTS),
            annotator_actions=pl.DataFrame(schema=ANNOTATOR_ACTIONS),
        )
        seen.append((applied, _migrations(dsn)))

    @job
    def live_like() -> None:
        read_then_write()

    with fresh_database("annotation_db_schema") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        assert _migrations(dsn) == 0
        resource = AnnotationDatabase(dsn=dsn)
        for _ in range(2):
            result = live_like.execute_in_process(
                resources={"annotation_db": resource}, run_config=QUIET
            )
            assert result.success
    # Each run applied the schema before its read; its write did not apply it again.
    [(first, after_first), (second, after_second)] = seen
    assert first > 0 and second == first
    assert after_first == 0 and after_second == 0
