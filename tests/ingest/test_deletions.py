"""Hard deletes in the annotation DB on the real local Postgres: the tombstones migration 6
keeps, read by the extract in the same safe window as the rows, ordered against a re-insert
of the same key, read once across overlapping windows, and removing a staged row only when
newer than it."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import polars as pl
import psycopg
import pytest
from click.testing import CliRunner
from dagster import build_asset_context

from annotation_pipelines.cli import main
from annotation_pipelines.ingest.connection import Timeouts, conninfo
from annotation_pipelines.ingest.postgres import (
    DELETIONS,
    MIGRATION_LOCK_TIMEOUT,
    MigrationFailed,
    applied_migrations,
    apply_schema,
    extract_since,
    merge_partition,
    migration_files,
)
from assets.sources.assets import (
    annotation_db_changes,
    staging_prefix,
    withdraw_counted,
    withdraw_deleted,
)
from resources.annotation_db import AnnotationDatabase
from resources.lake import LocalLake
from tests.services import fresh_database, migrated_before, tool_and_pipelines_roles

pytestmark = pytest.mark.services

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INSERT = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, submitted_at, "
    "duration_s) VALUES (%s, %s, %s, %s, %s, %s, 1.0)"
)
WHEN = datetime(2026, 11, 2, 10, tzinfo=UTC)
ALL_MIGRATIONS = {version for version, _ in migration_files()}


def run(dsn: str, schema: str, *statements: tuple[str, tuple]) -> None:
    """The statements in one transaction, committed."""
    with psycopg.connect(dsn) as connection:
        connection.execute(f"SET search_path TO {schema}")
        for statement, parameters in statements:
            connection.execute(statement, parameters)


def insert(*row: object) -> tuple[str, tuple]:
    return INSERT, row


def delete(judgment_id: str) -> tuple[str, tuple]:
    return "DELETE FROM judgments WHERE judgment_id = %s", (judgment_id,)


def settle() -> None:
    # Commit stamps are transaction starts; a few ms apart keep two commits' stamps apart.
    time.sleep(0.01)


def test_a_deletion_leaves_a_tombstone_stamped_like_updated_at(postgres_dsn):
    """One bulk DELETE writes a tombstone per row, with the row's key and day and the deleting
    transaction's start; while that transaction is open, the extract's window ends before it."""
    schema = "deletion_stamp"
    apply_schema(postgres_dsn, schema=schema)
    run(
        postgres_dsn,
        schema,
        insert("j1", "t1", "p", "a1", "cat", WHEN),
        insert("j2", "t1", "p", "a2", "dog", WHEN),
        ("INSERT INTO gold_labels (task_id, project, label) VALUES ('t1', 'p', 'cat')", ()),
    )
    first = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert sorted(first.result.judgments["judgment_id"]) == ["j1", "j2"]
    settle()
    deleter = psycopg.connect(postgres_dsn)
    try:
        deleter.execute(f"SET search_path TO {schema}")
        started = deleter.execute("SELECT now()").fetchone()
        deleter.execute("DELETE FROM judgments WHERE task_id = 't1'")
        deleter.execute("DELETE FROM gold_labels")
        settle()
        during = extract_since(postgres_dsn, since=first.watermark, schema=schema, seen=first.seen)
        deleter.commit()
    finally:
        deleter.close()
    assert started is not None
    assert during.until < started[0] and during.deletions.height == 0
    with psycopg.connect(postgres_dsn) as connection:
        rows = connection.execute(
            f"SELECT judgment_id, submitted_at, deleted_at FROM {schema}.judgment_deletions "
            "ORDER BY judgment_id"
        ).fetchall()
    assert rows == [("j1", WHEN, started[0]), ("j2", WHEN, started[0])]

    after = extract_since(postgres_dsn, since=during.watermark, schema=schema, seen=during.seen)
    assert sorted(after.deletions["judgment_id"]) == ["j1", "j2"]
    assert after.deletions["submitted_at"].to_list() == [WHEN, WHEN]
    assert after.gold_deletions.select("task_id", "label").rows() == [("t1", "cat")]
    assert after.result.rows_read == 0
    # The overlap re-reads the tombstones, less those `seen` holds: read once.
    again = extract_since(postgres_dsn, since=after.watermark, schema=schema, seen=after.seen)
    assert again.deletions.height == 0 and again.gold_deletions.height == 0
    unseen = extract_since(postgres_dsn, since=after.watermark, schema=schema)
    assert unseen.deletions.height == 2


def test_a_key_deleted_and_inserted_again_is_present(postgres_dsn, tmp_path):
    """Order by time: a row inserted again after its deletion, in the same transaction (the
    same stamp) or a later one, is handed on and its tombstone is not; a deletion after the
    re-insert wins again."""
    schema = "deletion_reinsert"
    apply_schema(postgres_dsn, schema=schema)
    run(
        postgres_dsn,
        schema,
        insert("same", "t1", "p", "a1", "cat", WHEN),
        insert("later", "t1", "p", "a2", "cat", WHEN),
        insert("gone", "t1", "p", "a3", "cat", WHEN),
    )
    first = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    settle()
    run(postgres_dsn, schema, delete("same"), insert("same", "t1", "p", "a1", "dog", WHEN))
    settle()
    run(postgres_dsn, schema, delete("later"))
    settle()
    run(postgres_dsn, schema, insert("later", "t1", "p", "a2", "dog", WHEN))
    settle()
    run(postgres_dsn, schema, delete("gone"))
    second = extract_since(postgres_dsn, since=first.watermark, schema=schema, seen=first.seen)
    judged = dict(second.result.judgments.select("judgment_id", "label").iter_rows())
    assert judged == {"same": "dog", "later": "dog"}
    assert second.deletions["judgment_id"].to_list() == ["gone"]

    # Across windows: the tombstone in one, the re-insert in the next.
    settle()
    run(postgres_dsn, schema, delete("later"))
    third = extract_since(postgres_dsn, since=second.watermark, schema=schema, seen=second.seen)
    assert third.deletions["judgment_id"].to_list() == ["later"]
    settle()
    run(postgres_dsn, schema, insert("later", "t1", "p", "a2", "neutral", WHEN))
    fourth = extract_since(postgres_dsn, since=third.watermark, schema=schema, seen=third.seen)
    assert fourth.deletions.height == 0
    assert fourth.result.judgments["label"].to_list() == ["neutral"]

    # The staged day, extract after extract: deleted once, present again after.
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    key = "staging/judgments/day=2026-11-02/annotation_db.parquet"
    labels = []
    for extract in (first, second, third, fourth):
        existing = lake.get_frame(key) if lake.exists(key) else None
        if extract.result.judgments.height:
            lake.put_frame(key, merge_partition(existing, extract.result.judgments))
        withdraw_deleted(lake, extract)
        staged = lake.get_frame(key)
        labels.append(dict(staged.select("judgment_id", "label").iter_rows()))
    assert labels == [
        {"gone": "cat", "later": "cat", "same": "cat"},
        {"later": "dog", "same": "dog"},
        {"same": "dog"},
        {"later": "neutral", "same": "dog"},
    ]


def test_a_deletion_of_a_row_never_extracted_changes_nothing(postgres_dsn, tmp_path):
    """A row inserted and deleted between two extracts: its tombstone is handed on, removes
    nothing staged, and is no error; a tombstone of a project name the ingest refuses is left
    out and counted."""
    schema = "deletion_unknown"
    apply_schema(postgres_dsn, schema=schema)
    run(postgres_dsn, schema, insert("kept", "t1", "p", "a1", "cat", WHEN))
    first = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    key = "staging/judgments/day=2026-11-02/annotation_db.parquet"
    lake.put_frame(key, merge_partition(None, first.result.judgments))
    before = lake.get(key)
    settle()
    run(postgres_dsn, schema, insert("brief", "t1", "p", "a2", "dog", WHEN))
    run(postgres_dsn, schema, insert("odd", "t1", "../x", "a2", "dog", WHEN))
    settle()
    run(postgres_dsn, schema, delete("brief"), delete("odd"))
    second = extract_since(postgres_dsn, since=first.watermark, schema=schema, seen=first.seen)
    assert second.deletions["judgment_id"].to_list() == ["brief"]
    assert second.ignored_deletions == 1
    assert withdraw_deleted(lake, second) == (0, {"2026-11-02"})
    assert lake.get(key) == before


def test_an_extract_of_a_database_before_migration_6_reads_no_tombstones(postgres_dsn):
    schema = "deletion_premigration"
    apply_schema(postgres_dsn, schema=schema)
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"SET search_path TO {schema}")
        connection.execute("DROP TABLE judgment_deletions, gold_label_deletions CASCADE")
        connection.execute("DROP TRIGGER judgments_deleted ON judgments")
        connection.execute("DROP TRIGGER gold_labels_deleted ON gold_labels")
        connection.execute(INSERT, ("j1", "t1", "p", "a1", "cat", WHEN))
        connection.execute("DELETE FROM annotation_pipelines_migrations WHERE version = 6")
    extract = extract_since(postgres_dsn, since=EPOCH, schema=schema, until=datetime.now(UTC))
    assert extract.deletions.height == 0 and extract.result.rows_read == 1
    assert extract.deletions.schema == pl.Schema(DELETIONS)
    # The extract says so, for the daily asset to warn and report it.
    assert not extract.deletions_tracked

    # `annotation-pipelines migrate` applies what is missing, once, and says which.
    def migrate() -> dict[str, object]:
        result = CliRunner().invoke(main, ["migrate", "--dsn", postgres_dsn, "--schema", schema])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    latest = migration_files()[-1][0]
    assert migrate() == {"schema": schema, "applied": [6], "current": latest}
    assert migrate() == {"schema": schema, "applied": [], "current": latest}
    run(postgres_dsn, schema, delete("j1"))
    extract = extract_since(postgres_dsn, since=EPOCH, schema=schema, until=datetime.now(UTC))
    assert extract.deletions_tracked and extract.deletions["judgment_id"].to_list() == ["j1"]


def test_migrate_names_a_bad_schema_and_an_unreachable_database(postgres_dsn):
    bad = CliRunner().invoke(main, ["migrate", "--dsn", postgres_dsn, "--schema", "a;b"])
    assert bad.exit_code == 2 and "invalid SQL identifier" in bad.output, bad.output
    closed = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"
    down = CliRunner().invoke(main, ["migrate", "--dsn", closed])
    assert down.exit_code == 1 and "127.0.0.1" in down.output, down.output


def test_migrate_takes_its_dsn_from_the_environment_and_says_so(postgres_dsn):
    runner = CliRunner()
    schema = "migrate_from_env"
    taken = runner.invoke(
        main, ["migrate", "--schema", schema], env={"ANNOTATION_DB_DSN": postgres_dsn}
    )
    assert taken.exit_code == 0, taken.output
    assert json.loads(taken.output)["schema"] == schema
    unset = runner.invoke(main, ["migrate"], env={"ANNOTATION_DB_DSN": None})
    assert unset.exit_code == 2
    assert "--dsn" in unset.output and "ANNOTATION_DB_DSN" in unset.output, unset.output
    help_text = " ".join(runner.invoke(main, ["migrate", "--help"]).output.split())
    assert "ANNOTATION_DB_DSN" in help_text and "[required]" not in help_text, help_text


GOLD = "INSERT INTO gold_labels (task_id, project, label) VALUES (%s, 'p', %s)"


def _staged(lake: LocalLake, extract, key: str, gold_key: str) -> tuple[dict, dict]:
    """Stage one extract as the daily asset does (upsert, then withdraw); the staged labels."""
    for frame, at in ((extract.result.judgments, key), (extract.result.gold, gold_key)):
        if frame.height:
            existing = lake.get_frame(at) if lake.exists(at) else None
            lake.put_frame(
                at,
                merge_partition(
                    existing, frame, key=("judgment_id",) if at == key else ("task_id",)
                ),
            )
    withdraw_deleted(lake, extract)
    judged = dict(lake.get_frame(key).select("judgment_id", "label").iter_rows())
    gold = dict(lake.get_frame(gold_key).select("task_id", "label").iter_rows())
    return judged, gold


def _reinserted_by_an_earlier_transaction(
    dsn: str, schema: str, *, held: bool
) -> psycopg.Connection | None:
    """A transaction begun before a deletion inserts the freed key after the deletion commits:
    the row is stamped before its own tombstone. `held`: a third transaction, begun between
    the two, stays open (the extract's `until` falls between them) until the caller ends it."""
    importer = psycopg.connect(dsn)
    importer.execute(f"SET search_path TO {schema}")
    importer.execute("SELECT 1")
    settle()
    holder = psycopg.connect(dsn) if held else None
    if holder is not None:
        holder.execute("SELECT 1")
        settle()
    run(dsn, schema, delete("k"), ("DELETE FROM gold_labels WHERE task_id = 't1'", ()))
    importer.execute(*insert("k", "t1", "p", "a1", "dog", WHEN))
    importer.execute(GOLD, ("t1", "dog"))
    importer.commit()
    importer.close()
    return holder


def _key_and_gold(dsn: str, schema: str, tmp_path) -> tuple[object, LocalLake, str, str]:
    apply_schema(dsn, schema=schema)
    run(dsn, schema, insert("k", "t1", "p", "a1", "cat", WHEN), (GOLD, ("t1", "cat")))
    first = extract_since(dsn, since=EPOCH, schema=schema)
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    key = "staging/judgments/day=2026-11-02/annotation_db.parquet"
    gold_day = first.result.gold["updated_at"][0]
    gold_key = f"staging/gold_labels/day={gold_day:%Y-%m-%d}/annotation_db.parquet"
    assert _staged(lake, first, key, gold_key) == ({"k": "cat"}, {"t1": "cat"})
    settle()
    return first, lake, key, gold_key


def test_a_key_inserted_again_by_a_transaction_begun_before_its_deletion_stays(
    postgres_dsn, tmp_path
):
    """Within one window: the re-insert is stamped before its tombstone, but the window read it
    after the deletion committed, so the row is handed on, its tombstones are not, and the
    staged day and gold keep the new version; the next extract has nothing to add."""
    schema = "deletion_reinsert_early"
    first, lake, key, gold_key = _key_and_gold(postgres_dsn, schema, tmp_path)
    _reinserted_by_an_earlier_transaction(postgres_dsn, schema, held=False)
    with psycopg.connect(postgres_dsn) as connection:
        (row,) = connection.execute(f"SELECT updated_at FROM {schema}.judgments").fetchall()
        (death,) = connection.execute(
            f"SELECT deleted_at FROM {schema}.judgment_deletions"
        ).fetchall()
    assert row[0] < death[0]
    second = extract_since(postgres_dsn, since=first.watermark, schema=schema, seen=first.seen)
    assert second.result.judgments.select("judgment_id", "label").rows() == [("k", "dog")]
    assert second.result.gold.select("task_id", "label").rows() == [("t1", "dog")]
    assert second.deletions.height == 0 and second.gold_deletions.height == 0
    assert _staged(lake, second, key, gold_key) == ({"k": "dog"}, {"t1": "dog"})
    third = extract_since(postgres_dsn, since=second.watermark, schema=schema, seen=second.seen)
    assert third.result.rows_read == 0 and third.deletions.height == 0
    assert _staged(lake, third, key, gold_key) == ({"k": "dog"}, {"t1": "dog"})


@pytest.mark.parametrize("overlap_s", [300, 0])
def test_a_reinsert_read_in_an_earlier_window_than_its_tombstone_stays(
    postgres_dsn, tmp_path, overlap_s
):
    """Across windows: a transaction held open between the re-inserting one's start and the
    deletion's places `until` between them, so one window reads the re-insert and the next
    the tombstone (its overlap re-reading the row, or not: `overlap_s` 0, a transaction held
    longer than the overlap). The staged version is newer than the one deleted: it stays."""
    schema = f"deletion_reinsert_across_{overlap_s}"
    first, lake, key, gold_key = _key_and_gold(postgres_dsn, schema, tmp_path)
    holder = _reinserted_by_an_earlier_transaction(postgres_dsn, schema, held=True)
    assert holder is not None
    try:
        second = extract_since(postgres_dsn, since=first.watermark, schema=schema, seen=first.seen)
    finally:
        holder.commit()
        holder.close()
    with psycopg.connect(postgres_dsn) as connection:
        (row,) = connection.execute(f"SELECT updated_at FROM {schema}.judgments").fetchall()
        (death,) = connection.execute(
            f"SELECT deleted_at FROM {schema}.judgment_deletions"
        ).fetchall()
    assert row[0] <= second.until < death[0]
    assert second.result.judgments.select("judgment_id", "label").rows() == [("k", "dog")]
    assert second.deletions.height == 0
    assert _staged(lake, second, key, gold_key) == ({"k": "dog"}, {"t1": "dog"})
    third = extract_since(
        postgres_dsn,
        since=second.watermark,
        schema=schema,
        seen=second.seen,
        overlap=timedelta(seconds=overlap_s),
    )
    # Re-read in the overlap, or held by the DB at a stamp read before: not handed on.
    assert third.result.rows_read == 0
    assert third.deletions.height == 0 and third.gold_deletions.height == 0
    assert _staged(lake, third, key, gold_key) == ({"k": "dog"}, {"t1": "dog"})


def _migrate(dsn: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["migrate", "--dsn", dsn])
    return result.exit_code, result.output


def _tombstones(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as connection:
        return connection.execute("SELECT judgment_id FROM judgment_deletions").fetchall()


def test_migration_6_needs_a_role_that_may_trigger_on_the_tool_tables():
    """A pipelines' role that does not own the tool's tables skips migration 6 and says why
    (its extract then reports deletions untracked); `migrate` as that role fails naming it;
    applied by the owner, the tool's own role still deletes (the trigger writes as the
    migration's role), and the pipelines' role reads the tombstones once granted SELECT."""
    with (
        fresh_database("deletion_roles") as database,
        tool_and_pipelines_roles(database) as (
            tool,
            pipelines,
        ),
    ):
        owner = f"postgresql://postgres@127.0.0.1:5432/{database}"
        skipped, columns, scale = apply_schema(pipelines)
        assert (skipped.version, skipped.name, skipped.locked) == (6, "006_deletions", False)
        assert "permission denied for table judgments" in skipped.cause
        assert "GRANT TRIGGER ON judgments, gold_labels" in skipped.message()
        # Migration 9 adds columns to the same tables: skipped too, with its own consequence.
        assert (columns.version, columns.locked) == (9, False)
        assert "must be owner of table judgments" in columns.cause
        assert "as a role owning `judgments` and `gold_labels`" in columns.message()
        assert "kind_answers: false" in columns.message()
        # And migration 10, which adds a column to `projects`.
        assert (scale.version, scale.locked) == (10, False)
        assert "as a role owning `projects`" in scale.message()
        # The skipped ones only: the migrations between touch the pipelines' own tables.
        assert applied_migrations(pipelines) == ALL_MIGRATIONS - {6, 9, 10}
        # The migration is one transaction: none of its tables is left behind.
        run(tool, "public", insert("j1", "t1", "p", "a1", "cat", WHEN))
        extract = extract_since(pipelines, since=EPOCH, until=datetime.now(UTC))
        assert not extract.deletions_tracked and extract.result.rows_read == 1
        code, output = _migrate(pipelines)
        assert code == 1, output
        assert "migration 6 (006_deletions)" in output and "permission denied" in output

        code, output = _migrate(owner)
        assert code == 0 and json.loads(output)["applied"] == [6, 9, 10], output
        # Tombstone tables the pipelines' role may not read yet: untracked, no error.
        extract = extract_since(pipelines, since=EPOCH, until=datetime.now(UTC))
        assert not extract.deletions_tracked
        run(tool, "public", delete("j1"))
        assert _tombstones(owner) == [("j1",)]
        with psycopg.connect(owner, autocommit=True) as connection:
            role = pipelines.split("//")[1].split("@")[0]
            connection.execute(
                f"GRANT SELECT ON judgment_deletions, gold_label_deletions TO {role}"
            )
        extract = extract_since(pipelines, since=EPOCH, until=datetime.now(UTC))
        assert extract.deletions_tracked and extract.deletions["judgment_id"].to_list() == ["j1"]


def test_a_pipelines_role_granted_trigger_applies_migration_6_itself():
    with (
        fresh_database("deletion_trigger") as database,
        tool_and_pipelines_roles(database) as (
            tool,
            pipelines,
        ),
    ):
        owner = f"postgresql://postgres@127.0.0.1:5432/{database}"
        role = pipelines.split("//")[1].split("@")[0]
        with psycopg.connect(owner, autocommit=True) as connection:
            connection.execute(f"GRANT TRIGGER ON judgments, gold_labels TO {role}")
        # Migrations 9 and 10 add columns, which only an owner may: TRIGGER is not enough.
        assert [skipped.version for skipped in apply_schema(pipelines)] == [9, 10]
        run(tool, "public", insert("j1", "t1", "p", "a1", "cat", WHEN))
        run(tool, "public", delete("j1"), ("DELETE FROM gold_labels", ()))
        extract = extract_since(pipelines, since=EPOCH, until=datetime.now(UTC))
        assert extract.deletions_tracked and extract.deletions["judgment_id"].to_list() == ["j1"]


def _annotator_insert(dsn: str, judgment_id: str) -> float:
    """Seconds an annotator's one-row submission took (it gives up after 10 s)."""
    started = time.monotonic()
    with psycopg.connect(dsn, options="-c statement_timeout=10000") as connection:
        connection.execute(*insert(judgment_id, "t1", "p", "a1", "cat", WHEN))
    return time.monotonic() - started


def test_a_migration_waits_seconds_for_a_lock_behind_an_open_tool_transaction():
    """An open write transaction on `judgments`: migration 6 gives up after the lock timeout
    (skipped, tried again next time) instead of queueing the tool's writers behind it for
    minutes; an annotator's INSERT meanwhile waits at most about that long. A required
    migration whose lock does not come fails, naming itself."""
    with fresh_database("deletion_lock") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        migrated_before(dsn, 6)
        # The live runs' own settings: statement and lock timeouts of 600 s.
        work = conninfo(dsn, Timeouts(connect=10, statement=600, lock=600))
        batch = psycopg.connect(dsn)
        batch.execute(*insert("j0", "t1", "p", "a1", "cat", WHEN))
        outcome: dict[str, object] = {}

        def migrate() -> None:
            started = time.monotonic()
            outcome["skipped"] = apply_schema(work)
            outcome["seconds"] = time.monotonic() - started

        try:
            thread = threading.Thread(target=migrate)
            thread.start()
            time.sleep(0.5)
            waited = _annotator_insert(dsn, "j1")
            thread.join(timeout=30)
        finally:
            batch.commit()
            batch.close()
        limit = MIGRATION_LOCK_TIMEOUT.total_seconds()
        # Migrations 6 and 9 each wait for the lock in turn; one INSERT waits behind one.
        assert outcome["seconds"] < 2 * limit + 2 and waited < limit + 1
        skipped, columns = outcome["skipped"]
        assert skipped.version == 6 and skipped.locked and "lock timeout" in skipped.cause
        assert columns.version == 9 and columns.locked
        assert applied_migrations(dsn) == ALL_MIGRATIONS - {6, 9}
        # Next time, with the tool quiet, it applies.
        assert apply_schema(work) == []
        assert 6 in applied_migrations(dsn)

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("DELETE FROM annotation_pipelines_migrations WHERE version >= 4")
        reader = psycopg.connect(dsn)
        reader.execute("SELECT count(*) FROM annotator_actions")
        try:
            started = time.monotonic()
            with pytest.raises(MigrationFailed, match=r"migration 4 \(004_block_revoked\)"):
                apply_schema(work)
            assert time.monotonic() - started < limit + 2
        finally:
            reader.rollback()
            reader.close()


def test_a_retried_window_counts_the_rows_an_earlier_attempt_removed(postgres_dsn, tmp_path):
    """By key: a staged row deleted, one never staged (inserted and deleted between two
    extracts) and one of a refused project name. An attempt that removed the staged row and
    failed before the watermark moved is retried with the same window: the row counts as
    removed again, not as never staged; the next window starts afresh."""
    schema = "deletion_retry_counts"
    apply_schema(postgres_dsn, schema=schema)
    run(postgres_dsn, schema, insert("kept", "t1", "p", "a1", "cat", WHEN))
    run(postgres_dsn, schema, insert("staged", "t1", "p", "a2", "cat", WHEN))
    first = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    key = "staging/judgments/day=2026-11-02/annotation_db.parquet"
    lake.put_frame(key, merge_partition(None, first.result.judgments))
    settle()
    run(postgres_dsn, schema, insert("brief", "t1", "p", "a3", "dog", WHEN))
    run(postgres_dsn, schema, insert("odd", "t1", "../x", "a2", "dog", WHEN))
    settle()
    # Two tombstones of one key: deleted, inserted again and deleted in the window.
    run(postgres_dsn, schema, delete("staged"))
    settle()
    run(postgres_dsn, schema, insert("staged", "t1", "p", "a2", "dog", WHEN))
    settle()
    run(postgres_dsn, schema, delete("staged"), delete("brief"), delete("odd"))
    second = extract_since(postgres_dsn, since=first.watermark, schema=schema, seen=first.seen)
    assert sorted(second.deletions["judgment_id"]) == ["brief", "staged", "staged"]
    assert second.ignored_deletions == 1
    since = first.watermark

    def counted(since: datetime) -> tuple[int, int, set[str]]:
        withdrawn = withdraw_counted(lake, second, since=since)
        return withdrawn.deleted, withdrawn.unknown, withdrawn.days

    assert counted(since) == (1, 2, {"2026-11-02"})
    assert lake.get_frame(key)["judgment_id"].to_list() == ["kept"]
    # The retry of the same window, the staged row already gone.
    assert counted(since) == (1, 2, {"2026-11-02"})
    later = since + timedelta(seconds=1)
    assert counted(later) == (0, 3, {"2026-11-02"})


class CountingLake(LocalLake):
    """The local lake, counting each object's whole reads and its writes: class-wide, as
    Dagster hands an asset its own copy of a resource."""

    reads: ClassVar[Counter[str]] = Counter()
    writes: ClassVar[Counter[str]] = Counter()

    def get_frame(self, key: str) -> pl.DataFrame:
        self.reads[key] += 1
        return super().get_frame(key)

    def put(self, key: str, data: bytes) -> None:
        self.writes[key] += 1
        super().put(key, data)


NUMERIC = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, kind, answer, "
    "submitted_at) VALUES (%s, 't1', 'rated', %s, 'numeric', '3'::jsonb, %s)"
)
NUMERIC_GOLD = (
    "INSERT INTO gold_labels (task_id, project, kind, answer) "
    "VALUES (%s, 'rated', 'numeric', '3'::jsonb)"
)


def test_one_extract_withdraws_by_every_tombstone_in_one_rewrite_of_each_staged_file(
    postgres_dsn, tmp_path
):
    """A deletion, an edit off the project's scale and an edit into a row set aside otherwise,
    of judgments staged in one day and of gold: the daily asset reads and rewrites each staged
    file once, and counts each withdrawal as what withdrew it."""
    schema = "deletion_one_rewrite"
    apply_schema(postgres_dsn, schema=schema)
    run(
        postgres_dsn,
        schema,
        (
            "INSERT INTO projects (project, scale) VALUES ('rated', %s::jsonb)",
            (json.dumps({"min": 1, "max": 5}),),
        ),
        *[(NUMERIC, (judgment, judgment, WHEN)) for judgment in ("gone", "off", "bad", "kept")],
        *[(NUMERIC_GOLD, (task,)) for task in ("g-gone", "g-off", "g-kept")],
    )
    lake = CountingLake(base_path=str(tmp_path / "lake"))
    database = AnnotationDatabase(dsn=postgres_dsn, db_schema=schema)

    def changes() -> dict[str, object]:
        result = annotation_db_changes(build_asset_context(), annotation_db=database, lake=lake)
        assert result.metadata is not None
        return {name: getattr(value, "value", value) for name, value in result.metadata.items()}

    assert changes()["rows_loaded"] == 7
    key = "staging/judgments/day=2026-11-02/annotation_db.parquet"
    [gold_key] = lake.list_keys(staging_prefix("gold_labels"))
    settle()
    run(
        postgres_dsn,
        schema,
        delete("gone"),
        ("DELETE FROM gold_labels WHERE task_id = 'g-gone'", ()),
        ("UPDATE judgments SET answer = '50' WHERE judgment_id = 'off'", ()),
        ("UPDATE gold_labels SET answer = '40' WHERE task_id = 'g-off'", ()),
        ("UPDATE judgments SET annotator_id = NULL WHERE judgment_id = 'bad'", ()),
    )
    CountingLake.reads.clear()
    CountingLake.writes.clear()
    metadata = changes()
    assert (
        metadata["deletions_applied"],
        metadata["deletions_unknown"],
        metadata["outside_scale_withdrawn"],
        metadata["set_aside_withdrawn"],
    ) == (2, 0, 2, 1)
    assert metadata["days"] == ["2026-11-02"]
    assert lake.get_frame(key)["judgment_id"].to_list() == ["kept"]
    assert lake.get_frame(gold_key)["task_id"].to_list() == ["g-kept"]
    staged = {k: n for k, n in CountingLake.writes.items() if k.startswith("staging/")}
    assert staged == {key: 1, gold_key: 1}
    # The rewrite's read, then this test's.
    assert CountingLake.reads[key] == CountingLake.reads[gold_key] == 2
