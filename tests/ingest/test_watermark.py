"""The database watermark on the real local Postgres: rows of transactions still open during
an extract, the overlap re-read, clock-skewed rows, and unsafe project names."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import (
    apply_schema,
    extract_since,
    merge_partition,
    safe_upper_bound,
)

pytestmark = pytest.mark.services

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INSERT = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, submitted_at, "
    "duration_s) VALUES (%s, %s, %s, %s, %s, %s, 1.0)"
)


def insert(dsn: str, schema: str, *rows: tuple) -> None:
    with psycopg.connect(dsn) as connection:
        connection.execute(f"SET search_path TO {schema}")
        for row in rows:
            connection.execute(INSERT, row)


def staged(frames: list[pl.DataFrame]) -> pl.DataFrame:
    lake = None
    for frame in frames:
        lake = merge_partition(lake, frame)
    assert lake is not None
    return lake


def test_row_of_a_transaction_open_during_the_extract_is_loaded_exactly_once(postgres_dsn):
    schema = "in_flight"
    apply_schema(postgres_dsn, schema=schema)
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    insert(postgres_dsn, schema, ("before", "t1", "p", "a1", "cat", earlier))
    first = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert first.result.judgments["judgment_id"].to_list() == ["before"]

    # A transaction stamps its row with its own start (updated_at = now()), then stays open
    # while another connection extracts.
    writer = psycopg.connect(postgres_dsn)
    try:
        writer.execute(f"SET search_path TO {schema}")
        writer.execute(INSERT, ("in-flight", "t2", "p", "a1", "dog", earlier))
        time.sleep(0.05)
        second = extract_since(postgres_dsn, since=first.watermark, schema=schema, seen=first.seen)
        stamped = writer.execute(
            "SELECT updated_at FROM judgments WHERE judgment_id = 'in-flight'"
        ).fetchone()
        writer.commit()
    finally:
        writer.close()
    assert stamped is not None
    assert second.watermark < stamped[0]  # the window stops before the open transaction
    assert "in-flight" not in second.result.judgments["judgment_id"].to_list()

    third = extract_since(postgres_dsn, since=second.watermark, schema=schema, seen=second.seen)
    assert third.result.judgments["judgment_id"].to_list() == ["in-flight"]
    assert third.result.rows_read == 1

    # The next window re-reads the overlap but skips what it already read: nothing new.
    fourth = extract_since(postgres_dsn, since=third.watermark, schema=schema, seen=third.seen)
    assert fourth.result.rows_read == 0
    # Even without `seen`, re-reading the overlap upserts: no duplicate rows in the lake.
    fifth = extract_since(postgres_dsn, since=third.watermark, schema=schema)
    assert fifth.result.rows_read == 2
    lake = staged(
        [
            e.result.judgments
            for e in (first, second, third, fourth, fifth)
            if e.result.judgments.height
        ]
    )
    assert lake["judgment_id"].to_list() == ["before", "in-flight"]


def test_safe_upper_bound_is_before_the_oldest_open_transaction(postgres_dsn):
    idle = psycopg.connect(postgres_dsn)
    try:
        started = idle.execute("SELECT now()").fetchone()
        assert started is not None
        time.sleep(0.02)
        assert safe_upper_bound(postgres_dsn) < started[0]
    finally:
        idle.close()
    assert safe_upper_bound(postgres_dsn) > started[0]


def test_row_quarantined_for_clock_skew_is_read_again_once_the_clock_catches_up(postgres_dsn):
    schema = "skew"
    apply_schema(postgres_dsn, schema=schema)
    real_now = datetime.now(UTC)
    ahead = real_now + timedelta(hours=1)  # a server whose clock runs an hour fast
    insert(postgres_dsn, schema, ("skewed", "t1", "p", "a1", "cat", ahead))
    first = extract_since(postgres_dsn, since=EPOCH, schema=schema, now=real_now)
    assert first.result.reasons == {"timestamp_in_future": 1}
    time.sleep(0.01)
    # Later extracts: the row's updated_at is long behind the watermark, but it is re-read
    # and loads once its submitted_at is no longer in the future.
    second = extract_since(
        postgres_dsn,
        since=first.watermark,
        schema=schema,
        seen=first.seen,
        overlap=timedelta(0),
        now=real_now + timedelta(hours=2),
    )
    assert second.result.judgments["judgment_id"].to_list() == ["skewed"]
    assert second.result.rows_read == 1


def test_unsafe_project_name_in_the_database_is_quarantined(postgres_dsn):
    schema = "unsafe_project"
    apply_schema(postgres_dsn, schema=schema)
    when = datetime.now(UTC) - timedelta(minutes=1)
    insert(
        postgres_dsn,
        schema,
        ("ok", "t1", "good", "a1", "cat", when),
        ("bad", "t2", "../../etc", "a1", "cat", when),
    )
    extract = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    result = extract.result
    assert result.judgments["judgment_id"].to_list() == ["ok"]
    [row] = result.quarantine.to_dicts()
    assert (row["reason"], row["field"]) == ("invalid_project", "project")
    assert result.rows_read == result.rows_loaded + result.rows_quarantined
