"""The daily and the live write-back share one rule in the annotation DB, against a real
PostgreSQL: a task has at most one open (or acknowledged) request at a time whoever wrote it,
the newer decision stands, a daily decision that a task is settled withdraws the older open
request, a fulfilled row is never touched, and re-running a day writes and withdraws nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial

import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import apply_schema
from annotation_pipelines.loop.kind_posterior import queue_requests
from annotation_pipelines.loop.live import ANNOTATOR_ACTIONS, TASK_REQUESTS, decision_id
from annotation_pipelines.loop.writeback import write_requests, write_requests_recorded
from tests.services import fresh_database

pytestmark = pytest.mark.services
NO_ACTIONS = pl.DataFrame(schema=ANNOTATOR_ACTIONS)
DAY = date(2026, 11, 16)
DAY_END = datetime(2026, 11, 17, tzinfo=UTC)


def _live(tasks: list[str], at: datetime, version: int) -> pl.DataFrame:
    """Requests as the live layer writes them: one decision per task and state version."""
    return pl.DataFrame(
        {
            "task_id": tasks,
            "project": ["detection"] * len(tasks),
            "request": ["another_judgment"] * len(tasks),
            "reason": ["boxes: confidence 0.5 < target 0.8"] * len(tasks),
            "confidence": [0.5] * len(tasks),
            "posterior": ['{"kind": "boxes"}'] * len(tasks),
            "decision_id": [
                decision_id("another_judgment", "detection", t, version) for t in tasks
            ],
            "created_at": [at] * len(tasks),
        },
        schema=TASK_REQUESTS,
    )


def _queue(tasks: list[str], day: date = DAY) -> pl.DataFrame:
    """A day's kind queue (`kind_reannotation_queue` rows) asking another vote on `tasks`."""
    return pl.DataFrame(
        {
            "project": ["detection"] * len(tasks),
            "day": [day] * len(tasks),
            "kind": ["boxes"] * len(tasks),
            "task_id": tasks,
            "confidence": [0.4] * len(tasks),
            "n_judgments": [3] * len(tasks),
            "decision": ["needs_another_judgment"] * len(tasks),
            "reason": ["confidence 0.400 < target 0.8"] * len(tasks),
        }
    )


def _daily(dsn: str, queued: list[str], settled: list[str], day: date = DAY) -> dict[str, int]:
    decided_at = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return write_requests(
        dsn,
        task_requests=queue_requests(_queue(queued, day), created_at=decided_at),
        annotator_actions=NO_ACTIONS,
        settled=pl.DataFrame({"project": ["detection"] * len(settled), "task_id": settled}),
        decided_at=decided_at,
    )


def _rows(dsn: str) -> dict[str, tuple[str, str, datetime]]:
    """decision_id: (task, status, updated_at)."""
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT decision_id, task_id, status, updated_at FROM task_requests"
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _open(dsn: str) -> dict[str, list[str]]:
    """task: the decision ids of its open or acknowledged rows."""
    found: dict[str, list[str]] = {}
    for decision, (task, status, _) in _rows(dsn).items():
        if status in ("open", "acknowledged"):
            found.setdefault(task, []).append(decision)
    return found


def _set(dsn: str, decision: str, status: str) -> None:
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "UPDATE task_requests SET status = %s, "
            "closed_at = CASE WHEN %s = 'fulfilled' THEN now() END WHERE decision_id = %s",
            (status, status, decision),
        )


def test_the_newer_decision_stands_across_the_daily_and_the_live_writer() -> None:
    with fresh_database("request_writers") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        # The live layer asked about five tasks during the day, and about `late` after it ended.
        during = _live(
            ["older", "settles", "fulfilled", "acked", "kept"], DAY_END - timedelta(hours=3), 7
        )
        late = _live(["late"], DAY_END + timedelta(minutes=30), 9)
        write_requests(dsn, task_requests=pl.concat([during, late]), annotator_actions=NO_ACTIONS)
        ids = dict(zip(during["task_id"], during["decision_id"], strict=True))
        ids["late"] = late["decision_id"][0]
        _set(dsn, ids["fulfilled"], "fulfilled")
        _set(dsn, ids["acked"], "acknowledged")

        # The day's decisions: still unsure about `older`, `fulfilled`, `acked`, `late` and a
        # task the live layer never asked about; `settles` is settled. `kept` was not judged
        # that day: the day decides nothing about it.
        queued = ["older", "fulfilled", "acked", "late", "daily_only"]
        counts = _daily(dsn, queued, settled=["settles"])
        # Every decision is recorded; `late`'s at once withdrawn, as the live one is newer.
        assert counts["task_requests"] == len(queued)
        rows = _rows(dsn)
        assert {d: rows[d][1] for d in ids.values()} == {
            ids["older"]: "withdrawn",  # replaced by the day's newer decision
            ids["settles"]: "withdrawn",  # the day found it settled
            ids["fulfilled"]: "fulfilled",  # never touched
            ids["acked"]: "withdrawn",  # the tool had taken it; the day's decision is newer
            ids["kept"]: "open",
            ids["late"]: "open",  # decided after the day ended: it stands
        }
        opened = _open(dsn)
        assert all(len(found) == 1 for found in opened.values()), opened
        assert set(opened) == {"older", "fulfilled", "acked", "kept", "late", "daily_only"}
        assert opened["late"] == [ids["late"]]
        assert counts["withdrawn"] == 4  # older, settles, acked, and the day's own `late`

        # A retry or a backfill of the same day: nothing new, nothing withdrawn, no row moved.
        before = _rows(dsn)
        assert _daily(dsn, queued, settled=["settles"]) == {
            "task_requests": 0,
            "annotator_actions": 0,
            "withdrawn": 0,
            "reopened": 0,
            "blocks_withdrawn": 0,
        }
        assert _rows(dsn) == before

        # The next day, `daily_only` is still unsure (a new decision replaces the day's), and
        # `older` and `late` are settled: that day's end is after the live decision on `late`.
        counts = _daily(dsn, ["daily_only"], settled=["older", "late"], day=DAY + timedelta(days=1))
        assert counts == {
            "task_requests": 1,
            "annotator_actions": 0,
            "withdrawn": 3,
            "reopened": 0,
            "blocks_withdrawn": 0,
        }
        opened = _open(dsn)
        assert set(opened) == {"fulfilled", "acked", "kept", "daily_only"}

        # A backfill of the first day after the second: its decisions are older than the
        # second day's, so they do not come back over them.
        before = _open(dsn)
        assert _daily(dsn, queued, settled=["settles"])["task_requests"] == 0
        assert _open(dsn) == before

        # The live layer: new evidence on `daily_only` (a new request replaces the day's), and
        # its listed request on `kept` withdrawn as the task settled; a live decision that a
        # task settled also withdraws the older daily row of that task (`acked`).
        now = datetime.now(UTC)
        daily_acked = opened["acked"][0]
        counts = write_requests(
            dsn,
            task_requests=_live(["daily_only"], now, 12),
            annotator_actions=NO_ACTIONS,
            withdrawn=[ids["kept"], ids["acked"]],
        )
        assert counts["task_requests"] == 1
        assert counts["withdrawn"] == 3  # the day's `daily_only`, `kept`, the day's `acked`
        opened = _open(dsn)
        assert set(opened) == {"fulfilled", "daily_only"}
        assert _rows(dsn)[daily_acked][1] == "withdrawn"
        assert all(len(found) == 1 for found in opened.values())


def test_writers_racing_on_the_same_tasks_leave_one_open_request_each() -> None:
    tasks = [f"t{i:03d}" for i in range(200)]
    with fresh_database("request_race") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        failures: list[BaseException] = []

        def run(write: Callable[[], object], start: threading.Barrier) -> None:
            try:
                start.wait()
                write()
            except BaseException as error:  # reported by the main thread
                failures.append(error)

        # Rounds of three live and three daily writers at once; each round's decisions are
        # newer than the last's. Unserialized, one round in two or three left two open.
        for round_ in range(5):
            first_day = DAY + timedelta(days=3 * round_)
            start = threading.Barrier(6)
            writes: list[Callable[[], object]] = [
                partial(
                    write_requests,
                    dsn,
                    task_requests=_live(
                        tasks,
                        datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
                        + timedelta(days=1, minutes=minute),
                        10 * round_ + minute,
                    ),
                    annotator_actions=NO_ACTIONS,
                )
                for minute in (1, 2, 3)
            ]
            writes += [
                partial(_daily, dsn, tasks, [], first_day + timedelta(days=offset))
                for offset in (0, 1, 2)
            ]
            threads = [threading.Thread(target=run, args=(w, start)) for w in writes]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not failures, failures
            opened = _open(dsn)
            assert set(opened) == set(tasks)
            assert all(len(found) == 1 for found in opened.values()), round_
            # The newest decision stands whatever order the writers committed in: the third
            # day's (decided at its end, after the live layer's last).
            last = queue_requests(_queue(tasks, first_day + timedelta(days=2)), created_at=DAY_END)
            newest = set(last.get_column("decision_id"))
            assert {found[0] for found in opened.values()} == newest


def test_a_write_again_at_another_time_gets_the_created_at_the_db_kept() -> None:
    """The second write of the same decisions (a retried run, its own clock) inserts nothing
    and is told the first write's `created_at` for each; the first write is told nothing."""
    first_at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    with fresh_database("writers_recorded") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        none = pl.DataFrame(schema=ANNOTATOR_ACTIONS)
        first = _live(["t1", "t2"], first_at, version=3)
        counts, recorded = write_requests_recorded(dsn, task_requests=first, annotator_actions=none)
        assert counts["task_requests"] == 2
        assert recorded == {}
        retried = pl.concat(
            [
                _live(["t1", "t2"], first_at + timedelta(seconds=7), version=3),
                _live(["t3"], first_at + timedelta(seconds=7), version=3),
            ]
        )
        counts, recorded = write_requests_recorded(
            dsn, task_requests=retried, annotator_actions=none
        )
        assert counts["task_requests"] == 1
        assert recorded == dict.fromkeys(first["decision_id"], first_at)
        # The same decisions at the same time again: nothing to correct.
        assert write_requests_recorded(dsn, task_requests=first, annotator_actions=none)[1] == {}
