"""The annotation DB stops answering: every wait is bounded, a run that lost the live lock does
not commit, and the live sensor skips with one line and one alert per outage.

Real PostgreSQL; the outages are a closed port and a listening socket that never answers.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import psycopg
import pytest
from dagster import DagsterInstance, build_sensor_context

from annotation_pipelines.ingest.connection import DatabaseUnreachable, Timeouts, connect
from annotation_pipelines.ingest.postgres import apply_schema, seed_database
from annotation_pipelines.loop.live import load_state, load_stream
from annotation_pipelines.loop.writeback import LIVE_LOCK_KEY, LiveLockLost, LiveLockTimeout
from assets.definitions import build_definitions
from assets.live.assets import fence, stream_position
from assets.live.sensors import DB_UNREACHABLE
from resources.annotation_db import AnnotationDatabase
from resources.lake import LocalLake
from tests.loop.test_live_writeback import _judgments
from tests.services import ensure_postgres, free_port, fresh_database
from tests.support import lake_reader, live_quality_job

pytestmark = pytest.mark.services
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@contextmanager
def silent_server() -> Iterator[int]:
    """A port whose kernel completes the TCP handshake and then nothing ever answers (a
    database behind a partition, a proxy passing no bytes); yields the port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def test_a_closed_port_fails_at_once_naming_the_database():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(DatabaseUnreachable) as raised:
        connect(f"postgresql://postgres:secret@127.0.0.1:{port}/annotations")
    assert time.monotonic() - started < 2
    message = str(raised.value)
    assert f"127.0.0.1:{port}/annotations" in message and "refused" in message
    assert "secret" not in message and "\n" not in message


def test_a_database_that_never_answers_fails_within_the_connect_timeout():
    with silent_server() as port:
        database = AnnotationDatabase(
            dsn=f"postgresql://postgres@127.0.0.1:{port}/annotations", connect_timeout_seconds=2
        )
        for probe in (database.safe_upper_bound, lambda: database.extract_live(since=EPOCH)):
            started = time.monotonic()
            with pytest.raises(DatabaseUnreachable, match=rf"127.0.0.1:{port}.*timeout"):
                probe()
            # libpq's timeout is whole seconds and may apply once more while it gives up.
            assert time.monotonic() - started < 5


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_every_connection_carries_keepalives_and_the_limits_of_its_use():
    ensure_postgres()
    with fresh_database("db_limits") as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        database = AnnotationDatabase(dsn=dsn, probe_timeout_seconds=3, lock_timeout_seconds=7)
        show = "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
        with connect(database.probe_dsn) as probe:
            assert probe.execute(show).fetchone() == ("3s", "0")
            params = probe.info.get_parameters()
            assert params["keepalives_idle"] == "10" and params["connect_timeout"] == "10"
        with connect(database.work_dsn) as work:
            assert work.execute(show).fetchone() == ("10min", "10min")
        with database.live_lock() as lock:
            assert lock.connection.execute(show).fetchone() == ("10s", "7s")
        # A limit the DSN sets itself wins.
        with connect(dsn + "?connect_timeout=3&options=-c%20statement_timeout%3D1234") as own:
            assert own.execute(show).fetchone()[0] == "1234ms"
            assert own.info.get_parameters()["connect_timeout"] == "3"
        with (
            connect(dsn, timeouts=Timeouts(statement=1)) as short,
            pytest.raises(psycopg.errors.QueryCanceled),
        ):
            short.execute("SELECT pg_sleep(3)")


def test_the_wait_for_the_live_lock_is_bounded_and_names_the_holder():
    with fresh_database("live_lock_wait") as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        holder = AnnotationDatabase(dsn=dsn)
        waiter = AnnotationDatabase(dsn=dsn, lock_timeout_seconds=2)
        with holder.live_lock() as held:
            pid = held.connection.info.backend_pid
            started = time.monotonic()
            with (
                pytest.raises(LiveLockTimeout, match=rf"held by backend {pid}"),
                waiter.live_lock(),
            ):
                pass
            waited = time.monotonic() - started
            assert 1.9 < waited < 4
        # Released: the next run takes it at once.
        with waiter.live_lock() as lock:
            lock.verify()


def _terminate_lock_holder(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as admin:
        row = admin.execute(
            # Advisory locks are per database: another test's live lock elsewhere on the
            # server is not this one's to end.
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LIVE_LOCK_KEY,),
        ).fetchone()
        assert row is not None
        # With a timeout it returns once the backend is gone, not when signalled.
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (row[0],))
        return int(row[0])


def test_the_fence_refuses_a_commit_once_the_lock_is_lost_or_the_state_moved(tmp_path):
    lake = LocalLake(base_path=str(tmp_path / "lake"))
    with fresh_database("live_fence") as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        database = AnnotationDatabase(dsn=dsn)
        with database.live_lock() as lock:
            position = stream_position(lake)
            fence(lock, lake, position)  # held, nothing moved: it may commit
            lake.commit({"live/_stream/watermark.json": b'{"watermark": "2026-11-30T00:00:00"}'})
            with pytest.raises(LiveLockLost, match="committed by another run"):
                fence(lock, lake, position)
        with database.live_lock() as lock:
            _terminate_lock_holder(dsn)
            with pytest.raises(LiveLockLost, match=r"live lock on 127.0.0.1:5432/.* lost"):
                fence(lock, lake, stream_position(lake))
        # Another session took the lock after the drop: still refused.
        with database.live_lock() as lock:
            _terminate_lock_holder(dsn)
            with database.live_lock(), pytest.raises(LiveLockLost):
                lock.verify()


def test_a_live_run_whose_lock_session_drops_commits_nothing_and_the_next_folds_once(
    tmp_path, monkeypatch
):
    judgments = _judgments(n_tasks=100)
    data = tmp_path / "data"
    with fresh_database("live_lost_lock") as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        seed_database(dsn, judgments=judgments, label_sets={"reviews": ["c0", "c1", "c2"]})
        _, job, instance = live_quality_job(monkeypatch, dsn=dsn, data=data)
        # Hold the run inside its lock: its extract waits for this table lock.
        blocker = psycopg.connect(dsn)
        blocker.execute("LOCK TABLE judgments IN ACCESS EXCLUSIVE MODE")
        outcome: dict[str, object] = {}

        def run() -> None:
            outcome["result"] = job.execute_in_process(
                instance=instance, run_config=QUIET, raise_on_error=False
            )

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 60
        with psycopg.connect(dsn, autocommit=True) as watcher:
            while time.monotonic() < deadline:
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                    "'judgments'::regclass"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.1)
        _terminate_lock_holder(dsn)
        blocker.rollback()
        blocker.close()
        worker.join(120)
        result = outcome["result"]
        assert not result.success  # type: ignore[attr-defined]
        failure = next(
            e
            for e in result.all_events  # type: ignore[attr-defined]
            if e.event_type_value == "STEP_FAILURE"
        )
        error = failure.step_failure_data.error
        causes = []
        while error is not None:
            causes.append((error.cls_name, error.message))
            error = error.cause
        assert "LiveLockLost" in [name for name, _ in causes]
        read = lake_reader(data / "lake")
        assert read("live/_stream/watermark.json") is None  # nothing committed
        assert load_state("reviews", read).version == 0
        # The next run folds every judgment, once.
        assert job.execute_in_process(instance=instance, run_config=QUIET).success
        assert load_state("reviews", read).ledger.height == judgments.height
        assert load_stream(read)[0] > EPOCH


def _tick(instance: DagsterInstance, cursor: str | None):
    from annotation_pipelines.settings import load_settings
    from assets.definitions import resources_for

    defs = build_definitions(profile="local")
    sensor = defs.resolve_sensor_def("live_quality_sensor")
    resources = resources_for(load_settings(profile="local"))
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor.evaluate_tick(context)


def _alerts(data: Path) -> list[dict]:
    folder = data / "lake" / "alerts"
    if not folder.exists():
        return []
    return [
        row for path in sorted(folder.glob("*.parquet")) for row in pl.read_parquet(path).to_dicts()
    ]


def test_the_live_sensor_skips_an_unreachable_database_with_one_line_and_one_alert(
    tmp_path, monkeypatch
):
    ensure_postgres()
    data = tmp_path / "data"
    port = free_port()
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(data))
    monkeypatch.setenv("ANNOTATION_DB_DSN", f"postgresql://postgres@127.0.0.1:{port}/annotations")
    instance = DagsterInstance.ephemeral()
    cursor = None
    reasons = []
    for _ in range(3):
        tick = _tick(instance, cursor)
        assert not tick.run_requests
        reasons.append(tick.skip_message)
        cursor = tick.cursor
    for reason in reasons:
        assert reason.startswith(f"annotation DB unreachable (127.0.0.1:{port}/annotations) for ")
        assert "refused" in reason and "\n" not in reason
    alerts = _alerts(data)
    assert [a["kind"] for a in alerts] == [DB_UNREACHABLE]
    assert f"127.0.0.1:{port}/annotations" in str(alerts[0]["message"])
    assert "db_unreachable_since" in json.loads(cursor)
    # The database answers again: the outage is over, and a new one would alert again.
    with fresh_database("sensor_recovery") as name:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        apply_schema(dsn)
        monkeypatch.setenv("ANNOTATION_DB_DSN", dsn)
        quiet = _tick(instance, cursor)
        assert not quiet.run_requests and quiet.skip_message.startswith("no changes")
        assert "db_unreachable_since" not in json.loads(quiet.cursor)
        seed_database(dsn, judgments=_judgments(n_tasks=100).head(50))
        tick = _tick(instance, quiet.cursor)
        assert tick.run_requests and "db_unreachable_since" not in json.loads(tick.cursor)
    assert len(_alerts(data)) == 1


def test_the_sensor_tick_stays_well_inside_dagster_s_limit_when_the_database_is_silent(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ANNOTATION_PIPELINES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANNOTATION_DB_CONNECT_TIMEOUT", "2")
    with silent_server() as port:
        monkeypatch.setenv("ANNOTATION_DB_DSN", f"postgresql://postgres@127.0.0.1:{port}/x")
        started = time.monotonic()
        tick = _tick(DagsterInstance.ephemeral(), None)
        elapsed = time.monotonic() - started
    assert isinstance(tick.skip_message, str) and "timeout" in tick.skip_message
    assert elapsed < 15
