"""The annotation database on the real local Postgres: DDL, seeding, watermarks, idempotence."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import (
    SQL_DIR,
    apply_schema,
    extract_since,
    merge_partition,
    migration_files,
    partition_by_day,
    read_table_since,
    seed_database,
    validate_identifier,
)
from annotation_pipelines.ingest.seed import main as seed_main
from annotation_pipelines.ingest.seed import synthetic_judgments
from annotation_pipelines.schema import JUDGMENTS
from tests.services import migrate_at_once

pytestmark = pytest.mark.services

T0 = datetime(2026, 3, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_identifiers_are_validated():
    assert validate_identifier("annotation_tool") == "annotation_tool"
    for bad in ("x; DROP TABLE judgments", 'a"b', "1abc", "", "a" * 64):
        with pytest.raises(ValueError, match="invalid SQL identifier"):
            validate_identifier(bad)
    with pytest.raises(ValueError):
        read_table_since("postgresql://unused", "judgments", since=T0, until=T0, schema="x y")
    with pytest.raises(ValueError, match="unknown table"):
        read_table_since("postgresql://unused", "pg_authid", since=T0, until=T0)


def test_ddl_creates_every_table_with_updated_at_index(postgres_dsn):
    apply_schema(postgres_dsn, schema="ddl_check")
    apply_schema(postgres_dsn, schema="ddl_check")  # idempotent
    with psycopg.connect(postgres_dsn) as connection:
        indexed = connection.execute(
            "SELECT tablename FROM pg_indexes WHERE schemaname = %s AND indexdef LIKE %s",
            ("ddl_check", "%(updated_at)%"),
        ).fetchall()
    assert {row[0] for row in indexed} == {
        "projects",
        "annotators",
        "tasks",
        "assignments",
        "judgments",
        "gold_labels",
        # The write-back tables: the tool polls them by updated_at.
        "task_requests",
        "annotator_actions",
    }


def test_three_read_methods_return_the_same_frame(postgres_dsn):
    judgments = synthetic_judgments(2_000, seed=3)
    seed_database(postgres_dsn, judgments=judgments, schema="methods", updated_at=T0)
    frames = {
        method: read_table_since(
            postgres_dsn, "judgments", since=EPOCH, until=T0, schema="methods", method=method
        ).sort("judgment_id")
        for method in ("adbc", "copy", "fetch")
    }
    assert frames["adbc"].height == 2_000
    assert frames["adbc"].equals(frames["copy"])
    assert frames["adbc"].equals(frames["fetch"])
    assert frames["adbc"].drop("updated_at").equals(judgments.sort("judgment_id"))


def test_watermark_windows_late_rows_partitions_and_idempotent_reruns(postgres_dsn):
    schema = "incremental"
    day1 = synthetic_judgments(300, n_projects=1, start=datetime(2026, 2, 1, tzinfo=UTC), days=1)
    seed_database(
        postgres_dsn,
        judgments=day1,
        label_sets={"project-0": ["cat", "dog", "bird"]},
        schema=schema,
        updated_at=T0,
    )
    first = extract_since(postgres_dsn, since=EPOCH, until=T0, schema=schema)
    assert first.watermark == T0
    assert first.result.rows_read == 300 == first.result.rows_loaded + first.result.rows_quarantined
    lake: dict[date, pl.DataFrame] = {}
    for day, rows in partition_by_day(first.result.judgments).items():
        lake[day] = merge_partition(lake.get(day), rows)

    # A late judgment submitted on 2026-02-01 arrives a month later, plus an edited label and
    # a label outside the project's set.
    with psycopg.connect(postgres_dsn) as connection:
        connection.execute(f"SET search_path TO {schema}")
        connection.execute(
            "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
            "submitted_at, duration_s, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s), "
            "(%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                "late-1",
                "0",
                "project-0",
                "annotator-late",
                "dog",
                datetime(2026, 2, 1, 12, tzinfo=UTC),
                4.0,
                T0 + timedelta(days=30),
                "late-2",
                "1",
                "project-0",
                "annotator-late",
                "giraffe",
                datetime(2026, 2, 1, 13, tzinfo=UTC),
                4.0,
                T0 + timedelta(days=30),
            ),
        )
        # an edit bumps updated_at (trigger); then pinned, as a replayed change would be
        connection.execute(
            "UPDATE judgments SET label = %s WHERE judgment_id = %s", ("bird", "0000000000")
        )
        bumped = connection.execute(
            "SELECT updated_at > %s FROM judgments WHERE judgment_id = %s", (T0, "0000000000")
        ).fetchone()
        assert bumped == (True,)
        connection.execute(
            "UPDATE judgments SET updated_at = %s WHERE judgment_id = %s",
            (T0 + timedelta(days=30), "0000000000"),
        )
    until = T0 + timedelta(days=31)
    second = extract_since(
        postgres_dsn, since=first.watermark, until=until, schema=schema, seen=first.seen
    )
    assert second.result.rows_read == 3
    assert second.result.reasons == {"unknown_label": 1}
    incoming = partition_by_day(second.result.judgments)
    assert list(incoming) == [date(2026, 2, 1)]  # its own submitted_at day, not the extract's
    for day, rows in incoming.items():
        lake[day] = merge_partition(lake.get(day), rows)
    merged = pl.concat(lake.values())
    assert merged.height == 301
    assert merged.filter(pl.col("judgment_id") == "0000000000").get_column("label").item() == "bird"

    # re-running the same window changes nothing
    again = extract_since(
        postgres_dsn, since=first.watermark, until=until, schema=schema, seen=first.seen
    )
    before = {day: frame.clone() for day, frame in lake.items()}
    for day, rows in partition_by_day(again.result.judgments).items():
        lake[day] = merge_partition(lake.get(day), rows)
    assert all(lake[day].equals(before[day]) for day in before)
    assert set(JUDGMENTS) <= set(merged.columns)
    # and the window after the last one is empty
    assert (
        extract_since(
            postgres_dsn, since=until, until=until + timedelta(days=1), schema=schema
        ).result.rows_read
        == 0
    )


def test_seed_script(postgres_dsn, capsys):
    seed_main(
        [
            "--dsn",
            postgres_dsn,
            "--schema",
            "scripted",
            "--judgments",
            "500",
            "--label-set",
            "project-0=cat,dog,bird",
        ]
    )
    assert '"judgments": 500' in capsys.readouterr().out
    with psycopg.connect(postgres_dsn) as connection:
        count = connection.execute("SELECT count(*) FROM scripted.judgments").fetchone()
        labels = connection.execute(
            "SELECT label_set FROM scripted.projects WHERE project = %s", ("project-0",)
        ).fetchone()
    assert count == (500,)
    assert labels == (["bird", "cat", "dog"],)


def _seed(*args: str):
    """`python -m annotation_pipelines.ingest.seed`, as the README runs it."""
    return subprocess.run(
        [sys.executable, "-m", "annotation_pipelines.ingest.seed", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _refused(completed, code: int, *needles: str) -> None:
    """One `Error:` line naming what to fix, no traceback, and the given exit code."""
    said = " ".join(completed.stderr.split())
    assert completed.returncode == code, completed.stderr
    assert "Traceback" not in completed.stderr and "Error: " in said, completed.stderr
    for needle in needles:
        assert needle in said, completed.stderr


def test_seed_script_says_what_is_wrong_in_one_line(postgres_dsn, tmp_path):
    common = ["--dsn", postgres_dsn, "--schema", "seed_mistakes"]
    _refused(_seed(*common, "--judgments", "-5"), 2, "--judgments", "-5", "1 or more")
    _refused(_seed(*common, "--judgments", "0"), 2, "--judgments", "1 or more")
    absent = tmp_path / "absent.parquet"
    _refused(_seed(*common, "--judgments", str(absent)), 1, "--judgments", str(absent), "no such")
    as_csv = tmp_path / "judgments.csv"
    synthetic_judgments(10).write_csv(as_csv)
    _refused(_seed(*common, "--judgments", str(as_csv)), 1, str(as_csv), "not a Parquet file")
    short = tmp_path / "short.parquet"
    synthetic_judgments(10).drop("submitted_at").write_parquet(short)
    _refused(_seed(*common, "--judgments", str(short)), 1, str(short), "'submitted_at'")
    tasks = tmp_path / "tasks.parquet"
    pl.DataFrame({"task_id": ["1"]}).write_parquet(tasks)
    _refused(_seed(*common, "--judgments", "10", "--tasks", str(tasks)), 1, "--tasks", "'project'")
    for label_set in ("garbage", "p=", "=a,b"):
        _refused(_seed(*common, "--judgments", "10", "--label-set", label_set), 2, "--label-set")
    with psycopg.connect(postgres_dsn) as connection:
        seeded = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'seed_mistakes'"
        ).fetchone()
    # Refused before the database was touched.
    assert seeded == (0,)


def test_seed_script_refuses_to_seed_the_same_judgments_twice(postgres_dsn):
    common = ["--dsn", postgres_dsn, "--schema", "seed_twice", "--judgments", "100"]
    first = _seed(*common)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["judgments"] == 100
    again = _seed(*common, "--label-set", "project-0=cat,dog,bird")
    _refused(again, 1, "judgment_id '0000000000'", "seed_twice.judgments", "nothing was written")
    with psycopg.connect(postgres_dsn) as connection:
        counts = connection.execute("SELECT count(*) FROM seed_twice.judgments").fetchone()
        labels = connection.execute(
            "SELECT label_set FROM seed_twice.projects WHERE project = 'project-0'"
        ).fetchone()
    assert counts == (100,) and labels == ([],)
    down = _seed("--dsn", "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2",
                 "--judgments", "10")  # fmt: skip
    _refused(down, 1, "127.0.0.1")


def test_the_migrations_say_their_version_and_apply_again_unchanged(postgres_dsn):
    apply_schema(postgres_dsn, schema="migration_check")
    query = (
        "SELECT version, name, applied_at FROM migration_check.annotation_pipelines_migrations "
        "ORDER BY 1"
    )
    with psycopg.connect(postgres_dsn) as connection:
        first = connection.execute(query).fetchall()
    files = sorted(p.name for p in SQL_DIR.glob("[0-9]*.sql"))
    assert [row[0] for row in first] == list(range(1, len(files) + 2))
    assert [row[1] for row in first[1:]] == [name.removesuffix(".sql") for name in files]
    apply_schema(postgres_dsn, schema="migration_check")
    with psycopg.connect(postgres_dsn) as connection:
        assert connection.execute(query).fetchall() == first


def test_runs_that_migrate_a_database_at_once_all_succeed(postgres_dsn):
    """Every live run, the kind fit job and the daily request writer migrate before their
    first write, so on a new or upgraded database several may start at once: each applies the
    pending migrations or finds them applied, none fails on the other's catalog rows."""
    assert migrate_at_once(postgres_dsn, schema="migration_concurrent") == []
    query = "SELECT version FROM migration_concurrent.annotation_pipelines_migrations ORDER BY 1"
    with psycopg.connect(postgres_dsn) as connection:
        versions = [v for (v,) in connection.execute(query).fetchall()]
    assert versions == [v for v, _ in migration_files()]


def test_applied_migrations_are_not_run_again_under_a_reader(postgres_dsn):
    """The live run applies the migrations before each write: once recorded, they take no lock
    that would queue behind the tool's own readers of the write-back tables (an ALTER TABLE
    waits for every open transaction that read the table, and blocks every reader after it)."""
    apply_schema(postgres_dsn, schema="migration_reader")
    with psycopg.connect(postgres_dsn) as reader:
        reader.execute("SELECT count(*) FROM migration_reader.task_requests").fetchone()
        hurried = f"{postgres_dsn}?options=-c%20lock_timeout%3D1000"
        apply_schema(hurried, schema="migration_reader")


def test_a_database_from_before_the_versions_is_brought_to_the_last_one(postgres_dsn):
    """A tool database made before the migrations were versioned (no version table, and
    `task_requests` as migration 2 first made it, already holding rows) gets every version
    recorded, and its earlier requests start `open` and move `updated_at` when changed."""
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA migration_upgrade")
        connection.execute("SET search_path TO migration_upgrade")
        connection.execute(
            """
            CREATE TABLE task_requests (
                request_id   bigserial PRIMARY KEY,
                task_id      text NOT NULL,
                project      text NOT NULL,
                request      text NOT NULL,
                reason       text NOT NULL,
                confidence   double precision,
                posterior    jsonb,
                decision_id  text NOT NULL UNIQUE,
                created_at   timestamptz NOT NULL DEFAULT now(),
                updated_at   timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        connection.execute(
            "INSERT INTO task_requests (task_id, project, request, reason, decision_id) "
            "VALUES ('t1', 'p', 'another_judgment', 'r', 'd1')"
        )
    apply_schema(postgres_dsn, schema="migration_upgrade")
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute("SET search_path TO migration_upgrade")
        versions = connection.execute(
            "SELECT version FROM annotation_pipelines_migrations ORDER BY 1"
        )
        assert [v for (v,) in versions] == [v for v, _ in migration_files()]
        assert connection.execute("SELECT status FROM task_requests").fetchone() == ("open",)
        before = connection.execute("SELECT updated_at FROM task_requests").fetchone()
        connection.execute("UPDATE task_requests SET status = 'acknowledged'")
        after = connection.execute("SELECT updated_at FROM task_requests").fetchone()
        assert before is not None and after is not None and after[0] > before[0]


@pytest.mark.parametrize("method", ["adbc", "copy", "fetch"])
def test_the_extract_marks_the_set_aside_rows_it_will_read_again(postgres_dsn, method):
    """A judgment submitted after the window is read again by the next extract, whatever
    made it bad (a NULL annotator, an oversized label, or only its date): the extract flags
    exactly those quarantined rows, and not a bad row dated inside the window."""
    schema = f"ahead_{method}"
    apply_schema(postgres_dsn, schema=schema)
    rows = [
        ("inside-null", None, "cat", T0 - timedelta(hours=1)),
        ("inside-good", "a1", "cat", T0 - timedelta(hours=1)),
        ("ahead-null", None, "cat", T0 + timedelta(hours=1)),
        ("ahead-huge", "a2", "x" * (2 << 20), T0 + timedelta(hours=1)),
        ("ahead-good", "a3", "cat", T0 + timedelta(hours=1)),
    ]
    with psycopg.connect(postgres_dsn) as connection:
        connection.execute(f"SET search_path TO {schema}")
        connection.execute("INSERT INTO projects (project) VALUES ('p')")
        connection.execute(
            "INSERT INTO tasks (task_id, project, created_at, updated_at) "
            "VALUES ('t1', 'p', %(at)s, %(at)s)",
            {"at": T0 - timedelta(minutes=1)},
        )
        for judgment, annotator, label, submitted in rows:
            connection.execute(
                "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
                "submitted_at, duration_s, updated_at) "
                "VALUES (%s, 't1', 'p', %s, %s, %s, 3, %s)",
                (judgment, annotator, label, submitted, T0 - timedelta(minutes=1)),
            )
    extract = extract_since(
        postgres_dsn, since=T0 - timedelta(days=1), until=T0, now=T0, schema=schema, method=method
    )
    quarantine = extract.result.quarantine
    assert quarantine.height == len(extract.read_again) == 4
    assert extract.result.judgments["judgment_id"].to_list() == ["inside-good"]
    flagged = quarantine.with_columns(again=extract.read_again)
    again = {
        judgment: row["again"]
        for row in flagged.iter_rows(named=True)
        for judgment, *_ in rows
        if f'"{judgment}"' in row["raw"]
    }
    assert again == {
        "inside-null": False,
        "ahead-null": True,
        "ahead-huge": True,
        "ahead-good": True,
    }


@pytest.mark.parametrize("method", ["adbc", "copy", "fetch"])
def test_the_extract_quarantines_a_duration_that_is_not_a_finite_number(postgres_dsn, method):
    """double precision holds NaN and Infinity; loaded, they made the workforce hours NaN or
    infinite and the staffing plan divide by zero."""
    schema = f"nonfinite_{method}"
    apply_schema(postgres_dsn, schema=schema)
    durations = {"good": 3.0, "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")}
    with psycopg.connect(postgres_dsn) as connection:
        connection.execute(f"SET search_path TO {schema}")
        connection.execute("INSERT INTO projects (project) VALUES ('p')")
        connection.execute(
            "INSERT INTO tasks (task_id, project, created_at, updated_at) "
            "VALUES ('t1', 'p', %(at)s, %(at)s)",
            {"at": T0 - timedelta(hours=2)},
        )
        for annotator, duration in durations.items():
            connection.execute(
                "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
                "submitted_at, duration_s, updated_at) "
                "VALUES (%s, 't1', 'p', %s, 'cat', %s, %s, %s)",
                (annotator, annotator, T0 - timedelta(hours=1), duration, T0 - timedelta(hours=1)),
            )
    extract = extract_since(
        postgres_dsn, since=T0 - timedelta(days=1), until=T0, now=T0, schema=schema, method=method
    )
    assert extract.result.judgments.select("judgment_id", "duration_s").rows() == [("good", 3.0)]
    assert (
        extract.result.quarantine.select("reason", "field").rows()
        == [("wrong_type", "duration_s")] * 3
    )
