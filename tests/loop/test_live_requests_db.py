"""The write-back as the annotation tool consumes it, against a real PostgreSQL DB and a real
Dagster instance: the migrations record their version and run again harmlessly, the tool
acknowledges and fulfils requests through `status`, the pipeline closes (`withdrawn`) the
requests it no longer wants and never touches a fulfilled one, a fulfilled task asked again
after new evidence gets a new request, every change is visible through `updated_at`, and the
open rows in the DB are the requests `requests.json` lists."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import apply_schema, migration_files, seed_database
from tests.loop.test_live import stream
from tests.loop.test_live_writeback import _launch, _tick
from tests.services import fresh_database
from tests.support import live_quality_job, retried_after_the_db_write

pytestmark = pytest.mark.services
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# The superuser applies every migration in the repo, the optional ones included.
MIGRATIONS = sorted(version for version, _ in migration_files())
RECORDED = "SELECT applied_at FROM annotation_pipelines_migrations ORDER BY version"


def _judgments() -> pl.DataFrame:
    judgments, _ = stream(n_tasks=60, votes=3)
    start = datetime.now(UTC) - timedelta(hours=1)
    return judgments.with_columns(
        project=pl.lit("reviews"),
        submitted_at=pl.lit(start) + pl.duration(milliseconds=pl.int_range(pl.len()) * 10),
    )


def _requests(connection: psycopg.Connection) -> dict[str, dict[str, object]]:
    rows = connection.execute(
        "SELECT decision_id, task_id, status, closed_at, updated_at FROM task_requests"
    ).fetchall()
    return {
        row[0]: {"task_id": row[1], "status": row[2], "closed_at": row[3], "updated_at": row[4]}
        for row in rows
    }


@contextmanager
def _reviews_database(prefix: str) -> Iterator[str]:
    """A fresh annotation DB at the current schema holding the project `reviews` (labels pos
    and neg); yields its DSN."""
    with fresh_database(prefix) as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO projects (project, label_set) VALUES ('reviews', '{pos,neg}')"
            )
        yield dsn


def _open_listed(data) -> set[str]:
    listed = json.loads((data / "lake" / "live" / "reviews" / "requests.json").read_text())
    return {item["data"]["decision_id"] for item in listed}


def test_the_tool_fulfils_requests_and_sees_the_ones_no_longer_wanted_closed(tmp_path, monkeypatch):
    judgments = _judgments()
    data = tmp_path / "data"
    with fresh_database("live_requests") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        with psycopg.connect(dsn, autocommit=True) as connection:
            versions = connection.execute(
                "SELECT version FROM annotation_pipelines_migrations ORDER BY version"
            ).fetchall()
            assert [v for (v,) in versions] == MIGRATIONS
            applied = connection.execute(RECORDED).fetchall()
        apply_schema(dsn)  # again: nothing changes, not even when each was applied
        with psycopg.connect(dsn, autocommit=True) as connection:
            assert connection.execute(RECORDED).fetchall() == applied
        seed_database(dsn, judgments=judgments, label_sets={"reviews": ["c0", "c1", "c2"]})
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        with psycopg.connect(dsn, autocommit=True) as connection:
            first = _requests(connection)
            assert first and {r["status"] for r in first.values()} == {"open"}
            assert _open_listed(data) == set(first)
            # The tool takes one request and fulfils another (a new judgment is on its way).
            acknowledged, fulfilled, *_ = sorted(first, key=lambda d: str(first[d]["task_id"]))
            connection.execute(
                "UPDATE task_requests SET status = 'acknowledged' WHERE decision_id = %s",
                (acknowledged,),
            )
            connection.execute(
                "UPDATE task_requests SET status = 'fulfilled', closed_at = now() "
                "WHERE decision_id = %s",
                (fulfilled,),
            )
            changed = _requests(connection)
            # The tool's own changes move updated_at: a poller sees them.
            assert changed[fulfilled]["updated_at"] > first[fulfilled]["updated_at"]
        # A run with nothing new asks nothing again, fulfilled or not.
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        with psycopg.connect(dsn, autocommit=True) as connection:
            assert _requests(connection) == changed
        # New evidence: the fulfilled task gets one more disagreeing vote (still wanted: a new
        # request), and the acknowledged one unanimous votes until it is done (closed).
        tasks = {d: str(first[d]["task_id"]) for d in (acknowledged, fulfilled)}
        majority = (
            judgments.filter(pl.col("task_id") == tasks[acknowledged])
            .group_by("label")
            .len()
            .sort("len", descending=True)["label"][0]
        )
        settle = pl.DataFrame(
            {
                "judgment_id": [f"settle{i}" for i in range(12)],
                "task_id": [tasks[acknowledged]] * 12,
                "annotator_id": [f"w{i:02d}" for i in range(12, 24)],
                "label": [majority] * 12,
            }
        )
        other = judgments.filter(pl.col("task_id") == tasks[fulfilled])["label"].to_list()
        unsettle = pl.DataFrame(
            {
                "judgment_id": ["unsettle"],
                "task_id": [tasks[fulfilled]],
                "annotator_id": ["w29"],
                "label": [next(c for c in ("c0", "c1", "c2") if c not in other[:1])],
            }
        )
        later = pl.concat([settle, unsettle]).with_columns(
            project=pl.lit("reviews"),
            submitted_at=pl.lit(datetime.now(UTC) - timedelta(minutes=1)),
            duration_s=pl.lit(4.0),
        )
        seed_database(dsn, judgments=later)
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        with psycopg.connect(dsn, autocommit=True) as connection:
            after = _requests(connection)
        assert after[fulfilled]["status"] == "fulfilled"
        assert after[acknowledged]["status"] == "withdrawn"
        assert after[acknowledged]["closed_at"] is not None
        assert after[acknowledged]["updated_at"] > changed[acknowledged]["updated_at"]
        new = {d: r for d, r in after.items() if d not in first}
        assert [r["task_id"] for r in new.values()] == [tasks[fulfilled]]
        assert {r["status"] for r in new.values()} == {"open"}
        # The task that settled is asked nothing more.
        assert not any(
            r["task_id"] == tasks[acknowledged] and r["status"] == "open" for r in after.values()
        )
        # What the DB holds open (or acknowledged) is what the list says is open.
        still = {d for d, r in after.items() if r["status"] in ("open", "acknowledged")}
        assert _open_listed(data) == still


def test_bad_rows_in_the_db_are_quarantined_by_the_live_run_and_the_stream_goes_on(
    tmp_path, monkeypatch
):
    """A NULL annotator, a label outside the project's set, a 2 MB label and a gold label
    outside the set are set aside by the live run with their table, key, field and reason in
    the lake's quarantine, while the good rows (unicode ids among them) are folded in; the
    tool's correction of a bad row is folded in by the next run."""
    data = tmp_path / "data"
    submitted = datetime.now(UTC) - timedelta(minutes=10)
    with _reviews_database("live_quarantine") as dsn:
        with psycopg.connect(dsn, autocommit=True) as connection:
            rows = [
                ("j1", "tâche-1", "ännotator-😀", "pos"),
                ("j2", "tâche-1", "a2", "pos"),
                ("j3", "tâche-1", "a3", "neg"),
                ("bad-null", "t2", None, "pos"),
                ("bad-label", "t2", "a2", "maybe"),
                ("bad-long", "t2", "a3", "x" * 2_000_000),
            ]
            for judgment, task, annotator, label in rows:
                connection.execute(
                    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
                    "submitted_at, duration_s) VALUES (%s, %s, 'reviews', %s, %s, %s, 3)",
                    (judgment, task, annotator, label, submitted),
                )
            connection.execute(
                "INSERT INTO gold_labels (task_id, project, label) VALUES ('t9', 'reviews', 'nope')"
            )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        result = job.execute_in_process(instance=instance, run_config=QUIET)
        assert result.success
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["new_judgments"].value == 3
        assert metadata["quarantined"].value == 4
        stored = pl.concat(
            [
                pl.read_parquet(path)
                for path in (data / "lake" / "quarantine" / "source=annotation_db_live").iterdir()
            ]
        )
        named = stored.select(
            "table",
            "source_file",
            "field",
            "reason",
            # The row's key leads its text, even when a 2 MB label had the text cut.
            key=pl.coalesce(
                pl.col("raw").str.extract(r'^\{"judgment_id":"([^"]*)"'),
                pl.col("raw").str.extract(r'^\{"task_id":"([^"]*)"'),
            ),
        ).sort("key")
        judgments, gold = "postgres:public.judgments", "postgres:public.gold_labels"
        assert named.rows() == [
            ("judgments", judgments, "label", "unknown_label", "bad-label"),
            ("judgments", judgments, "label", "unknown_label", "bad-long"),
            ("judgments", judgments, "annotator_id", "missing_annotator", "bad-null"),
            ("gold_labels", gold, "label", "unknown_label", "t9"),
        ]
        logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
        assert any(
            "judgments judgment_id='bad-long': label: unknown_label" in line for line in logged
        )
        # The tool corrects one row: the next run folds it in, and sets nothing aside again.
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("UPDATE judgments SET label = 'neg' WHERE judgment_id = 'bad-label'")
        again = job.execute_in_process(instance=instance, run_config=QUIET)
        metadata = again.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["new_judgments"].value == 1
        assert metadata["quarantined"].value == 0


def test_a_row_dated_in_the_future_is_deferred_each_run_not_set_aside_each_run(
    tmp_path, monkeypatch
):
    """A judgment dated a day ahead (a fast client clock) is read again by every run until its
    time comes: the live runs count it as deferred and write no quarantine file for it, while
    a row bad for good is set aside once."""
    data = tmp_path / "data"
    now = datetime.now(UTC)
    with _reviews_database("live_future") as dsn:
        with psycopg.connect(dsn, autocommit=True) as connection:
            rows = [
                ("j1", "a1", "pos", now - timedelta(minutes=10)),
                ("j2", "a2", "pos", now - timedelta(minutes=10)),
                ("bad-null", None, "pos", now - timedelta(minutes=10)),
                ("ahead", "a3", "neg", now + timedelta(days=1)),
            ]
            for judgment, annotator, label, submitted in rows:
                connection.execute(
                    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
                    "submitted_at, duration_s) VALUES (%s, 't1', 'reviews', %s, %s, %s, 3)",
                    (judgment, annotator, label, submitted),
                )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        quarantine = data / "lake" / "quarantine" / "source=annotation_db_live"
        runs = [job.execute_in_process(instance=instance, run_config=QUIET) for _ in range(2)]
        assert all(run.success for run in runs)
        metadata = [r.get_asset_materialization_events()[0].materialization.metadata for r in runs]
        assert [m["quarantined"].value for m in metadata] == [1, 0]
        assert [m["deferred"].value for m in metadata] == [1, 1]
        stored = pl.concat([pl.read_parquet(path) for path in quarantine.iterdir()])
        assert stored.select("reason").rows() == [("missing_annotator",)]
        for run in runs:
            logged = [entry.user_message for entry in instance.all_logs(run.run_id)]
            assert any("1 deferred: dated in the future" in line for line in logged)
            assert not any("ahead" in line for line in logged if "set aside" in line)


def test_a_future_row_that_is_also_invalid_is_deferred_until_its_time_then_set_aside_once(
    tmp_path, monkeypatch
):
    """A row dated after the window is read again by every run until its time comes, whatever
    else is wrong with it: a NULL annotator does not make it quarantined on every run. Once its
    time is inside the window it is set aside, once."""
    data = tmp_path / "data"
    with fresh_database("live_future_invalid") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO projects (project, label_set) VALUES ('reviews', '{pos,neg}')"
            )
            clock = connection.execute("SELECT clock_timestamp()").fetchone()[0]
            ahead = clock + timedelta(seconds=20)
            for judgment, annotator, submitted in [
                ("j1", "a1", clock - timedelta(minutes=10)),
                ("ahead-null", None, ahead),
            ]:
                connection.execute(
                    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
                    "submitted_at, duration_s) VALUES (%s, 't1', 'reviews', %s, 'pos', %s, 3)",
                    (judgment, annotator, submitted),
                )
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        quarantine = data / "lake" / "quarantine" / "source=annotation_db_live"
        early = [job.execute_in_process(instance=instance, run_config=QUIET) for _ in range(2)]
        assert all(run.success for run in early)
        metadata = [r.get_asset_materialization_events()[0].materialization.metadata for r in early]
        assert [m["deferred"].value for m in metadata] == [1, 1]
        assert [m["quarantined"].value for m in metadata] == [0, 0]
        assert not quarantine.exists() or not any(quarantine.iterdir())
        for run in early:
            logged = [entry.user_message for entry in instance.all_logs(run.run_id)]
            assert any("1 deferred" in line for line in logged)

        wait = (ahead - datetime.now(UTC)).total_seconds() + 1
        if wait > 0:
            time.sleep(wait)
        late = [job.execute_in_process(instance=instance, run_config=QUIET) for _ in range(2)]
        assert all(run.success for run in late)
        metadata = [r.get_asset_materialization_events()[0].materialization.metadata for r in late]
        assert [m["deferred"].value for m in metadata] == [0, 0]
        assert [m["quarantined"].value for m in metadata] == [1, 0]
        stored = pl.concat([pl.read_parquet(path) for path in quarantine.iterdir()])
        assert stored.select("reason").rows() == [("missing_annotator",)]
        assert "ahead-null" in stored["raw"][0]


def test_a_deferred_row_starts_a_run_of_its_own_when_its_time_comes(tmp_path, monkeypatch):
    """The sensor's probe sees a row read again by its `submitted_at` once its time is inside
    the window: its `updated_at` lies behind the stream position, so on a quiet database
    nothing else would start the run that takes it."""
    data = tmp_path / "data"
    with _reviews_database("live_future_tick") as dsn:
        with psycopg.connect(dsn, autocommit=True) as connection:
            clock = connection.execute("SELECT clock_timestamp()").fetchone()[0]
            ahead = clock + timedelta(seconds=15)
            for judgment, annotator, submitted in [
                ("j1", "a1", clock - timedelta(minutes=10)),
                ("ahead-null", None, ahead),
            ]:
                connection.execute(
                    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
                    "submitted_at, duration_s) VALUES (%s, 't1', 'reviews', %s, 'pos', %s, 3)",
                    (judgment, annotator, submitted),
                )
        defs, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        tick = _tick(defs, instance)
        (first,) = _launch(job, instance, tick)
        metadata = first.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["deferred"].value == 1
        tick = _tick(defs, instance, tick.cursor)
        assert not tick.run_requests

        wait = (ahead - datetime.now(UTC)).total_seconds() + 1
        if wait > 0:
            time.sleep(wait)
        tick = _tick(defs, instance, tick.cursor)
        (late,) = _launch(job, instance, tick)
        metadata = late.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["deferred"].value == 0
        assert metadata["quarantined"].value == 1
        assert not _tick(defs, instance, tick.cursor).run_requests


def test_a_retry_after_the_db_write_lists_the_requests_with_the_db_s_created_at(
    tmp_path, monkeypatch
):
    """A run that wrote the DB and failed before its lake commit is retried on the same
    version: its inserts conflict and keep the first attempt's `created_at`, which the retry's
    `requests.parquet` then carries too, so lake and DB order requests alike."""
    data = tmp_path / "data"
    with fresh_database("live_retry_created") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        seed_database(dsn, judgments=_judgments(), label_sets={"reviews": ["c0", "c1", "c2"]})
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        stamped = retried_after_the_db_write(
            data,
            dsn,
            lambda: job.execute_in_process(instance=instance, run_config=QUIET).success,
            scratch=tmp_path / "before",
        )
        listed = pl.read_parquet(data / "lake" / "live" / "reviews" / "requests.parquet")
        assert set(listed["decision_id"]) == set(stamped)
        assert {
            row["decision_id"]: row["created_at"] for row in listed.iter_rows(named=True)
        } == stamped


def test_a_retry_that_folds_more_judgments_leaves_open_only_what_it_lists(tmp_path, monkeypatch):
    """A run that wrote the DB and lost its lake commit is retried after more judgments came:
    two of the tasks the first attempt asked about are now settled. The retry, on the same
    version, withdraws those two requests of the attempt that never committed, so the open
    rows are again the ones `requests.json` lists."""
    judgments = _judgments()
    data = tmp_path / "data"
    with fresh_database("live_retry_otherwise") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        seed_database(dsn, judgments=judgments, label_sets={"reviews": ["c0", "c1", "c2"]})
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        settled: dict[str, str] = {}

        def settle() -> None:
            with psycopg.connect(dsn, autocommit=True) as connection:
                first = _requests(connection)
            for decision in sorted(first, key=lambda d: str(first[d]["task_id"]))[:2]:
                settled[decision] = str(first[decision]["task_id"])
            rows = [
                {
                    "judgment_id": f"late-{task}-{i}",
                    "task_id": task,
                    "annotator_id": f"w{i:02d}",
                    "label": "c0",
                }
                for task in settled.values()
                for i in range(12, 24)
            ]
            seed_database(
                dsn,
                judgments=pl.DataFrame(rows).with_columns(
                    project=pl.lit("reviews"),
                    submitted_at=pl.lit(datetime.now(UTC) - timedelta(seconds=30)),
                    duration_s=pl.lit(4.0),
                ),
            )

        runs = []

        def run() -> bool:
            runs.append(job.execute_in_process(instance=instance, run_config=QUIET))
            return runs[-1].success

        retried_after_the_db_write(data, dsn, run, scratch=tmp_path / "before", between=settle)
        with psycopg.connect(dsn, autocommit=True) as connection:
            after = _requests(connection)
            stamps = dict(
                connection.execute(
                    "SELECT decision_id, withdrawn_state FROM task_requests "
                    "WHERE status = 'withdrawn'"
                ).fetchall()
            )
        still = {d for d, r in after.items() if r["status"] in ("open", "acknowledged")}
        assert _open_listed(data) == still
        assert {d: after[d]["status"] for d in settled} == dict.fromkeys(settled, "withdrawn")
        assert {d: stamps[d] for d in settled} == dict.fromkeys(settled, "live/reviews")
        retry = runs[-1].get_asset_materialization_events()[0].materialization.metadata
        assert retry["task_requests_withdrawn"].value >= len(settled)
