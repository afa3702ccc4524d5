"""Judgments hard-deleted from the annotation DB, through the real sensor, live runs and daily
runs (real Dagster instance, real PostgreSQL): a deleted judgment (and a deleted gold label) is
withdrawn from the live state and from its staged day, a key deleted and inserted again stays,
a deletion of a row never extracted changes nothing, a tombstone read again withdraws nothing
twice, and at the end the day's judgments and gold are the live state's."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest
from click.testing import CliRunner
from dagster import AssetKey

from annotation_pipelines.cli import main
from annotation_pipelines.ingest.postgres import (
    MIGRATION_LOCK_TIMEOUT,
    applied_migrations,
    apply_schema,
    extract_since,
)
from annotation_pipelines.loop.live import (
    STREAM_PREFIX,
    LiveState,
    load_state,
    load_touched,
    update,
)
from tests.loop.test_live_writeback import QUIET, _launch, _tick
from tests.services import fresh_database, migrated_before, tool_and_pipelines_roles
from tests.support import first_metadata, lake_reader, live_quality_job

pytestmark = pytest.mark.services
PROJECT = "reviews"
LABELS = ("pos", "neg", "neutral")
DAY = "2026-11-02"
WHEN = datetime(2026, 11, 2, 10, tzinfo=UTC)
INSERT = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, submitted_at, "
    "duration_s) VALUES (%s, %s, %s, %s, %s, %s, 2.0)"
)


def _run(dsn: str, *statements: tuple[str, tuple]) -> None:
    """The statements in one committed transaction; a few ms apart from the next one's stamp."""
    with psycopg.connect(dsn) as connection:
        for statement, parameters in statements:
            connection.execute(statement, parameters)
    time.sleep(0.01)


def _delete(judgment_id: str) -> tuple[str, tuple]:
    return "DELETE FROM judgments WHERE judgment_id = %s", (judgment_id,)


def test_deleted_judgments_leave_the_live_state_and_the_day_alike(tmp_path, monkeypatch):
    data = tmp_path / "data"
    lake = data / "lake"
    with fresh_database("live_deletions") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _run(
            dsn,
            *(
                (INSERT, (f"j{t}-{a}", f"t{t}", PROJECT, f"a{a}", LABELS[t % 3], WHEN))
                for t in range(10)
                for a in range(3)
            ),
            (
                "INSERT INTO gold_labels (task_id, project, label) VALUES ('t3', %s, 'pos')",
                (PROJECT,),
            ),
        )
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        changes = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={AssetKey("annotation_db_changes")}
        )
        raw_job = defs.resolve_job_def("raw_job")

        def daily() -> tuple[dict[str, object], pl.DataFrame, pl.DataFrame]:
            staged = changes.execute_in_process(instance=instance, run_config=QUIET)
            assert staged.success
            raw = raw_job.execute_in_process(partition_key=DAY, instance=instance, run_config=QUIET)
            assert raw.success
            day = pl.read_parquet(lake / "judgments" / f"day={DAY}" / "data.parquet")
            gold = pl.read_parquet(lake / "gold_labels" / f"day={DAY}" / "data.parquet")
            return first_metadata(staged), day, gold

        tick = _tick(defs, instance)
        _launch(job, instance, tick)
        first = load_state(PROJECT, lake_reader(lake))
        assert first.ledger.height == 30
        assert first.annotators.filter(pl.col("annotator_id") == "a0")["n_judgments"].item() == 10
        assert first.tasks.filter(pl.col("task_id") == "t3")["gold"].item() == "pos"
        assert first.annotators["n_gold"].sum() == 3
        _, day, gold = daily()
        assert day.height == 30 and gold["task_id"].to_list() == ["t3"]
        # A run loads the tasks of the judgments a tombstone names, and only those.
        touched = load_touched(
            PROJECT,
            lake_reader(lake),
            judgments=first.ledger.head(0),
            deleted=pl.DataFrame({"judgment_id": ["j0-0"]}),
        )
        assert touched.ledger["task_id"].unique().to_list() == ["t0"]

        # One judgment deleted; one deleted and inserted again with another label; one
        # inserted and deleted before any extract read it.
        _run(dsn, _delete("j0-0"))
        _run(dsn, _delete("j1-1"))
        _run(dsn, (INSERT, ("j1-1", "t1", PROJECT, "a1", "neutral", WHEN)))
        _run(dsn, (INSERT, ("brief", "t2", PROJECT, "a9", "pos", WHEN)))
        _run(dsn, _delete("brief"))
        _run(dsn, ("DELETE FROM gold_labels WHERE task_id = 't3'", ()))

        tick = _tick(defs, instance, tick.cursor)
        [run] = _launch(job, instance, tick)
        live = first_metadata(run)
        assert live["withdrawn_judgments"] == 1 and live["new_judgments"] == 1
        assert live["withdrawn_gold"] == 1
        assert live["deletions_read"] == 3 and live["deletions_unknown"] == 1
        state = load_state(PROJECT, lake_reader(lake))
        assert "j0-0" not in state.ledger["judgment_id"].to_list()
        assert state.ledger.filter(pl.col("judgment_id") == "j1-1")["label"].item() == "neutral"
        assert state.tasks.filter(pl.col("task_id") == "t0")["n_votes"].item() == 2
        assert state.annotators.filter(pl.col("annotator_id") == "a0")["n_judgments"].item() == 9
        assert "a9" not in state.annotators["annotator_id"].to_list()
        assert state.tasks["gold"].is_null().all() and state.annotators["n_gold"].sum() == 0
        assert state.tasks.filter(pl.col("task_id") == "t3")["n_votes"].item() == 3

        staged, day, gold = daily()
        assert staged["deletions_applied"] == 2 and staged["deletions_unknown"] == 1
        assert gold.height == 0
        assert staged["days"] == [DAY]
        # The day and the live state agree: the same judgments, with the same labels.
        ledger = state.ledger.select("judgment_id", "label").sort("judgment_id")
        assert day.select("judgment_id", "label").sort("judgment_id").equals(ledger)
        counts = day.group_by("task_id").len().sort("task_id")
        votes = state.tasks.select("task_id", len=pl.col("n_votes").cast(pl.UInt32))
        assert counts.equals(votes.sort("task_id"))

        # The stream forgets what it read at the end of its window: the next run reads the
        # overlap's tombstones again and withdraws nothing twice.
        (lake / STREAM_PREFIX / "seen.parquet").unlink()
        again = first_metadata(job.execute_in_process(instance=instance, run_config=QUIET))
        assert again["deletions_read"] == 3 and again["deletions_unknown"] == 3
        assert again["withdrawn_judgments"] == 0 and again["new_judgments"] == 0
        assert again["withdrawn_gold"] == 0
        after = load_state(PROJECT, lake_reader(lake))
        assert after.ledger.sort("judgment_id").equals(state.ledger.sort("judgment_id"))
        assert after.annotators.equals(state.annotators)

        # Inserted again in a later window: present again, live and daily; deleted once more,
        # alone, it starts a run by itself (the sensor's probe counts tombstones).
        _run(dsn, (INSERT, ("j0-0", "t0", PROJECT, "a0", "neg", WHEN)))
        tick = _tick(defs, instance, tick.cursor)
        [back] = _launch(job, instance, tick)
        assert first_metadata(back)["new_judgments"] == 1
        returned = load_state(PROJECT, lake_reader(lake))
        assert returned.ledger.filter(pl.col("judgment_id") == "j0-0")["label"].item() == "neg"
        assert returned.tasks.filter(pl.col("task_id") == "t0")["n_votes"].item() == 3
        _, day, _ = daily()
        assert day.filter(pl.col("judgment_id") == "j0-0")["label"].to_list() == ["neg"]
        _run(dsn, _delete("j0-0"))
        tick = _tick(defs, instance, tick.cursor)
        [alone] = _launch(job, instance, tick)
        assert first_metadata(alone)["withdrawn_judgments"] == 1
        last = load_state(PROJECT, lake_reader(lake))
        assert "j0-0" not in last.ledger["judgment_id"].to_list()
        _, day, _ = daily()
        assert "j0-0" not in day["judgment_id"].to_list() and day.height == last.ledger.height


GOLD = "INSERT INTO gold_labels (task_id, project, label) VALUES (%s, %s, %s)"


def _seeded(dsn: str) -> None:
    """Three tasks of three votes, gold on t0 and t1."""
    _run(
        dsn,
        *(
            (INSERT, (f"j{t}-{a}", f"t{t}", PROJECT, f"a{a}", LABELS[t % 3], WHEN))
            for t in range(3)
            for a in range(3)
        ),
        (GOLD, ("t0", PROJECT, "pos")),
        (GOLD, ("t1", PROJECT, "neg")),
    )


def _reinsert_after_deletion(
    dsn: str, judgment_id: str, task_id: str, *, label: str, gold: bool, held: bool
) -> psycopg.Connection | None:
    """A transaction begun before a deletion of `judgment_id` (and `task_id`'s gold) inserts
    them again, relabelled `label`, after the deletion commits: stamped before their
    tombstones. `held`: a third transaction begun between the two stays open, for the caller
    to end (an extract meanwhile ends its window between the re-insert and the deletion)."""
    importer = psycopg.connect(dsn)
    importer.execute("SELECT 1")
    time.sleep(0.01)
    holder = psycopg.connect(dsn) if held else None
    if holder is not None:
        holder.execute("SELECT 1")
        time.sleep(0.01)
    deletions = [_delete(judgment_id)]
    if gold:
        deletions.append(("DELETE FROM gold_labels WHERE task_id = %s", (task_id,)))
    _run(dsn, *deletions)
    importer.execute(INSERT, (judgment_id, task_id, PROJECT, "a1", label, WHEN))
    if gold:
        importer.execute(GOLD, (task_id, PROJECT, label))
    importer.commit()
    importer.close()
    return holder


def test_a_key_inserted_again_by_a_transaction_begun_before_its_deletion_stays_live(
    tmp_path, monkeypatch
):
    """Live runs and the daily day over the interleaving: the re-insert is stamped before its
    tombstone, in the window that reads the tombstone (judgment and gold) or one window
    earlier (a third transaction held open puts the window's end between them). The new
    versions stay, live and staged, and nothing is withdrawn."""
    data = tmp_path / "data"
    lake = data / "lake"
    with fresh_database("live_reinsert") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _seeded(dsn)
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        changes = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={AssetKey("annotation_db_changes")}
        )

        def live() -> dict[str, object]:
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            return first_metadata(result)

        def staged() -> dict[str, str]:
            assert changes.execute_in_process(instance=instance, run_config=QUIET).success
            frame = pl.read_parquet(
                lake / "staging" / "judgments" / f"day={DAY}" / "annotation_db.parquet"
            )
            return dict(frame.select("judgment_id", "label").iter_rows())

        live()
        assert staged()["j1-1"] == LABELS[1]

        # One window: the tombstones and the re-inserted rows together.
        _reinsert_after_deletion(dsn, "j1-1", "t1", label="neutral", gold=True, held=False)
        within = live()
        assert within["withdrawn_judgments"] == 0 and within["withdrawn_gold"] == 0
        assert within["deletions_read"] == 0
        state = load_state(PROJECT, lake_reader(lake))
        assert state.ledger.filter(pl.col("judgment_id") == "j1-1")["label"].item() == "neutral"
        assert state.tasks.filter(pl.col("task_id") == "t1")["gold"].item() == "neutral"
        assert staged()["j1-1"] == "neutral"

        # Two windows: the re-insert in the first, its tombstone in the next.
        holder = _reinsert_after_deletion(dsn, "j2-1", "t2", label="pos", gold=False, held=True)
        assert holder is not None
        try:
            first = live()
            daily_first = staged()
        finally:
            holder.commit()
            holder.close()
        with psycopg.connect(dsn) as connection:
            (death,) = connection.execute(
                "SELECT deleted_at FROM judgment_deletions WHERE judgment_id = 'j2-1'"
            ).fetchone()
        assert datetime.fromisoformat(str(first["watermark"])) < death
        assert daily_first["j2-1"] == "pos"
        second = live()
        assert second["withdrawn_judgments"] == 0
        state = load_state(PROJECT, lake_reader(lake))
        assert state.ledger.filter(pl.col("judgment_id") == "j2-1")["label"].item() == "pos"
        assert state.tasks.filter(pl.col("task_id") == "t2")["n_votes"].item() == 3
        assert staged()["j2-1"] == "pos"


@pytest.mark.parametrize("label", ["neutral", "neg"])
def test_the_live_engine_keeps_a_reinsert_read_longer_than_the_overlap_before_its_tombstone(
    label: str,
):
    """The same two windows, with the tombstone's window not re-reading the re-insert (the
    transaction between them held open longer than the overlap): the DB holds the key at a
    stamp the windows have read, so its tombstones are not handed on, and the engine keeps
    the judgment and the gold, also when the re-insert equals the deleted version (`neg`:
    the ledger keeps the older stamp, the gold has none). A plain deletion withdraws."""
    columns = ("judgment_id", "task_id", "annotator_id", "label", "submitted_at", "duration_s")
    with fresh_database("live_reinsert_engine") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        _seeded(dsn)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)

        def fold(state: LiveState, extract) -> tuple[LiveState, object]:
            return update(
                state,
                extract.result.judgments.select(*columns, "updated_at"),
                extract.result.gold.select("task_id", "label"),
                deleted=extract.deletions,
                deleted_gold=extract.gold_deletions,
                now=WHEN,
            )

        first = extract_since(dsn, since=epoch)
        state, _ = fold(LiveState(project=PROJECT), first)
        time.sleep(0.01)
        holder = _reinsert_after_deletion(dsn, "j1-1", "t1", label=label, gold=True, held=True)
        assert holder is not None
        try:
            second = extract_since(dsn, since=first.watermark, seen=first.seen)
        finally:
            holder.commit()
            holder.close()
        state, _ = fold(state, second)
        _run(dsn, _delete("j0-0"))
        third = extract_since(dsn, since=second.watermark, seen=second.seen, overlap=timedelta(0))
        assert third.result.rows_read == 0
        assert third.deletions["judgment_id"].to_list() == ["j0-0"]
        assert third.gold_deletions.height == 0
        state, events = fold(state, third)
        assert events.withdrawn_judgments == 1 and events.withdrawn_gold == 0
        assert state.ledger.filter(pl.col("judgment_id") == "j1-1")["label"].item() == label
        assert state.tasks.filter(pl.col("task_id") == "t1")["gold"].item() == label
        assert "j0-0" not in state.ledger["judgment_id"].to_list()


def _logged(instance, result, text: str) -> bool:
    return any(text in (entry.user_message or "") for entry in instance.all_logs(result.run_id))


def test_a_pipelines_role_that_cannot_trigger_on_the_tool_tables_runs_live_untracked(
    tmp_path, monkeypatch
):
    """The pipelines' role owns neither `judgments` nor `gold_labels`: each live run skips
    migration 6 with a warning saying why and what to do, works on, and reports deletions
    untracked. Once the owner applies it (and grants the tombstones), the tool deletes as
    its own role and the next run withdraws the judgment."""
    data = tmp_path / "data"
    lake = data / "lake"
    with (
        fresh_database("live_roles") as database,
        tool_and_pipelines_roles(database) as (
            tool,
            pipelines,
        ),
    ):
        owner = f"postgresql://postgres@127.0.0.1:5432/{database}"
        _seeded(tool)
        _, job, instance = live_quality_job(monkeypatch, dsn=pipelines, data=data)
        for _ in range(2):  # tried again on the next run
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            assert result.success
            metadata = first_metadata(result)
            assert metadata["deletions_tracked"] is False
            assert metadata["migrations_skipped"] == [6, 9, 10]
            assert _logged(instance, result, "migration 6 (006_deletions) skipped")
            assert _logged(instance, result, "annotation-pipelines migrate")
        assert load_state(PROJECT, lake_reader(lake)).ledger.height == 9

        migrated = CliRunner().invoke(main, ["migrate", "--dsn", owner])
        assert migrated.exit_code == 0, migrated.output
        role = pipelines.split("//")[1].split("@")[0]
        _run(owner, (f"GRANT SELECT ON judgment_deletions, gold_label_deletions TO {role}", ()))
        _run(tool, _delete("j0-0"))
        result = job.execute_in_process(instance=instance, run_config=QUIET)
        assert result.success
        metadata = first_metadata(result)
        assert metadata["deletions_tracked"] is True and metadata["migrations_skipped"] == []
        assert metadata["withdrawn_judgments"] == 1
        assert "j0-0" not in load_state(PROJECT, lake_reader(lake)).ledger["judgment_id"]


def test_a_live_run_is_not_stalled_by_an_open_tool_transaction_nor_stalls_the_tool(
    tmp_path, monkeypatch
):
    """A tool transaction holds a write lock on `judgments` while a live run would apply
    migration 6: the run skips it after the lock timeout and finishes; annotators submitting
    meanwhile wait at most about that long. The next run, the tool quiet, applies it."""
    data = tmp_path / "data"
    with fresh_database("live_lock") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        migrated_before(dsn, 6)
        _seeded(dsn)
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        batch = psycopg.connect(dsn)
        batch.execute(INSERT, ("batch", "t0", PROJECT, "a7", "pos", WHEN))
        waits: list[float] = []
        done = threading.Event()

        def annotate() -> None:
            with psycopg.connect(
                dsn, autocommit=True, options="-c statement_timeout=20000"
            ) as connection:
                n = 0
                while not done.is_set():
                    started = time.monotonic()
                    connection.execute(INSERT, (f"s{n}", "t1", PROJECT, "a8", "neg", WHEN))
                    waits.append(time.monotonic() - started)
                    n += 1
                    time.sleep(0.1)

        annotator = threading.Thread(target=annotate)
        annotator.start()
        try:
            started = time.monotonic()
            result = job.execute_in_process(instance=instance, run_config=QUIET)
            took = time.monotonic() - started
        finally:
            done.set()
            annotator.join(timeout=60)
            batch.commit()
            batch.close()
        assert result.success
        metadata = first_metadata(result)
        assert metadata["migrations_skipped"] == [6, 9] and metadata["deletions_tracked"] is False
        assert _logged(instance, result, "lock timeout")
        limit = MIGRATION_LOCK_TIMEOUT.total_seconds()
        assert waits and max(waits) < limit + 1.5, waits
        assert took < 60, took
        result = job.execute_in_process(instance=instance, run_config=QUIET)
        assert result.success and first_metadata(result)["migrations_skipped"] == []
        assert 6 in applied_migrations(dsn)
