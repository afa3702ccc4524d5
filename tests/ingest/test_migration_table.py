"""Where the migrations record their versions, on the real local Postgres: beside a framework's
own `schema_migrations` (Ecto, dbmate, golang-migrate, Rails keep one in the tool's schema),
and over a database an earlier release migrated, whose versions are in a `schema_migrations`
of ours."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from annotation_pipelines.cli import main
from annotation_pipelines.ingest.postgres import (
    ADOPT_SQL,
    MIGRATIONS_TABLE,
    SQL_DIR,
    MigrationFailed,
    apply_schema,
    migration_files,
)
from tests.services import (
    fresh_database,
    migrate_at_once,
    migrated_before,
    tool_and_pipelines_roles,
)

pytestmark = pytest.mark.services

ALL = [version for version, _ in migration_files()]
LATEST = ALL[-1]
# The migrations an earlier release could have recorded: it named its version table
# `schema_migrations`, and every later file records in `MIGRATIONS_TABLE` only.
LEGACY = [version for version in ALL if version <= 10]


def _migrate(dsn: str, schema: str) -> dict[str, object]:
    result = CliRunner().invoke(main, ["migrate", "--dsn", dsn, "--schema", schema])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _rows(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        return connection.execute(query).fetchall()


def _columns(dsn: str, schema: str, table: str) -> list[tuple[Any, ...]]:
    return _rows(
        dsn,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND table_name = '{table}' ORDER BY ordinal_position",
    )


def _recorded(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    return _rows(
        dsn, f"SELECT version, name, applied_at FROM {schema}.{MIGRATIONS_TABLE} ORDER BY 1"
    )


def _foreign(dsn: str, schema: str, ddl: str, *rows: str) -> None:
    """`schema` with a framework's `schema_migrations` in it, holding `rows`."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        connection.execute(f"CREATE TABLE {schema}.schema_migrations ({ddl})")
        for row in rows:
            connection.execute(f"INSERT INTO {schema}.schema_migrations VALUES {row}")


def _migrated_by_an_earlier_release(dsn: str, schema: str, before: int) -> None:
    """`schema` as an earlier release left it with the migrations before `before` applied: the
    files of that release differed from these only in the name of the version table."""
    migrated_before(dsn, before, schema=schema)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"ALTER TABLE {schema}.{MIGRATIONS_TABLE} RENAME TO schema_migrations")
        connection.execute(
            f"ALTER INDEX {schema}.{MIGRATIONS_TABLE}_pkey RENAME TO schema_migrations_pkey"
        )
        # Applied again, migration 1 would make this index, migration 2 that one: their
        # absence afterwards says neither ran.
        connection.execute(f"DROP INDEX {schema}.judgments_task")
        connection.execute(f"DROP INDEX {schema}.task_requests_task")


def _indexes(dsn: str, schema: str) -> set[str]:
    found = _rows(dsn, f"SELECT indexname FROM pg_indexes WHERE schemaname = '{schema}'")
    return {name for (name,) in found}


def test_a_frameworks_schema_migrations_is_left_as_it_was(postgres_dsn):
    """An Ecto table (version bigint, inserted_at) in the tool's schema: every migration
    applies and is recorded in the pipelines' own table; the framework's row and columns stay."""
    schema = "framework_ecto"
    _foreign(
        postgres_dsn,
        schema,
        "version bigint PRIMARY KEY, inserted_at timestamp",
        "(20231105123456, '2023-11-05 12:34:56')",
    )
    columns = _columns(postgres_dsn, schema, "schema_migrations")
    assert _migrate(postgres_dsn, schema) == {"schema": schema, "applied": ALL, "current": LATEST}
    recorded = _recorded(postgres_dsn, schema)
    assert [row[0] for row in recorded] == ALL
    # Again: nothing applied, nothing recorded anew.
    assert _migrate(postgres_dsn, schema) == {"schema": schema, "applied": [], "current": LATEST}
    assert _recorded(postgres_dsn, schema) == recorded
    assert apply_schema(postgres_dsn, schema=schema) == []
    assert _columns(postgres_dsn, schema, "schema_migrations") == columns
    assert _rows(postgres_dsn, f"SELECT * FROM {schema}.schema_migrations") == [
        (20231105123456, datetime(2023, 11, 5, 12, 34, 56))
    ]


@pytest.mark.parametrize(
    ("schema", "ddl", "rows"),
    [
        # golang-migrate: the one current version, and whether it failed half-way.
        ("golang_migrate", "version bigint PRIMARY KEY, dirty boolean NOT NULL", ("(10, false)",)),
        # dbmate: one row per version, as text.
        ("dbmate", "version varchar(128) PRIMARY KEY", ("('1')", "('2')", "('3')")),
        # A framework's own numbered, named migrations, in a table shaped as ours was.
        (
            "same_shape",
            "version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now()",
            ("(1, 'create_users')", "(2, 'add_email')", "(10, 'schema')"),
        ),
    ],
    ids=["golang-migrate", "dbmate", "same-shape"],
)
def test_small_foreign_versions_do_not_stand_for_ours(postgres_dsn, schema, ddl, rows):
    _foreign(postgres_dsn, schema, ddl, *rows)
    before = _rows(postgres_dsn, f"SELECT * FROM {schema}.schema_migrations ORDER BY 1")
    columns = _columns(postgres_dsn, schema, "schema_migrations")
    assert _migrate(postgres_dsn, schema)["applied"] == ALL
    assert [row[0] for row in _recorded(postgres_dsn, schema)] == ALL
    assert {"judgments_task", "task_requests_task"} <= _indexes(postgres_dsn, schema)
    assert _rows(postgres_dsn, f"SELECT * FROM {schema}.schema_migrations ORDER BY 1") == before
    assert _columns(postgres_dsn, schema, "schema_migrations") == columns


def test_a_database_an_earlier_release_migrated_is_not_migrated_again(postgres_dsn):
    """Its versions are taken over, with when each was applied; nothing is run again, its
    `schema_migrations` stays as it was (a session of that release still reads it), and the
    next run finds everything recorded."""
    schema = "earlier_release"
    _migrated_by_an_earlier_release(postgres_dsn, schema, LEGACY[-1] + 1)
    legacy = _rows(postgres_dsn, f"SELECT * FROM {schema}.schema_migrations ORDER BY 1")
    indexes = _indexes(postgres_dsn, schema)
    newer = [version for version in ALL if version not in LEGACY]
    assert _migrate(postgres_dsn, schema)["applied"] == newer
    recorded = _recorded(postgres_dsn, schema)
    assert recorded[: len(LEGACY)] == legacy
    assert [row[0] for row in recorded] == ALL
    assert _indexes(postgres_dsn, schema) == indexes | {f"{MIGRATIONS_TABLE}_pkey"}
    assert _rows(postgres_dsn, f"SELECT * FROM {schema}.schema_migrations ORDER BY 1") == legacy
    assert _migrate(postgres_dsn, schema)["applied"] == []
    assert apply_schema(postgres_dsn, schema=schema) == []
    assert _recorded(postgres_dsn, schema) == recorded


def test_a_database_an_earlier_release_left_part_way_gets_only_the_rest(postgres_dsn):
    schema = "earlier_release_part"
    _migrated_by_an_earlier_release(postgres_dsn, schema, 6)
    assert _migrate(postgres_dsn, schema)["applied"] == [v for v in ALL if v >= 6]
    recorded = _recorded(postgres_dsn, schema)
    assert [row[0] for row in recorded] == ALL
    legacy = _rows(postgres_dsn, f"SELECT * FROM {schema}.schema_migrations ORDER BY 1")
    assert recorded[:5] == legacy and len(legacy) == 5
    assert not {"judgments_task", "task_requests_task"} & _indexes(postgres_dsn, schema)


def test_the_files_run_by_hand_take_over_an_earlier_releases_versions(postgres_dsn):
    """`psql -f schema.sql -f 002… ` over such a database: migration 1 takes the versions
    over before anything else, so each file finds its own recorded, as when run twice."""
    schema = "earlier_release_psql"
    _migrated_by_an_earlier_release(postgres_dsn, schema, LEGACY[-1] + 1)
    legacy = _rows(postgres_dsn, f"SELECT * FROM {schema}.schema_migrations ORDER BY 1")
    migrated_before(postgres_dsn, LATEST + 1, schema=schema)
    assert _recorded(postgres_dsn, schema)[: len(LEGACY)] == legacy
    assert [row[0] for row in _recorded(postgres_dsn, schema)] == ALL


def test_runs_that_upgrade_a_database_at_once_take_its_versions_over_once(postgres_dsn):
    """Every live run migrates before its first write: several starting on a database an
    earlier release migrated copy its versions once (under the migration lock), and none runs
    a migration again."""
    schema = "earlier_release_concurrent"
    _migrated_by_an_earlier_release(postgres_dsn, schema, LEGACY[-1] + 1)
    legacy = _rows(postgres_dsn, f"SELECT * FROM {schema}.schema_migrations ORDER BY 1")
    assert migrate_at_once(postgres_dsn, schema=schema) == []
    assert _recorded(postgres_dsn, schema)[: len(LEGACY)] == legacy
    assert not {"judgments_task", "task_requests_task"} & _indexes(postgres_dsn, schema)


def test_schema_sql_takes_the_versions_over_as_apply_schema_does():
    """`apply_schema` runs the adoption before anything else; `psql -f schema.sql` runs the
    same text, at the top of migration 1."""
    schema_sql = (SQL_DIR / "schema.sql").read_text()
    assert ADOPT_SQL.read_text() in schema_sql
    assert schema_sql.index(ADOPT_SQL.read_text()) < schema_sql.index(
        "CREATE TABLE IF NOT EXISTS projects"
    )
    for path in SQL_DIR.glob("*.sql"):
        assert "schema_migrations" not in path.read_text().replace(ADOPT_SQL.read_text(), "")


def test_a_role_that_may_not_create_the_table_says_who_must_migrate():
    """The version table is new: the live run's role, if it may not create tables in the
    schema, fails naming the fix, and once a DBA has run `migrate` it finds everything
    recorded and needs no such privilege again."""
    with (
        fresh_database("migration_table") as database,
        tool_and_pipelines_roles(database) as (_, pipelines),
    ):
        owner = f"postgresql://postgres@127.0.0.1:5432/{database}"
        role = pipelines.split("//")[1].split("@")[0]
        with psycopg.connect(owner, autocommit=True) as connection:
            connection.execute(f"ALTER TABLE {MIGRATIONS_TABLE} RENAME TO schema_migrations")
            connection.execute(f"REVOKE CREATE ON SCHEMA public FROM {role}")
        with pytest.raises(MigrationFailed) as failed:
            apply_schema(pipelines)
        message = str(failed.value)
        assert message.startswith("migration 1 (schema) on ")
        assert "permission denied for schema public" in message
        assert "as a role that may create tables in the schema" in message
        assert _migrate(owner, "public")["applied"] == [v for v in ALL if v >= 6]
        assert apply_schema(pipelines) == []


@pytest.mark.parametrize("dsn", ["mysql://x:secret@y/z", "host=y dbname"])
def test_a_dsn_postgres_cannot_read_is_one_line_naming_where_it_is_set(dsn):
    # psycopg's own message (`missing "=" after ...`) named neither the option nor the
    # variable, and quoted the DSN with its password.
    from annotation_pipelines.ingest.connection import InvalidDsn
    from resources.annotation_db import AnnotationDatabase

    result = CliRunner().invoke(main, ["migrate", "--dsn", dsn])
    assert result.exit_code == 1
    message = result.output.strip()
    assert "\n" not in message and message.startswith("Error: "), message
    assert "--dsn" in message and "ANNOTATION_DB_DSN" in message
    assert "postgresql://user@host:5432/db" in message and "secret" not in message
    with pytest.raises(InvalidDsn, match="ANNOTATION_DB_DSN"):
        _ = AnnotationDatabase(dsn=dsn).probe_dsn
