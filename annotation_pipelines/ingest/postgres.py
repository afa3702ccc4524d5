"""The annotation tool's Postgres database: DDL, seeding, incremental extraction as Arrow.

Extraction model: every table has an `updated_at` maintained by a trigger. `updated_at` is
`now()`, the *start* of the writing transaction, so a row can become visible long after the
moment it is stamped with. An extract therefore never reads up to the wall clock: its upper
bound `until` is just before the start of the oldest transaction still open in the database
(`pg_stat_activity`; when this role cannot see other sessions, the server clock minus
`lag`), so no row stamped at or below `until` can still appear. The window read is
`since - overlap < updated_at <= until` (parameterized SQL; identifiers are validated and
quoted): the overlap re-reads the end of the previous window as a second line of defence,
and rows already read there at the same `updated_at` (`DatabaseExtract.seen`, handed back by
the caller) are dropped, so a quiet database reads nothing twice. Judgments submitted after
`since` are re-read whatever their `updated_at`: an earlier extract may have quarantined them
as "in the future" (clock skew) and must get another chance once the clock catches up.
The next watermark is `until`.

Deletions: a row the tool deletes leaves a tombstone (migration 6: `judgment_deletions`,
`gold_label_deletions`, filled by an AFTER DELETE trigger) stamped `deleted_at = now()`, the
start of the deleting transaction like `updated_at`, so the same safe window, overlap and
`seen` apply to it. The extract hands the window's tombstones on (`DatabaseExtract.deletions`,
`.gold_deletions`) less those of a key the window also read a row of: every tombstone of the
window committed before `until` was probed (a deletion still open then started after it) and
the rows are read after, so a row read was inserted again after the deletion, even one stamped
before it (a transaction that began before the deletion and inserted the freed key after it
committed). A version stored by an earlier window is dead only when it is the deleted version
or older: `stored.updated_at <= tombstone.updated_at` (the deleted version's stamp)
and `< tombstone.deleted_at` (`assets.sources.withdraw_deleted`, `loop.ledger.deleted`); a re-insert
an earlier window read is newer than the version its later-read tombstone deleted, and stays. A
tombstone left after that whose key the database holds now at a stamp at or below `until` (read
by this window or an earlier one) is not handed on either (`_without_reinserted`): the live
ledger keeps the older stamp of a re-insert equal to the version deleted, and stored gold has
none. Rows are grouped by the day of their own `submitted_at`, not the day they were extracted,
so a late-arriving judgment lands in the partition it belongs to; `merge_partition` upserts by
key keeping the newest `updated_at`, so re-reading a row (or re-running a window or a day)
changes nothing.

Reads are bulk and columnar: ADBC (`adbc-driver-postgresql`, binary COPY under the hood,
straight into Arrow) by default, or psycopg `COPY ... TO STDOUT` parsed by Polars; the
benchmark compares both with a plain psycopg fetch loop.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from annotation_pipelines.ingest.connection import connect, connect_arrow
from annotation_pipelines.ingest.result import IngestResult, assemble
from annotation_pipelines.ingest.tables import _value_rows
from annotation_pipelines.ingest.validation import (
    MAX_RECORD_BYTES,
    OUTSIDE_SCALE,
    OVERSIZED_FIELD,
    encode_record,
    safe_project,
    spelled_as_label_set,
)
from annotation_pipelines.kinds import (
    BOX_CONTEXT,
    CONTEXT_DTYPES,
    COORDINATE_UNITS,
    DEFAULT_KIND,
    VALUE_COLUMNS,
)
from annotation_pipelines.numbers import finite
from annotation_pipelines.scale import RatingScale, declared_scales
from annotation_pipelines.schema import UTC_TIMESTAMP

if TYPE_CHECKING:
    import psycopg

SQL_DIR = Path(__file__).with_name("sql")
SOURCE = "postgres"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Table -> columns read by the extract (updated_at is always added).
EXTRACT_COLUMNS: dict[str, tuple[str, ...]] = {
    "judgments": (
        "judgment_id",
        "task_id",
        "project",
        "annotator_id",
        "label",
        "submitted_at",
        "duration_s",
    ),
    "tasks": ("task_id", "project", "payload", "created_at"),
    "gold_labels": ("task_id", "project", "label"),
    "projects": ("project", "label_set"),
}
# Columns of migration 9 (`sql/009_kind_answers.sql`), read where the database has them: the
# kind of a judgment or gold label and, for every kind but categorical, its value as JSON.
KIND_ANSWER_COLUMNS = ("kind", "answer")
KIND_TABLES = ("judgments", "gold_labels")
# What a boxes answer may say of how it is measured, beside its boxes.
_BOX_CONTEXT: dict[str, pl.DataType] = {name: CONTEXT_DTYPES[name] for name in BOX_CONTEXT}
# The key each extracted table is upserted by.
EXTRACT_KEYS: dict[str, str] = {
    "judgments": "judgment_id",
    "tasks": "task_id",
    "gold_labels": "task_id",
}
DEFAULT_OVERLAP = timedelta(minutes=5)
# Used only when this role cannot see other sessions' transactions (pg_stat_activity hides
# them without superuser or pg_read_all_stats): no transaction is assumed to stay open longer.
DEFAULT_LAG = timedelta(minutes=5)
_TICK = timedelta(microseconds=1)
# Tombstone table -> the table whose deleted rows it records (migration 6).
DELETION_TABLES: dict[str, str] = {
    "judgment_deletions": "judgments",
    "gold_label_deletions": "gold_labels",
}
DELETIONS: dict[str, pl.DataType] = {
    "judgment_id": pl.String(),
    "task_id": pl.String(),
    "project": pl.String(),
    "annotator_id": pl.String(),
    "submitted_at": UTC_TIMESTAMP,
    "updated_at": UTC_TIMESTAMP,
    "deleted_at": UTC_TIMESTAMP,
}
GOLD_DELETIONS: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "label": pl.String(),
    "updated_at": UTC_TIMESTAMP,
    "deleted_at": UTC_TIMESTAMP,
}
# Tombstone table -> its columns.
TOMBSTONE_COLUMNS: dict[str, dict[str, pl.DataType]] = {
    "judgment_deletions": DELETIONS,
    "gold_label_deletions": GOLD_DELETIONS,
}
SEEN: dict[str, pl.DataType] = {
    "table": pl.String(),
    "key": pl.String(),
    "updated_at": UTC_TIMESTAMP,
}


def validate_identifier(name: str) -> str:
    """Return `name` if it is a plain SQL identifier (letters, digits, _), else raise."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"invalid SQL identifier {name!r}: use letters, digits and _ only")
    return name


def _quoted(name: str) -> str:
    return '"' + validate_identifier(name) + '"'


# Where the migrations record their versions: a name of the pipelines' own, since the tool's
# framework may keep a `schema_migrations` of its own in the same schema.
MIGRATIONS_TABLE = "annotation_pipelines_migrations"
# Copies an earlier release's versions out of `schema_migrations` into it, once (its comment
# says when a table of that name is ours); schema.sql begins with the same text, for `psql -f`.
ADOPT_SQL = SQL_DIR / "adopt_schema_migrations.sql"


def migration_files() -> list[tuple[int, Path]]:
    """(version, file) of every migration in order: schema.sql is 1, `NNN_*.sql` is NNN."""
    numbered = [(int(path.name.split("_", 1)[0]), path) for path in SQL_DIR.glob("[0-9]*.sql")]
    return [(1, SQL_DIR / "schema.sql"), *sorted(numbered)]


# Migrations the pipelines can run without, and what is missing until one is applied. Each
# changes tables the pipelines' role need not own: migration 6 puts triggers on the tool's
# tables, 8 changes the tombstone tables (owned by whoever applied 6), 9 and 10 add columns to
# the tool's tables. One a live run may not apply is skipped, and tried again on the next run. The
# others create and change the pipelines' own tables, which the live runs cannot work without.
OPTIONAL_MIGRATIONS: Mapping[int, str] = {
    6: "the tool's hard deletes are not tracked (deletions_tracked: false)",
    8: "migration 9 cannot follow, so judgments and gold labels of every kind but categorical "
    "are not read (kind_answers: false)",
    9: "judgments and gold labels of every kind but categorical are not read (kind_answers: false)",
    10: "no project declares a scale in the annotation DB (project_scales: false)",
}
# A migration's DDL waits for its table's lock behind every open transaction that touched the
# table, and every later writer (an annotator's INSERT) queues behind it: the tool stalls as
# long as the migration waits. A few seconds, then give up; the daemon's next run retries.
MIGRATION_LOCK_TIMEOUT = timedelta(seconds=3)
# Sessions that find migrations pending apply them one at a time (an advisory lock on this key,
# per database): the live runs, the kind fit job and the daily request writer each migrate
# before their first write, and two running one file at once collide on its catalog rows
# (`CREATE ... IF NOT EXISTS` is not safe against a concurrent create). The wait is bounded by
# another session's whole run of them, each table lock waited for `MIGRATION_LOCK_TIMEOUT`.
MIGRATION_SESSION_KEY = 0x6D696772617465  # "migrate"
MIGRATION_SESSION_TIMEOUT = timedelta(seconds=60)
# What a DBA does about migration 6 when the pipelines' role cannot apply it.
MIGRATION_FIX = (
    "run `annotation-pipelines migrate --dsn …` as a role owning `judgments` and "
    "`gold_labels` and GRANT SELECT ON judgment_deletions, gold_label_deletions to the "
    "pipelines' role, or GRANT TRIGGER ON judgments, gold_labels to the pipelines' role (the "
    "next live run applies it)"
)
# ... and about the others.
MIGRATION_FIXES: Mapping[int, str] = {
    1: "run `annotation-pipelines migrate --dsn …` as a role that may create tables in the "
    "schema (CREATE on it)",
    6: MIGRATION_FIX,
    8: "run `annotation-pipelines migrate --dsn …` as the owner of gold_label_deletions (the "
    "role that applied migration 6)",
    9: "run `annotation-pipelines migrate --dsn …` as a role owning `judgments` and "
    "`gold_labels`; a `kind` or `answer` column they already have must be renamed first",
    10: "run `annotation-pipelines migrate --dsn …` as a role owning `projects`; a `scale` "
    "column it already has must be renamed first",
}


@dataclass(frozen=True)
class SkippedMigration:
    """An optional migration `apply_schema` could not apply: `cause` names why (the driver's
    first line) and what to do, `locked` whether it was the lock wait, not a privilege."""

    version: int
    name: str
    cause: str
    locked: bool

    def message(self) -> str:
        """One line for a run's log: what was skipped, why, what it costs, what to do."""
        return (
            f"migration {self.version} ({self.name}) skipped: {self.cause}; the next run tries "
            f"again. Until it is applied {OPTIONAL_MIGRATIONS[self.version]}"
        )


class MigrationFailed(RuntimeError):
    """A migration could not be applied; the message names it and the cause."""

    def __init__(self, *, version: int, name: str, where: str, cause: str) -> None:
        super().__init__(f"migration {version} ({name}) on {where} failed: {cause}")
        self.version = version
        self.name = name
        self.cause = cause


def apply_schema(
    dsn: str,
    *,
    schema: str = "public",
    lock_timeout: timedelta = MIGRATION_LOCK_TIMEOUT,
    strict: bool = False,
) -> list[SkippedMigration]:
    """Create the annotation tool's tables and apply the migrations (idempotent) in `schema`.

    Each migration records its version in `annotation_pipelines_migrations`; one recorded there
    is not run again. A database an earlier release migrated has its versions in
    `schema_migrations`: the first call copies them over (`ADOPT_SQL`) and leaves that table,
    like a framework's table of that name, as it is. A run of the live jobs calls this once,
    before its first read or write of the live tables (`AnnotationDatabase`): a migration's
    ALTER TABLE, even one that changes nothing, waits for every open transaction that read its
    table and holds every later reader behind it, so a migration runs once, not once per run,
    and waits at most `lock_timeout` for a lock. Each migration is one transaction: one that
    fails changes nothing.

    An optional migration (`OPTIONAL_MIGRATIONS`) this role may not apply, or whose lock is
    not granted in time, is skipped and returned, unless `strict`; any other failure raises
    `MigrationFailed`, naming the migration.
    """
    return migrate_schema(dsn, schema=schema, lock_timeout=lock_timeout, strict=strict).skipped


@dataclass(frozen=True)
class MigrationRun:
    """What `migrate_schema` did: the versions it ran, in order, and the optional ones it
    skipped (versions copied from an earlier release's table were not run: not in `applied`)."""

    applied: list[int]
    skipped: list[SkippedMigration]


def migrate_schema(
    dsn: str,
    *,
    schema: str = "public",
    lock_timeout: timedelta = MIGRATION_LOCK_TIMEOUT,
    strict: bool = False,
) -> MigrationRun:
    """`apply_schema`, saying also which migrations this call ran."""
    from psycopg import errors, sql

    run = MigrationRun(applied=[], skipped=[])
    with connect(dsn, autocommit=True) as connection:
        identifier = sql.Identifier(validate_identifier(schema))
        connection.execute(sql.SQL("SET search_path TO {}").format(identifier))
        pending = [v for v, _ in migration_files() if v not in _recorded_migrations(connection)]
        if not pending:
            return run
        waited = int(MIGRATION_SESSION_TIMEOUT.total_seconds() * 1000)
        connection.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(waited)))
        try:
            connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_SESSION_KEY,))
        except errors.LockNotAvailable as error:
            name = dict(migration_files())[pending[0]].name.removesuffix(".sql")
            raise MigrationFailed(
                version=pending[0],
                name=name,
                where=_where(dsn, schema),
                cause=f"another session was still applying migrations after {waited / 1000:g} s",
            ) from error
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(identifier))
        milliseconds = max(1, int(lock_timeout.total_seconds() * 1000))
        connection.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(milliseconds)))
        # Read again under the lock: another session may have applied them meanwhile.
        applied = _recorded_migrations(connection)
        if not applied:
            # Versions an earlier release recorded are not run again. Only while nothing is
            # recorded: creating the table, even one that exists, needs CREATE on the schema.
            try:
                connection.execute(ADOPT_SQL.read_text())
            except errors.Error as error:
                raise MigrationFailed(
                    version=1,
                    name="schema",
                    where=_where(dsn, schema),
                    cause=_cause(error, lock_timeout, 1),
                ) from error
            applied = _recorded_migrations(connection)
        for version, path in migration_files():
            if version in applied:
                continue
            name = path.name.removesuffix(".sql")
            try:
                connection.execute(path.read_text())
            except errors.Error as error:
                cause = _cause(error, lock_timeout, version)
                skippable = isinstance(
                    error,
                    (errors.InsufficientPrivilege, errors.LockNotAvailable, errors.DuplicateColumn),
                )
                if strict or not skippable or version not in OPTIONAL_MIGRATIONS:
                    raise MigrationFailed(
                        version=version, name=name, where=_where(dsn, schema), cause=cause
                    ) from error
                run.skipped.append(
                    SkippedMigration(
                        version=version,
                        name=name,
                        cause=cause,
                        locked=isinstance(error, errors.LockNotAvailable),
                    )
                )
            else:
                run.applied.append(version)
    return run


def _where(dsn: str, schema: str) -> str:
    from annotation_pipelines.ingest.connection import describe

    return f"{describe(dsn)} (schema {schema})"


def _cause(error: BaseException, lock_timeout: timedelta, version: int) -> str:
    """The driver's first line, and what to do about a privilege or a lock."""
    from psycopg import errors

    from annotation_pipelines.ingest.connection import first_line

    cause = first_line(error)
    if isinstance(error, errors.InsufficientPrivilege):
        return f"{cause}; {MIGRATION_FIXES.get(version, MIGRATION_FIX)}"
    if isinstance(error, errors.DuplicateColumn):
        return f"{cause}; {MIGRATION_FIXES.get(version, '')}".removesuffix("; ")
    if isinstance(error, errors.LockNotAvailable):
        return (
            f"{cause} (waited {lock_timeout.total_seconds():g} s for a table lock behind an "
            "open transaction); try again when the tool is quieter"
        )
    return cause


def _recorded_migrations(connection: psycopg.Connection[Any]) -> set[int]:
    """The versions `MIGRATIONS_TABLE` records on `connection`'s search path (none before the
    table exists)."""
    recorded = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,))
    found = recorded.fetchone()
    if not (found and found[0]):
        return set()
    return {int(v) for (v,) in connection.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")}


def applied_migrations(dsn: str, *, schema: str = "public") -> set[int]:
    """The migration versions applied to the annotation DB's `schema` (empty: none yet)."""
    from psycopg import sql

    with connect(dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("SET search_path TO {}").format(sql.Identifier(validate_identifier(schema)))
        )
        return _recorded_migrations(connection)


def _arrow_for_postgres(frame: pl.DataFrame) -> pa.Table:
    # libpq COPY binary knows string and large_string, not Arrow's string_view.
    table = frame.to_arrow()
    fields = [
        pa.field(f.name, pa.string())
        if pa.types.is_string_view(f.type) or pa.types.is_large_string(f.type)
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def seed_database(
    dsn: str,
    *,
    judgments: pl.DataFrame,
    tasks: pl.DataFrame | None = None,
    gold: pl.DataFrame | None = None,
    label_sets: dict[str, Sequence[str]] | None = None,
    schema: str = "public",
    updated_at: datetime | None = None,
    assignments: bool = True,
) -> dict[str, int]:
    """Load a workload (canonical judgments, optional tasks and gold) into the tool's tables.

    Projects, annotators, tasks (when not given) and assignments are derived from the
    judgments. `updated_at` (default: now) is stamped on every row, which is what a test of
    the watermark needs. Bulk insert through ADBC (binary COPY); tables that already hold rows
    get only the new ones (`ON CONFLICT DO NOTHING`), so a workload can be seeded in batches.
    `assignments=False` skips the one table the ingest never reads (faster 10M-row seeds).
    Judgments and gold of another kind than categorical (a `kind` column and the kind's value
    columns, `annotation_pipelines.kinds`) are written with their `kind` and JSON `answer`
    (migration 9; `_answer_json`); categorical rows keep `kind` null. Returns rows inserted
    per table.
    """
    validate_identifier(schema)
    apply_schema(dsn, schema=schema)
    stamp = pl.lit(updated_at or datetime.now(UTC)).cast(UTC_TIMESTAMP)
    label_sets = dict(label_sets or {})
    projects = judgments.select("project").unique().sort("project")
    projects = projects.with_columns(
        label_set=pl.col("project").map_elements(
            lambda p: sorted(label_sets.get(p, ())) or None, return_dtype=pl.List(pl.String)
        )
    ).with_columns(label_set=pl.col("label_set").fill_null(pl.lit([], pl.List(pl.String))))
    for project, labels in label_sets.items():
        if project not in projects.get_column("project").to_list():
            projects = pl.concat(
                [projects, pl.DataFrame({"project": [project], "label_set": [sorted(labels)]})]
            )
    if tasks is None:
        tasks = judgments.group_by("task_id").agg(
            project=pl.col("project").first(),
            payload=pl.lit(None, pl.String),
            created_at=pl.col("submitted_at").min(),
        )
    frames = {
        "projects": projects.with_columns(created_at=stamp, updated_at=stamp),
        "annotators": judgments.select("annotator_id")
        .drop_nulls()
        .unique()
        .with_columns(created_at=stamp, updated_at=stamp),
        # The seeded tables carry exactly the columns the extract reads back.
        "tasks": tasks.select(EXTRACT_COLUMNS["tasks"]).with_columns(updated_at=stamp),
        "assignments": judgments.head(0 if not assignments else judgments.height)
        .drop_nulls("annotator_id")
        .group_by("task_id", "annotator_id")
        .agg(assigned_at=pl.col("submitted_at").min())
        .with_columns(updated_at=stamp),
    }
    # Rows of another kind than categorical go their own way (`answers`); the categorical
    # rows (the bulk) are copied as they always were.
    answers: dict[str, pl.DataFrame] = {}
    for table, frame in (("judgments", judgments), ("gold_labels", gold)):
        if frame is None:
            continue
        categorical, others = _split_kinds(frame, table=table)
        frames[table] = categorical.select(EXTRACT_COLUMNS[table]).with_columns(updated_at=stamp)
        if others.height:
            answers[table] = others.with_columns(updated_at=stamp)
    counts: dict[str, int] = {}
    with connect_arrow(dsn) as connection, connection.cursor() as cursor:
        for table, frame in frames.items():
            arrow = _arrow_for_postgres(frame)
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {_quoted(schema)}.{_quoted(table)})")
            populated = bool(cursor.fetchone()[0])
            if table == "judgments" or not populated:
                # New submissions, or a first seed: straight binary COPY, no staging.
                cursor.adbc_ingest(table, arrow, mode="append", db_schema_name=schema)
                counts[table] = frame.height
                continue
            # Dimensions may already hold rows from an earlier seed: stage, then insert the
            # new ones only, so seeding in several batches (or twice) works.
            staging = f"seed_{table}"
            cursor.adbc_ingest(staging, arrow, mode="replace", temporary=True)
            columns = ", ".join(_quoted(c) for c in frame.columns)
            cursor.execute(
                f"INSERT INTO {_quoted(schema)}.{_quoted(table)} ({columns}) "
                f"SELECT {columns} FROM {_quoted(staging)} ON CONFLICT DO NOTHING"
            )
            counts[table] = cursor.rowcount if cursor.rowcount >= 0 else frame.height
        for table, frame in answers.items():
            # Binary COPY writes a string column as text, which a jsonb column refuses: the
            # answers are staged as text and cast on the way in.
            staging = f"seed_{table}_answers"
            cursor.adbc_ingest(staging, _arrow_for_postgres(frame), mode="replace", temporary=True)
            columns = ", ".join(_quoted(c) for c in frame.columns)
            selected = ", ".join(
                f"{_quoted(c)}::jsonb" if c == "answer" else _quoted(c) for c in frame.columns
            )
            # Judgments are new submissions (a duplicate is an error, as on the COPY above).
            conflict = "" if table == "judgments" else " ON CONFLICT DO NOTHING"
            cursor.execute(
                f"INSERT INTO {_quoted(schema)}.{_quoted(table)} ({columns}) "
                f"SELECT {selected} FROM {_quoted(staging)}{conflict}"
            )
            counts[table] += cursor.rowcount if cursor.rowcount >= 0 else frame.height
        connection.commit()
    return counts


# Kind columns with no place in a DB row: an `answer` holds a kind's value (and a boxes
# answer where its boxes are measured), nothing else.
_UNSTORED_CONTEXT = ("polygons", "control")


def _split_kinds(frame: pl.DataFrame, *, table: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the categorical rows of `frame`, the others with `kind` and `answer` as JSON text, in
    the columns the DB's row has). A frame with no `kind` is categorical throughout."""
    empty = pl.DataFrame(schema={**frame.select(EXTRACT_COLUMNS[table]).schema, "kind": pl.String})
    if "kind" not in frame.columns:
        return frame, empty.with_columns(answer=pl.lit(None, pl.String))
    other = pl.col("kind").is_not_null() & (pl.col("kind") != DEFAULT_KIND)
    others = frame.filter(other)
    if others.height == 0:
        return frame, empty.with_columns(answer=pl.lit(None, pl.String))
    key = EXTRACT_KEYS[table]
    for name in _UNSTORED_CONTEXT:
        if name not in others.columns:
            continue
        held = pl.col(name).is_not_null()
        if isinstance(others.schema[name], pl.List):
            held &= pl.col(name).list.len() > 0
        if others.select(held.any()).item():
            row = others.filter(held).row(0, named=True)
            raise ValueError(
                f"{table}: row {key}={row[key]!r} ({row['kind']}) has `{name}`, which the "
                "annotation DB's `answer` cannot hold"
            )
    texts = _answer_texts(others, table=table)
    return (
        frame.filter(~other),
        others.select(*EXTRACT_COLUMNS[table], "kind").with_columns(answer=texts),
    )


def _answer_texts(frame: pl.DataFrame, *, table: str) -> pl.Series:
    """The `answer` of each row of `frame` (none categorical) as JSON text, in row order."""
    key = EXTRACT_KEYS[table]
    texts: list[str | None] = [None] * frame.height
    indexed = frame.with_row_index("_row")
    for (kind,), part in indexed.partition_by("kind", as_dict=True).items():
        kind = str(kind)
        if kind not in VALUE_COLUMNS:
            raise ValueError(
                f"{table}: row {key}={part[key][0]!r} has kind {kind!r}; expected one of "
                f"{', '.join(VALUE_COLUMNS)}"
            )
        columns = [*VALUE_COLUMNS[kind], *(_BOX_CONTEXT if kind == "boxes" else ())]
        present = [c for c in columns if c in part.columns]
        for row, identifier, *cells in part.select("_row", key, *present).iter_rows():
            value = _answer_json(kind, dict(zip(present, cells, strict=True)))
            try:
                texts[row] = None if value is None else json.dumps(value, allow_nan=False)
            except ValueError:
                raise ValueError(
                    f"{table}: row {key}={identifier!r} ({kind}): a value is not a finite "
                    f"number, which JSON cannot hold: {value!r:.120}"
                ) from None
    return pl.Series("answer", texts, dtype=pl.String)


def _answer_json(kind: str, cells: dict[str, Any]) -> Any:
    """The JSON `answer` of one row of `kind` from its canonical cells: the inverse of
    `_answer_cells` (None where the row has no value). Pairwise is always `{left, right,
    winner}`; boxes are an object only when the row says where they are measured."""
    if kind == "pairwise":
        return {name: cells.get(name) for name in VALUE_COLUMNS[kind]}
    value = cells.get(VALUE_COLUMNS[kind][0])
    if kind == "boxes":
        context = {name: cells[name] for name in _BOX_CONTEXT if cells.get(name) is not None}
        if context:
            return {"boxes": value, **context}
    return value


@dataclass(frozen=True)
class DatabaseExtract:
    """One extraction window: validated canonical tables, and the next watermark.

    `seen` holds (table, key, updated_at) of the rows read near the end of the window; pass
    it to the next extract so its overlap does not read them again.
    """

    result: IngestResult
    since: datetime
    until: datetime
    seen: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SEEN))
    # One flag per row of `result.quarantine`: a judgment submitted after `until`, which the
    # next extract reads again whatever made it bad (it is not in `seen`).
    read_again: pl.Series = field(default_factory=lambda: pl.Series("read_again", [], pl.Boolean))
    # The window's tombstones (`DELETIONS`, `GOLD_DELETIONS`): rows the tool deleted, of keys
    # the window read no row of (one read was inserted again). One of a project name the
    # ingest refuses is left out: its rows were never loaded (`ignored_deletions` counts
    # their keys).
    deletions: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=DELETIONS))
    gold_deletions: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=GOLD_DELETIONS)
    )
    ignored_deletions: int = 0
    # False when the database has no tombstone tables (migration 6 not applied): its hard
    # deletes are not seen, which the assets report rather than pass over.
    deletions_tracked: bool = True
    # False when `judgments` and `gold_labels` lack migration 9's `kind` and `answer`: every
    # row read is categorical.
    kind_answers: bool = True
    # True when `max_rows` ended the window before the safe bound: changes remain after `until`.
    capped: bool = False
    # Project -> the rating scale its `projects.scale` declares (`project_scales`); None when
    # the database has no such column (migration 10 not applied).
    scales: Mapping[str, RatingScale] | None = None
    # The window's numeric judgments and gold labels quarantined as `outside_scale`, as
    # tombstones (`DELETIONS`, `GOLD_DELETIONS`) of every version of their key older than the
    # one read, dated by it (`loop.ledger.moved`'s rule): an edit that moves a row off its
    # project's scale withdraws the answer an earlier window read, as a deletion would. Those
    # submitted after `until` are left to the window that holds their time (`read_again`).
    off_scale: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=DELETIONS))
    off_scale_gold: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=GOLD_DELETIONS)
    )
    # The same for the window's judgments and gold labels set aside for any other reason (a
    # label outside the project's set, the annotator cleared, an answer of the wrong shape):
    # the row the tool holds now no longer says what the version read before said, so an edit
    # that makes a row bad withdraws that version instead of leaving it counted.
    set_aside: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=DELETIONS))
    set_aside_gold: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=GOLD_DELETIONS)
    )

    @property
    def watermark(self) -> datetime:
        return self.until


def safe_upper_bound(dsn: str, *, lag: timedelta = DEFAULT_LAG) -> datetime:
    """The latest `updated_at` no open transaction can still commit a row at or below.

    A row's `updated_at` is its transaction's start, so every row not yet visible carries a
    stamp at or after the start of the oldest open transaction; the bound is just before it.
    """
    query = """
        SELECT clock_timestamp(),
               (SELECT min(xact_start) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND backend_type = 'client backend' AND xact_start IS NOT NULL),
               (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                 OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')
    """
    with connect(dsn, autocommit=True) as connection:
        row = connection.execute(query).fetchone()
    assert row is not None
    clock, oldest, sees_all = row
    bound = clock if sees_all else clock - lag
    if oldest is not None:
        bound = min(bound, oldest - _TICK)
    return bound.astimezone(UTC)


def _window(*, placeholder: str, resubmitted: bool) -> str:
    """The window's condition; parameters in order: since, until[, submitted_after, until]."""
    first, second, third, fourth = (placeholder.format(n) for n in range(1, 5))
    condition = f"(updated_at > {first} AND updated_at <= {second})"
    if resubmitted:
        condition += f" OR (submitted_at > {third} AND updated_at <= {fourth})"
    return condition


def _read_columns(table: str, *, kinds: bool) -> tuple[str, ...]:
    extra = KIND_ANSWER_COLUMNS if kinds and table in KIND_TABLES else ()
    return (*EXTRACT_COLUMNS[table], *extra, "updated_at")


def _select(
    table: str, schema: str, *, placeholder: str, resubmitted: bool = False, kinds: bool = False
) -> str:
    # jsonb as its text: every read method hands it on as a string, parsed by the validation.
    columns = ", ".join(
        f"{_quoted(c)}::text AS {_quoted(c)}" if c == "answer" else _quoted(c)
        for c in _read_columns(table, kinds=kinds)
    )
    condition = _window(placeholder=placeholder, resubmitted=resubmitted)
    return f"SELECT {columns} FROM {_quoted(schema)}.{_quoted(table)} WHERE {condition}"


def read_table_since(
    dsn: str,
    table: str,
    *,
    since: datetime,
    until: datetime,
    schema: str = "public",
    method: str = "adbc",
    submitted_after: datetime | None = None,
    kinds: bool = False,
) -> pl.DataFrame:
    """Rows of `table` with `since < updated_at <= until`, as a Polars frame, read in bulk.

    `submitted_after` (judgments only) also reads rows submitted after it with
    `updated_at <= until`, whatever their `updated_at`. `kinds` also reads `kind` and
    `answer` (as JSON text) of judgments and gold labels (migration 9; `has_kind_answers`).
    """
    if table not in EXTRACT_COLUMNS:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(EXTRACT_COLUMNS)}")
    if submitted_after is not None and "submitted_at" not in EXTRACT_COLUMNS[table]:
        raise ValueError(f"{table} has no submitted_at")
    validate_identifier(schema)
    for moment in (since, until, submitted_after):
        if moment is not None and moment.tzinfo is None:
            raise ValueError("watermarks must be timezone-aware (UTC)")
    resubmitted = submitted_after is not None
    parameters = (since, until, submitted_after, until) if resubmitted else (since, until)
    if method == "adbc":
        select = _select(table, schema, placeholder="${}", resubmitted=resubmitted, kinds=kinds)
        with connect_arrow(dsn) as connection, connection.cursor() as cursor:
            cursor.execute(select, parameters=parameters)
            arrow = cursor.fetch_arrow_table()
        frame = pl.from_arrow(arrow)
        assert isinstance(frame, pl.DataFrame)
    elif method == "copy":
        frame = _read_copy(dsn, table, schema=schema, parameters=parameters, kinds=kinds)
    elif method == "fetch":
        frame = _read_fetch(dsn, table, schema=schema, parameters=parameters, kinds=kinds)
    else:
        raise ValueError(f"unknown method {method!r}; expected adbc, copy or fetch")
    return _normalize(frame)


def read_deletions_since(
    dsn: str, *, since: datetime, until: datetime, schema: str = "public"
) -> dict[str, pl.DataFrame]:
    """Tombstone table (`DELETION_TABLES`) -> its tombstones with `since < deleted_at <= until`,
    oldest first; a table the database does not have yet (it predates migration 6), or that
    this role may not read (a DBA applied the migration and granted nothing), is left out, so
    the caller can say that deletions are not tracked there.

    One psycopg connection for both tables: a window usually holds none or a few, and opening
    an ADBC connection costs more than reading them (a bulk erasure of 100,000 judgments reads
    in about half a second)."""
    frames: dict[str, pl.DataFrame] = {}
    with connect(dsn, autocommit=True) as connection:
        for table in DELETION_TABLES:
            columns = TOMBSTONE_COLUMNS[table]
            qualified = f"{_quoted(schema)}.{_quoted(table)}"
            exists = connection.execute(
                "SELECT coalesce(has_table_privilege(to_regclass(%s), 'SELECT'), false)",
                (qualified,),
            ).fetchone()
            if not (exists and exists[0]):
                continue
            select = (
                f"SELECT {', '.join(_quoted(c) for c in columns)} FROM {qualified} "
                "WHERE deleted_at > %s AND deleted_at <= %s ORDER BY deleted_at"
            )
            rows = connection.execute(select, (since, until)).fetchall()
            frame = pl.DataFrame(rows, schema=list(columns), orient="row")
            frames[table] = _normalize(frame).cast(pl.Schema(columns))
    return frames


def has_kind_answers(dsn: str, *, schema: str = "public") -> bool:
    """Whether `judgments` and `gold_labels` have migration 9's `kind` and `answer` columns
    (without them every row is categorical)."""
    tables = [f"{_quoted(validate_identifier(schema))}.{_quoted(t)}" for t in KIND_TABLES]
    # By type too: columns of the same names the tool had of its own are not these.
    query = (
        "SELECT count(*) FROM pg_attribute WHERE attrelid IN (to_regclass(%s), to_regclass(%s)) "
        "AND attnum > 0 AND NOT attisdropped "
        "AND ((attname = 'kind' AND atttypid = 'text'::regtype) "
        "OR (attname = 'answer' AND atttypid = 'jsonb'::regtype))"
    )
    with connect(dsn, autocommit=True) as connection:
        row = connection.execute(query, tables).fetchone()
    return row is not None and row[0] == len(KIND_TABLES) * len(KIND_ANSWER_COLUMNS)


def project_scales(dsn: str, *, schema: str = "public") -> dict[str, RatingScale] | None:
    """Project -> the rating scale its `projects.scale` declares (migration 10), for those
    declaring one; None when `projects` has no such column (a `scale` of the tool's own, which
    the migration refuses, is not read as one). A declaration that is not a scale (the
    migration's CHECK refuses one, so it can only be a bound no float holds) raises the
    ValueError a malformed project.json scale raises, naming the table and the project."""
    quoted = f"{_quoted(validate_identifier(schema))}.{_quoted('projects')}"
    ours = (
        "SELECT count(*) FROM pg_attribute a JOIN pg_constraint k ON k.conrelid = a.attrelid "
        "AND k.conname = 'projects_scale_is_a_scale' WHERE a.attrelid = to_regclass(%s) "
        "AND a.attname = 'scale' AND a.atttypid = 'jsonb'::regtype AND NOT a.attisdropped"
    )
    with connect(dsn, autocommit=True) as connection:
        found = connection.execute(ours, (quoted,)).fetchone()
        if not (found and found[0]):
            return None
        rows = connection.execute(
            f"SELECT project, scale::text FROM {quoted} WHERE scale IS NOT NULL ORDER BY project"
        ).fetchall()
    return declared_scales(
        ((str(project), json.loads(text)) for project, text in rows),
        source=lambda project: f"postgres:{schema}.projects (project {project!r})",
    )


def _outside_scales(staged: pl.DataFrame, scales: Mapping[str, RatingScale] | None) -> pl.DataFrame:
    """Quarantine each numeric row whose value is outside its own project's scale (several
    projects per extract) as `outside_scale`, its field naming the scale as an export's does
    (`answer (scale [1, 5] step 1)`: the DB holds the value in `answer`). A row already bad
    for another reason keeps it."""
    if not scales or "value" not in staged.columns or staged.height == 0:
        return staged
    # One pass over the extract: a row is of one project, so at most one scale's test holds.
    candidate = pl.col("reason").is_null() & (pl.col("kind") == "numeric")
    offs = [
        (
            candidate
            & (pl.col("project") == project)
            & scale.outside(pl.col("value")).fill_null(False),
            pl.lit(f"answer ({scale.describe()})"),
        )
        for project, scale in scales.items()
    ]
    off_scale = pl.any_horizontal(off for off, _ in offs)
    return staged.with_columns(
        reason=pl.when(off_scale).then(pl.lit(OUTSIDE_SCALE)).otherwise(pl.col("reason")),
        field=pl.when(off_scale)
        .then(pl.coalesce(pl.when(off).then(named) for off, named in offs))
        .otherwise(pl.col("field")),
    )


def _withdrawn_versions(
    staged: pl.DataFrame, schema: Mapping[str, pl.DataType], *, set_aside: pl.Expr, until: datetime
) -> pl.DataFrame:
    """Tombstones (`schema`) of the older versions of the `staged` rows `set_aside` picks (rows
    the extract set aside): named and dated by the version read, so every version older than it
    goes (`loop.ledger.deleted`, `assets.sources.withdraw_deleted`) and nothing newer. A row
    read again later (dated after `until`) is left to the window that holds its time."""
    off = staged.filter(set_aside & (pl.col("submitted_at") <= until))
    columns = [c for c in schema if c != "deleted_at"]
    return off.select(*columns, deleted_at=pl.col("updated_at")).cast(pl.Schema(schema))


def _off_scale() -> pl.Expr:
    """The staged rows quarantined as `outside_scale`."""
    return (pl.col("reason") == OUTSIDE_SCALE).fill_null(False)


def _set_aside_otherwise(kept: pl.DataFrame, key: str) -> pl.Expr:
    """The staged rows the extract set aside (those `kept` does not hold by `key`) for a reason
    other than a scale's; one of a project name the ingest refuses is left out, as its
    tombstones are."""
    return (
        ~pl.col(key).is_in(kept.get_column(key).implode())
        & ~_off_scale()
        & safe_project(pl.col("project"))
    )


def _answer_cells(kind: str, answer: str | None) -> tuple[dict[str, Any], str | None]:
    """The canonical cells of one row's JSON `answer` (column -> value, as `values.normalize`
    takes them) and the error of an answer that is no shape of `kind`."""
    if answer is not None and len(answer) > MAX_RECORD_BYTES:
        return {}, f"answer: {len(answer):,} characters, more than a record may hold"
    try:
        value = None if answer is None else json.loads(answer)
    except (ValueError, RecursionError) as error:
        # jsonb holds what Python's reader refuses: numbers of thousands of digits, arrays
        # nested deeper than its recursion limit. One such row is quarantined, not the extract
        # failed (every later run would read it again and fail the same way).
        return {}, f"answer: JSON this reader cannot take ({error!s:.80}), got {answer!r:.80}"
    if isinstance(value, dict):
        return value, None
    if kind == "pairwise":
        return {}, f"answer: expected an object {{left, right, winner}}, got {value!r:.80}"
    if kind in VALUE_COLUMNS:
        return {VALUE_COLUMNS[kind][0]: value}, None
    return {}, None


def _box_context(cells: dict[str, Any]) -> tuple[dict[str, Any], str | None, str | None]:
    """Where a boxes answer is measured (`coordinates`, `image_width`, `image_height`), and the
    error and field of one that is not a unit or a positive size."""
    found = {name: cells.get(name) for name in _BOX_CONTEXT}
    unit = found["coordinates"]
    if unit is not None and unit not in COORDINATE_UNITS:
        return (
            {},
            f"coordinates: expected one of {', '.join(COORDINATE_UNITS)}, got {unit!r:.80}",
            "coordinates",
        )
    for name in ("image_width", "image_height"):
        if found[name] is None:
            continue
        size = finite(found[name])
        if size is None or not size > 0:
            return {}, f"{name}: expected a positive number, got {found[name]!r:.80}", name
        found[name] = size
    return found, None, None


def _kind_values(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (with `kind` and `answer`) staged with each kind's canonical value columns, as a
    file's rows are (`tables._value_rows`): a row whose answer is not its kind's shape carries
    `label_error` and the canonical field it fails in `error_field`, which the validation
    quarantines. Only the rows of another kind than categorical are parsed, one by one: a
    JSON value per row, where the categorical rows (the bulk) stay columnar."""
    frame = frame.with_columns(kind=pl.col("kind").fill_null(DEFAULT_KIND)).with_row_index("_row")
    others = frame.filter(pl.col("kind") != DEFAULT_KIND)
    cells: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    for row_kind, answer in others.select("kind", "answer").iter_rows():
        found, failure = _answer_cells(row_kind, answer)
        failed_field = "answer" if failure else None
        context: dict[str, Any] = {}
        if failure is None and row_kind == "boxes":
            context, failure, failed_field = _box_context(found)
        cells.append(found)
        extra.append({**context, "_failure": failure, "_failed_field": failed_field})
    values = _value_rows(cells, others["kind"].to_list(), text_cells=False)
    schema = {**_BOX_CONTEXT, "_failure": pl.String(), "_failed_field": pl.String()}
    parsed = pl.concat(
        [others.select("_row"), values.drop("kind"), pl.DataFrame(extra, schema=schema)],
        how="horizontal",
    ).with_columns(
        label_error=pl.coalesce("_failure", "label_error"),
        error_field=pl.coalesce("_failed_field", "error_field"),
        error_reason=pl.when(pl.col("_failure").is_null()).then("error_reason"),
    )
    parsed = parsed.drop("_failure", "_failed_field")
    if others.height == 0:
        # All categorical (the bulk of a large extract): no join, only the empty columns.
        nulls = [
            pl.lit(None, dtype).alias(name) for name, dtype in parsed.drop("_row").schema.items()
        ]
        return frame.drop("_row", "answer").with_columns(nulls)
    # Quarantined as a file's oversized record is, whatever its kind.
    oversized = (
        pl.col("reason").is_null()
        & (pl.col("kind") != DEFAULT_KIND)
        & (pl.col("answer").str.len_bytes() > MAX_RECORD_BYTES).fill_null(False)
    )
    return (
        frame.join(parsed, on="_row", how="left", maintain_order="left")
        .with_columns(
            reason=pl.when(oversized).then(pl.lit(OVERSIZED_FIELD)).otherwise("reason"),
            field=pl.when(oversized).then(pl.lit("answer")).otherwise("field"),
        )
        .drop("_row", "answer")
    )


def _ordered(read: pl.DataFrame, tombstones: pl.DataFrame, key: str) -> pl.DataFrame:
    """`tombstones` less those of a key the window's rows (`read`, as read, the overlap's
    rows already `seen` included) hold: every tombstone of the window committed before its
    `until` was probed and the rows were read after, so a row read was inserted again after
    its deletion committed, whatever its stamp."""
    if read.height == 0 or tombstones.height == 0:
        return tombstones
    present = read.get_column(key).cast(pl.String).implode()
    return tombstones.filter(~pl.col(key).is_in(present))


def _without_reinserted(
    dsn: str, tombstones: dict[str, pl.DataFrame], *, until: datetime, schema: str
) -> dict[str, pl.DataFrame]:
    """`tombstones` less those of a key the database holds now at `updated_at <= until`: a
    row there now was inserted after the deletion committed (before `until` was probed), and
    stamped at or below `until` it is in this window's read or an earlier one's, so the
    version stored is that row, whatever the versions' stamps (a re-insert whose content
    equals the deleted version's leaves the live ledger's older stamp in place). One keyed
    look-up, only when tombstones are left."""
    if all(frame.height == 0 for frame in tombstones.values()):
        return tombstones
    kept = dict(tombstones)
    with connect(dsn, autocommit=True) as connection:
        for table, frame in tombstones.items():
            if frame.height == 0:
                continue
            rows = DELETION_TABLES[table]
            key = EXTRACT_KEYS[rows]
            keys = frame.get_column(key).unique().to_list()
            present = connection.execute(
                f"SELECT {_quoted(key)} FROM {_quoted(schema)}.{_quoted(rows)} "
                f"WHERE {_quoted(key)} = ANY(%s) AND updated_at <= %s",
                (keys, until),
            ).fetchall()
            if present:
                held = pl.Series([value for (value,) in present], dtype=pl.String)
                kept[table] = frame.filter(~pl.col(key).is_in(held.implode()))
    return kept


def _normalize(frame: pl.DataFrame) -> pl.DataFrame:
    casts = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            casts.append(pl.col(name).dt.convert_time_zone("UTC").cast(UTC_TIMESTAMP))
        elif dtype == pl.String or name in (
            "judgment_id",
            "task_id",
            "annotator_id",
            "label",
            "project",
            *KIND_ANSWER_COLUMNS,
        ):
            casts.append(pl.col(name).cast(pl.String))
    return frame.with_columns(casts) if casts else frame


def _read_copy(
    dsn: str,
    table: str,
    *,
    schema: str,
    parameters: tuple[datetime | None, ...],
    kinds: bool = False,
) -> pl.DataFrame:
    from psycopg import sql

    columns = _read_columns(table, kinds=kinds)
    timestamps = {"submitted_at", "created_at", "updated_at"}
    # COPY cannot take bind parameters; the window is passed as psycopg-quoted literals
    # (sql.Literal, escaped by the driver), never by string formatting of user text.
    window = _window(placeholder="{{}}", resubmitted=len(parameters) > 2)
    select = sql.SQL("SELECT {} FROM {}.{} WHERE " + window).format(
        sql.SQL(", ").join(
            sql.SQL("(extract(epoch FROM {}) * 1000000)::bigint AS {}").format(
                sql.Identifier(c), sql.Identifier(c)
            )
            if c in timestamps
            else (
                sql.SQL("array_to_json({})::text AS {}").format(
                    sql.Identifier(c), sql.Identifier(c)
                )
                if c == "label_set"
                else (
                    sql.SQL("{}::text AS {}").format(sql.Identifier(c), sql.Identifier(c))
                    if c == "answer"
                    else sql.Identifier(c)
                )
            )
            for c in columns
        ),
        sql.Identifier(schema),
        sql.Identifier(table),
        *(sql.Literal(value) for value in parameters),
    )
    buffer = io.BytesIO()
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(select)
    with (
        connect(dsn) as connection,
        connection.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        for block in copy:
            buffer.write(block)
    overrides: dict[str, pl.DataType] = {
        c: pl.Int64() if c in timestamps else pl.String() for c in columns
    }
    if "duration_s" in columns:
        overrides["duration_s"] = pl.Float64()
    if buffer.tell() == 0:
        frame = pl.DataFrame(schema=overrides)
    else:
        frame = pl.read_csv(
            buffer.getvalue(),
            has_header=False,
            new_columns=list(columns),
            schema_overrides=overrides,
        )
    return frame.with_columns(
        [
            pl.col(c).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            for c in columns
            if c in timestamps
        ]
    )


def _read_fetch(
    dsn: str,
    table: str,
    *,
    schema: str,
    parameters: tuple[datetime | None, ...],
    kinds: bool = False,
) -> pl.DataFrame:
    """The baseline a user would otherwise write: fetch rows, build columns in Python."""
    columns = _read_columns(table, kinds=kinds)
    select = _select(table, schema, placeholder="%s", resubmitted=len(parameters) > 2, kinds=kinds)
    with connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(select, parameters)
        rows = cursor.fetchall()
    if not rows:
        # Nothing to infer types from: the types the rows would have had.
        timestamps = {"submitted_at", "created_at", "updated_at"}
        return pl.DataFrame(
            schema={
                c: UTC_TIMESTAMP
                if c in timestamps
                else pl.Float64()
                if c == "duration_s"
                else pl.List(pl.String())
                if c == "label_set"
                else pl.String()
                for c in columns
            }
        )
    return pl.DataFrame(rows, schema=list(columns), orient="row", infer_schema_length=None)


def slice_end(
    dsn: str, *, since: datetime, until: datetime, max_rows: int, schema: str = "public"
) -> datetime | None:
    """The `updated_at` of the `max_rows`-th change after `since` (a judgment, task or gold
    label stamped in `(since, until]`, or a tombstone deleted then), or None when the window
    holds no more. A window ending there holds at most `max_rows` changes after `since` plus
    those stamped at that same moment: a slice ends on a timestamp, never between two rows
    sharing it, so the overlap and `seen` (by key and stamp) dedupe across slices as across
    any two windows. Each table's first `max_rows` stamps come from its `updated_at` (or
    `deleted_at`) index."""
    quoted = _quoted(validate_identifier(schema))
    columns = {
        **{table: "updated_at" for table in ("judgments", "tasks", "gold_labels")},
        **{table: "deleted_at" for table in DELETION_TABLES},
    }
    with connect(dsn, autocommit=True) as connection:
        readable = [
            table
            for table in columns
            if (
                row := connection.execute(
                    "SELECT coalesce(has_table_privilege(to_regclass(%s), 'SELECT'), false)",
                    (f"{quoted}.{_quoted(table)}",),
                ).fetchone()
            )
            and row[0]
        ]
        parts = " UNION ALL ".join(
            f"(SELECT {columns[t]} AS stamp FROM {quoted}.{_quoted(t)} "
            f"WHERE {columns[t]} > %(since)s AND {columns[t]} <= %(until)s "
            f"ORDER BY {columns[t]} LIMIT %(rows)s)"
            for t in readable
        )
        row = connection.execute(
            f"SELECT stamp FROM ({parts}) AS changes ORDER BY stamp OFFSET %(skip)s LIMIT 1",
            {"since": since, "until": until, "rows": max_rows, "skip": max_rows - 1},
        ).fetchone()
    return None if row is None else row[0].astimezone(UTC)


def extract_since(
    dsn: str,
    *,
    since: datetime,
    until: datetime | None = None,
    schema: str = "public",
    method: str = "adbc",
    now: datetime | None = None,
    overlap: timedelta = DEFAULT_OVERLAP,
    lag: timedelta = DEFAULT_LAG,
    seen: pl.DataFrame | None = None,
    max_rows: int | None = None,
) -> DatabaseExtract:
    """Judgments, tasks and gold labels changed in `(since, until]`, validated like a file.

    `until` defaults to `safe_upper_bound` (see the module docstring); the read starts
    `overlap` before `since`, less the rows in `seen` (the previous extract's `seen`).
    The project's label set comes from `projects.label_set` (empty: any label), its rating
    scale from `projects.scale` (migration 10; `project_scales`): a numeric judgment or gold
    label off it is quarantined as `outside_scale`, and an edit that moved one off it is handed
    on as the withdrawal of the versions read before (`off_scale`). Rows keep an
    extra `updated_at` column for `merge_partition`. The window's tombstones come with them,
    ordered against them by time (see the module docstring).

    With `max_rows`, a window holding more changes after `since` ends earlier, at
    `slice_end` (`capped`): the rows, the tombstones and the next `seen` all stop at that
    `until`, and the next extract, from it, reads the rest. A backlog is read in slices of
    about `max_rows` rows, each bounded in memory, none read twice or skipped.
    """
    until = max(until or safe_upper_bound(dsn, lag=lag), since)
    capped = False
    if max_rows is not None and until > since:
        end = slice_end(dsn, since=since, until=until, max_rows=max_rows, schema=schema)
        if end is not None and end < until:
            until, capped = end, True
    start = since - overlap
    prior = pl.DataFrame(schema=SEEN) if seen is None else seen.cast(pl.Schema(SEEN))
    kinds = has_kind_answers(dsn, schema=schema)
    read_window = functools.partial(
        read_table_since, dsn, since=start, until=until, schema=schema, method=method
    )
    judgments = read_window("judgments", submitted_after=since, kinds=kinds)
    tasks = read_window("tasks")
    gold = read_window("gold_labels", kinds=kinds)
    if not kinds:
        absent = [pl.lit(None, pl.String).alias(c) for c in KIND_ANSWER_COLUMNS]
        judgments, gold = judgments.with_columns(absent), gold.with_columns(absent)
    read = {"judgments": judgments, "tasks": tasks, "gold_labels": gold}
    found = read_deletions_since(dsn, since=start, until=until, schema=schema)
    tracked = set(found) == set(DELETION_TABLES)
    tombstones = {
        table: found.get(table, pl.DataFrame(schema=columns))
        for table, columns in TOMBSTONE_COLUMNS.items()
    }
    recent = [prior]
    raw = dict(read)
    for table, frame in read.items():
        read[table] = _unseen(frame, table=table, seen=prior)
        # A judgment submitted after `until` may be quarantined as "in the future": it is not
        # recorded, so the overlap reads it again once the clock has caught up.
        kept = frame if table != "judgments" else frame.filter(pl.col("submitted_at") <= until)
        recent.append(
            kept.select(
                table=pl.lit(table, pl.String),
                key=pl.col(EXTRACT_KEYS[table]).cast(pl.String),
                updated_at="updated_at",
            ).cast(pl.Schema(SEEN))
        )
    for table, frame in tombstones.items():
        key = EXTRACT_KEYS[DELETION_TABLES[table]]
        tombstones[table] = _unseen(
            frame.rename({"updated_at": "_version", "deleted_at": "updated_at"}),
            table=table,
            seen=prior,
            key=key,
        ).rename({"updated_at": "deleted_at", "_version": "updated_at"})
        recent.append(
            frame.select(
                table=pl.lit(table, pl.String), key=pl.col(key), updated_at="deleted_at"
            ).cast(pl.Schema(SEEN))
        )
        tombstones[table] = _ordered(raw[DELETION_TABLES[table]], tombstones[table], key)
    tombstones = _without_reinserted(dsn, tombstones, until=until, schema=schema)
    judgments, tasks, gold = read["judgments"], read["tasks"], read["gold_labels"]
    safe = safe_project(pl.col("project"))
    deletions = tombstones["judgment_deletions"].filter(safe)
    gold_deletions = tombstones["gold_label_deletions"].filter(safe)
    ignored = sum(
        frame.get_column(EXTRACT_KEYS[DELETION_TABLES[table]]).n_unique()
        - frame.filter(safe).get_column(EXTRACT_KEYS[DELETION_TABLES[table]]).n_unique()
        for table, frame in tombstones.items()
    )
    next_seen = (
        pl.concat(recent)
        .filter(pl.col("updated_at") > until - overlap)
        .unique(["table", "key", "updated_at"])
        .sort("table", "key", "updated_at")
    )
    projects = read_table_since(
        dsn,
        "projects",
        since=datetime(1970, 1, 1, tzinfo=UTC),
        until=datetime(9999, 1, 1, tzinfo=UTC),
        schema=schema,
        method="adbc" if method == "adbc" else "fetch",
    )
    label_set = _label_union(projects, judgments)
    scales = project_scales(dsn, schema=schema)
    source_file = f"postgres:{schema}.judgments"
    staged = _kind_values(
        judgments.with_columns(
            source_line=pl.lit(None, pl.Int64),
            reason=pl.lit(None, pl.String),
            field=pl.lit(None, pl.String),
            record=pl.struct(judgments.columns),
        )
    )
    staged_gold = _kind_values(
        gold.with_columns(
            submitted_at=pl.col("updated_at"),
            source_line=pl.lit(None, pl.Int64),
            reason=pl.lit(None, pl.String),
            field=pl.lit(None, pl.String),
            record=pl.struct(gold.columns),
        )
    )
    staged_tasks = tasks.select(
        "task_id",
        "project",
        "payload",
        created_at=pl.col("created_at").dt.to_string("%Y-%m-%dT%H:%M:%S%.f+00:00"),
        source_line=pl.lit(None, pl.Int64),
    )
    staged = _outside_scales(_per_project_labels(staged, projects), scales)
    staged_gold = _outside_scales(staged_gold, scales)
    result = assemble(
        staged_judgments=staged,
        staged_gold=staged_gold,
        staged_tasks=staged_tasks,
        label_set=label_set,
        now=now,
        max_field_bytes=1 << 20,
        source=SOURCE,
        source_file=source_file,
    )
    # Carry updated_at through to the canonical frames for idempotent merges.
    versions = judgments.select("judgment_id", "updated_at")
    judged = result.judgments.join(versions, on="judgment_id", how="left")
    gold_versions = gold.select("task_id", "updated_at").rename({"updated_at": "_version"})
    golden = result.gold.join(gold_versions, on="task_id", how="left").drop("_version")
    # One source file for the whole extract named every bad row a judgment: each names its own
    # table, so a bad gold label reads `postgres:<schema>.gold_labels`.
    quarantine = result.quarantine.with_columns(
        source_file=pl.concat_str(pl.lit(f"postgres:{schema}."), pl.col("table"))
    )
    result = IngestResult(judged, result.tasks, golden, quarantine, result.rows_read, result.files)
    # A quarantined row's `raw` is its staged record as text, so the rows read again are found
    # by that text: the record holds `submitted_at`, so no row of the window shares it.
    ahead = staged.filter(pl.col("submitted_at") > until)
    read_again = (
        (pl.col("table") == "judgments")
        & pl.col("raw").is_in(ahead.select(raw=encode_record(ahead))["raw"].implode())
    ).fill_null(False)
    flags = quarantine.select(read_again=read_again)["read_again"]
    return DatabaseExtract(
        result=result,
        since=since,
        until=until,
        seen=next_seen,
        read_again=flags,
        deletions=deletions,
        gold_deletions=gold_deletions,
        ignored_deletions=ignored,
        deletions_tracked=tracked,
        kind_answers=kinds,
        capped=capped,
        scales=scales,
        off_scale=_withdrawn_versions(staged, DELETIONS, set_aside=_off_scale(), until=until),
        off_scale_gold=_withdrawn_versions(
            staged_gold, GOLD_DELETIONS, set_aside=_off_scale(), until=until
        ),
        set_aside=_withdrawn_versions(
            staged,
            DELETIONS,
            set_aside=_set_aside_otherwise(result.judgments, "judgment_id"),
            until=until,
        ),
        set_aside_gold=_withdrawn_versions(
            staged_gold,
            GOLD_DELETIONS,
            set_aside=_set_aside_otherwise(result.gold, "task_id"),
            until=until,
        ),
    )


def _unseen(
    frame: pl.DataFrame, *, table: str, seen: pl.DataFrame, key: str | None = None
) -> pl.DataFrame:
    """`frame` without the rows `seen` already holds at the same `updated_at`."""
    prior = seen.filter(pl.col("table") == table)
    if prior.height == 0 or frame.height == 0:
        return frame
    key = key or EXTRACT_KEYS[table]
    prior = prior.select(pl.col("key").alias(key), "updated_at")
    return frame.join(prior, on=[key, "updated_at"], how="anti", maintain_order="left")


def _label_union(projects: pl.DataFrame, judgments: pl.DataFrame) -> list[str] | None:
    """One label set per extract: only when every project in it declares one."""
    if projects.height == 0 or judgments.height == 0:
        return None
    declared = {
        row["project"]: list(row["label_set"] or [])
        for row in projects.select("project", "label_set").iter_rows(named=True)
        if isinstance(row["label_set"], list)
    }
    present = judgments.get_column("project").unique().to_list()
    if len(present) == 1 and declared.get(present[0]):
        return declared[present[0]]
    return None


def _per_project_labels(staged: pl.DataFrame, projects: pl.DataFrame) -> pl.DataFrame:
    """Quarantine labels outside their own project's set (several projects per extract): a
    categorical `label`, and any of a multilabel judgment's `labels`."""
    if projects.height == 0 or "label_set" not in projects.columns:
        return staged
    sets = projects.select("project", _labels=pl.col("label_set").cast(pl.List(pl.String)))
    joined = _spelled_per_project(staged.join(sets, on="project", how="left"), sets)
    declared = pl.col("_labels").list.len() > 0
    unknown_label = (
        declared
        & (pl.col("kind") == DEFAULT_KIND)
        & pl.col("label").is_not_null()
        & ~pl.col("_labels").list.contains(pl.col("label")).fill_null(False)
    )
    unknown_labels = (
        declared
        & (pl.col("kind") == "multilabel")
        & (pl.col("labels").list.set_difference(pl.col("_labels")).list.len() > 0).fill_null(False)
    )
    unknown = unknown_label | unknown_labels
    return joined.with_columns(
        reason=pl.when(pl.col("reason").is_null() & unknown)
        .then(pl.lit("unknown_label"))
        .otherwise(pl.col("reason")),
        field=pl.when(pl.col("reason").is_null() & unknown_label)
        .then(pl.lit("label"))
        .when(pl.col("reason").is_null() & unknown_labels)
        .then(pl.lit("labels"))
        .otherwise(pl.col("field")),
    ).drop("_labels")


def _spelled_per_project(joined: pl.DataFrame, sets: pl.DataFrame) -> pl.DataFrame:
    """`joined` with each categorical `label` and multilabel `labels` spelled as its own
    project's set spells it (`spelled_as_label_set`: "1.0" is "1" where the set holds 1)."""
    present = sets.filter(pl.col("project").is_in(joined.get_column("project").unique().implode()))
    for project, labels in present.iter_rows():
        if not labels:
            continue
        mine = pl.col("project") == project
        joined = spelled_as_label_set(
            joined,
            labels,
            categorical=mine & (pl.col("kind") == DEFAULT_KIND),
            multilabel=mine & (pl.col("kind") == "multilabel"),
        )
    return joined


def partition_by_day(
    frame: pl.DataFrame, *, column: str = "submitted_at", name: str = "judgments"
) -> dict[date, pl.DataFrame]:
    """Split rows by the UTC day of `column`: a late row goes to its own day, not today's.

    A row with no `column` has no day: refused with a message naming the table (`name`) and the
    column, rather than staged under a day of None.
    """
    if frame.height == 0:
        return {}
    missing = frame.get_column(column).null_count()
    if missing:
        raise ValueError(f"{name}: {missing} row(s) with no {column}: no day to stage them in")
    keyed = frame.with_columns(_day=pl.col(column).dt.date())
    return {
        key[0]: part.drop("_day")
        for key, part in keyed.partition_by("_day", as_dict=True, maintain_order=True).items()
    }


def merge_partition(
    existing: pl.DataFrame | None,
    incoming: pl.DataFrame,
    *,
    key: Sequence[str] = ("judgment_id",),
    version: str = "updated_at",
) -> pl.DataFrame:
    """Upsert `incoming` into a day's `existing` rows: per key the newest `version` wins.

    Idempotent: merging the same rows again returns the same frame (sorted by key).
    """
    frames = (
        [incoming]
        if existing is None or existing.height == 0
        else [existing, incoming.select(existing.columns)]
    )
    stacked = pl.concat(frames, how="vertical_relaxed").with_row_index("_arrival")
    order = [version, "_arrival"] if version in stacked.columns else ["_arrival"]
    return (
        stacked.sort(order)
        .unique(list(key), keep="last", maintain_order=True)
        .drop("_arrival")
        .sort(list(key))
    )


__all__ = [
    "MIGRATIONS_TABLE",
    "MIGRATION_LOCK_TIMEOUT",
    "OPTIONAL_MIGRATIONS",
    "DatabaseExtract",
    "MigrationFailed",
    "MigrationRun",
    "SkippedMigration",
    "applied_migrations",
    "apply_schema",
    "extract_since",
    "has_kind_answers",
    "merge_partition",
    "migrate_schema",
    "migration_files",
    "partition_by_day",
    "project_scales",
    "read_deletions_since",
    "read_table_since",
    "safe_upper_bound",
    "seed_database",
    "slice_end",
    "validate_identifier",
]
