"""Write the live loop's decisions where the annotation tool reads them: its own database.

`task_requests` (another judgment, expert review) and `annotator_actions` (block) are tables of
the annotation DB (`ingest/sql/002_loop_requests.sql`). Every row carries the `decision_id`
of the decision that caused it (see `loop.live.decision_id`) under a UNIQUE constraint, and is
inserted with `ON CONFLICT (decision_id) DO NOTHING`: a retried run, or two runs racing on the
same state version, write each decision once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import polars as pl

from annotation_pipelines.ingest.postgres import validate_identifier

# The key of the session-level advisory lock that serializes live updates of one database.
LIVE_LOCK_KEY = 0x6C697665  # "live"

_TASK_COLUMNS = (
    "task_id",
    "project",
    "request",
    "reason",
    "confidence",
    "posterior",
    "decision_id",
    "created_at",
)
_ACTION_COLUMNS = (
    "annotator_id",
    "project",
    "action",
    "reason",
    "evidence",
    "decision_id",
    "created_at",
)


def _insert(table: str, columns: tuple[str, ...], schema: str, jsonb: set[str]) -> str:
    values = ", ".join(f"%({c})s::jsonb" if c in jsonb else f"%({c})s" for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    return (
        f'INSERT INTO "{validate_identifier(schema)}"."{table}" ({names}) VALUES ({values}) '
        "ON CONFLICT (decision_id) DO NOTHING"
    )


def write_requests(
    dsn: str,
    *,
    task_requests: pl.DataFrame,
    annotator_actions: pl.DataFrame,
    schema: str = "public",
) -> dict[str, int]:
    """Insert the decisions not yet written (one transaction); rows inserted per table."""
    import psycopg

    written = {"task_requests": 0, "annotator_actions": 0}
    if task_requests.height == 0 and annotator_actions.height == 0:
        return written
    batches = [
        ("task_requests", _TASK_COLUMNS, task_requests, {"posterior"}),
        ("annotator_actions", _ACTION_COLUMNS, annotator_actions, {"evidence"}),
    ]
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        for table, columns, frame, jsonb in batches:
            if frame.height == 0:
                continue
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"{table}: missing column(s) {', '.join(missing)}")
            statement = _insert(table, columns, schema, jsonb)
            # One round trip per batch (psycopg pipelines executemany); with returning=True the
            # rows a conflict skipped return nothing, so the count is the rows really inserted.
            cursor.executemany(
                statement + " RETURNING 1",
                list(frame.select(columns).iter_rows(named=True)),
                returning=True,
            )
            while True:
                written[table] += len(cursor.fetchall())
                if not cursor.nextset():
                    break
        connection.commit()
    return written


def changed_rows(dsn: str, *, since: datetime, until: datetime, schema: str = "public") -> int:
    """How many judgments and gold labels changed in (since, until] (capped: a cheap probe)."""
    import psycopg

    quoted = f'"{validate_identifier(schema)}"'
    query = (
        f"SELECT (SELECT count(*) FROM (SELECT 1 FROM {quoted}.judgments "
        "WHERE updated_at > %(since)s AND updated_at <= %(until)s LIMIT 10000) j) + "
        f"(SELECT count(*) FROM (SELECT 1 FROM {quoted}.gold_labels "
        "WHERE updated_at > %(since)s AND updated_at <= %(until)s LIMIT 10000) g)"
    )
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(query, {"since": since, "until": until}).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def live_lock(dsn: str, *, key: int = LIVE_LOCK_KEY) -> Iterator[None]:
    """Hold the live loop's advisory lock on the annotation DB for the block.

    Runs may overlap (one starting while the previous works); the lock lets only one read,
    update and commit the live state at a time. A holder that dies loses its connection and
    with it the lock.
    """
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


__all__ = ["LIVE_LOCK_KEY", "changed_rows", "live_lock", "write_requests"]
