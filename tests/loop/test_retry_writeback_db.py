"""A live write is authoritative for the state version it writes, against a real PostgreSQL: a
first attempt that wrote the DB and never committed its lake, retried with more judgments
that decide otherwise, leaves the open rows equal to what the retry lists; a retry deciding
the same changes nothing; the tool's rows (acknowledged, fulfilled, revoked) are never
touched; a block of the first attempt that the retry does not decide is withdrawn."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest

from annotation_pipelines.ingest.postgres import apply_schema, migration_files
from annotation_pipelines.loop.live import ANNOTATOR_ACTIONS, TASK_REQUESTS, decision_id
from annotation_pipelines.loop.writeback import (
    LiveLockLost,
    StateWrite,
    live_lock,
    write_requests,
    write_requests_recorded,
)
from tests.services import fresh_database

pytestmark = pytest.mark.services
PROJECT = "detection"
STATE = "live/detection/kinds/boxes"
NO_ACTIONS = pl.DataFrame(schema=ANNOTATOR_ACTIONS)
START = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _requests(decided: dict[str, int], at: datetime) -> pl.DataFrame:
    """The state's requests: task → the state version that decided it."""
    return pl.DataFrame(
        {
            "task_id": list(decided),
            "project": [PROJECT] * len(decided),
            "request": ["another_judgment"] * len(decided),
            "reason": ["boxes: confidence 0.5 < target 0.8"] * len(decided),
            "confidence": [0.5] * len(decided),
            "posterior": ['{"kind": "boxes"}'] * len(decided),
            "decision_id": [
                decision_id("another_judgment", PROJECT, task, version)
                for task, version in decided.items()
            ],
            "created_at": [at] * len(decided),
        },
        schema=TASK_REQUESTS,
    ).with_columns(state=pl.lit(STATE))


def _blocks(annotators: list[str], version: int, at: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "annotator_id": annotators,
            "project": [PROJECT] * len(annotators),
            "action": ["block"] * len(annotators),
            "reason": ["boxes: gold F1 upper bound 0.31 < 0.5"] * len(annotators),
            "evidence": ['{"kind": "boxes"}'] * len(annotators),
            "decision_id": [decision_id("boxes_block", PROJECT, a, version) for a in annotators],
            "created_at": [at] * len(annotators),
        },
        schema=ANNOTATOR_ACTIONS,
    ).with_columns(state=pl.lit(STATE))


def _write(
    dsn: str,
    requests: pl.DataFrame,
    *,
    base: int,
    keeps: set[str],
    blocks: pl.DataFrame | None = None,
    withdrawn: list[str] | None = None,
) -> tuple[dict[str, int], dict[str, datetime]]:
    """One live write of the state from committed version `base`; `keeps`: what its lists
    hold after the run (requests listed, blocks in force)."""
    return write_requests_recorded(
        dsn,
        task_requests=requests,
        annotator_actions=blocks if blocks is not None else NO_ACTIONS.with_columns(state=None),
        withdrawn=withdrawn or [],
        states=[StateWrite(STATE, PROJECT, base, base + 1, keeps=lambda: keeps)],
    )


def _rows(dsn: str, table: str = "task_requests") -> dict[str, dict[str, object]]:
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        names = [column.name for column in cursor.description or []]
        return {
            row["decision_id"]: row for row in (dict(zip(names, r, strict=True)) for r in cursor)
        }


def _open(dsn: str) -> set[str]:
    return {d for d, row in _rows(dsn).items() if row["status"] == "open"}


def _ids(frame: pl.DataFrame) -> dict[str, str]:
    return dict(zip(frame["task_id"], frame["decision_id"], strict=True))


def test_a_retry_that_decides_otherwise_leaves_open_only_what_it_lists() -> None:
    with fresh_database("retry_writeback") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        # Committed: version 4 listed a request on `r`.
        committed = _requests({"r": 4}, START)
        _write(dsn, committed, base=3, keeps=set(_ids(committed).values()))
        listed_r = _ids(committed)["r"]
        # First attempt from version 4: asks about a and b, and asks about r again after a new
        # vote (a new decision that replaces the listed one); then its lake commit is lost.
        first = _requests({"a": 5, "b": 5, "r": 5}, START + timedelta(minutes=1))
        written, _ = _write(dsn, first, base=4, keeps=set(_ids(first).values()))
        ids = _ids(first)
        assert written["task_requests"] == 3 and written["withdrawn"] == 1
        assert _rows(dsn)[listed_r]["status"] == "withdrawn"
        before = _rows(dsn)

        # The retry folds more judgments: a is settled, b still wanted, c new, and r's new
        # vote is outweighed: its listed request stays as it was.
        retry = _requests({"b": 5, "c": 5}, START + timedelta(minutes=2))
        listed = {listed_r, *_ids(retry).values()}
        written, recorded = _write(dsn, retry, base=4, keeps=listed)
        rows = _rows(dsn)
        assert _open(dsn) == listed
        assert written == {
            "task_requests": 1,
            "annotator_actions": 0,
            "withdrawn": 2,  # a and the first attempt's r
            "reopened": 1,
            "blocks_withdrawn": 0,
        }
        for withdrawn in (ids["a"], ids["r"]):
            assert rows[withdrawn]["status"] == "withdrawn"
            assert rows[withdrawn]["closed_at"] is not None
            assert (rows[withdrawn]["withdrawn_state"], rows[withdrawn]["withdrawn_version"]) == (
                STATE,
                5,
            )
        # r's listed request is open again, as if never withdrawn; b keeps its first row.
        assert rows[listed_r]["closed_at"] is None and rows[listed_r]["withdrawn_state"] is None
        assert rows[listed_r]["created_at"] == before[listed_r]["created_at"]
        assert rows[ids["b"]] == before[ids["b"]]
        assert recorded == {ids["b"]: START + timedelta(minutes=1)}

        # The same retry again (it failed once more): nothing moves, not even updated_at.
        written, _ = _write(dsn, retry, base=4, keeps=listed)
        assert _rows(dsn) == rows
        assert written["withdrawn"] == written["reopened"] == written["task_requests"] == 0

        # Committed at version 5, the next run (from 5) finds no attempt to supersede: the
        # listed rows stay open whatever it decides.
        later = _requests({"d": 6}, START + timedelta(minutes=3))
        _write(dsn, later, base=5, keeps=listed | set(_ids(later).values()))
        assert _open(dsn) == listed | set(_ids(later).values())


def test_a_retry_deciding_the_same_changes_nothing() -> None:
    with fresh_database("retry_writeback_same") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        first = _requests({"a": 5, "b": 5}, START)
        _write(dsn, first, base=4, keeps=set(_ids(first).values()))
        before = _rows(dsn)
        again = _requests({"a": 5, "b": 5}, START + timedelta(seconds=30))
        written, recorded = _write(dsn, again, base=4, keeps=set(_ids(again).values()))
        assert _rows(dsn) == before
        assert written == dict.fromkeys(written, 0)
        assert recorded == dict.fromkeys(_ids(first).values(), START)


def test_the_tool_s_rows_stay_as_the_tool_left_them() -> None:
    with fresh_database("retry_writeback_tool") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        first = _requests({"a": 5, "b": 5, "k": 5}, START)
        _write(dsn, first, base=4, keeps=set(_ids(first).values()))
        ids = _ids(first)
        with psycopg.connect(dsn) as connection:
            connection.execute(
                "UPDATE task_requests SET status = 'fulfilled', closed_at = now() "
                "WHERE decision_id = %s",
                (ids["a"],),
            )
            connection.execute(
                "UPDATE task_requests SET status = 'acknowledged' WHERE decision_id = %s",
                (ids["k"],),
            )
        before = _rows(dsn)
        retry = _requests({"b": 5, "c": 5}, START + timedelta(minutes=1))
        _write(dsn, retry, base=4, keeps=set(_ids(retry).values()))
        rows = _rows(dsn)
        assert _open(dsn) == set(_ids(retry).values())
        # Done or taken before the retry decided otherwise: the tool's, unlisted.
        assert rows[ids["a"]] == before[ids["a"]]
        assert rows[ids["k"]] == before[ids["k"]]


def test_a_re_opened_request_gets_back_the_status_the_attempt_withdrew_it_from() -> None:
    """Committed requests on k (the tool took it: acknowledged) and o (open); the attempt
    replaces k with a new decision and closes o; the retry keeps both: k is acknowledged
    again, so the tool keeps it as taken, and o open."""
    with fresh_database("retry_writeback_acknowledged") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        committed = _requests({"k": 4, "o": 4}, START)
        listed = _ids(committed)
        _write(dsn, committed, base=3, keeps=set(listed.values()))
        with psycopg.connect(dsn) as connection:
            connection.execute(
                "UPDATE task_requests SET status = 'acknowledged' WHERE decision_id = %s",
                (listed["k"],),
            )
        first = _requests({"k": 5}, START + timedelta(minutes=1))
        _write(dsn, first, base=4, keeps=set(_ids(first).values()), withdrawn=[listed["o"]])
        rows = _rows(dsn)
        assert [(rows[listed[t]]["status"], rows[listed[t]]["withdrawn_from"]) for t in "ko"] == [
            ("withdrawn", "acknowledged"),
            ("withdrawn", "open"),
        ]

        written, _ = _write(
            dsn, _requests({}, START + timedelta(minutes=2)), base=4, keeps=set(listed.values())
        )
        rows = _rows(dsn)
        assert written["reopened"] == 2
        assert [(rows[listed[t]]["status"], rows[listed[t]]["withdrawn_from"]) for t in "ko"] == [
            ("acknowledged", None),
            ("open", None),
        ]
        for task in "ko":
            row = rows[listed[task]]
            assert (row["closed_at"], row["withdrawn_state"], row["withdrawn_version"]) == (
                None,
                None,
                None,
            )
        stale = rows[_ids(first)["k"]]
        assert (stale["status"], stale["withdrawn_from"]) == ("withdrawn", "open")


def test_a_block_the_retry_does_not_decide_is_withdrawn_and_back_in_force_if_decided_again():
    with fresh_database("retry_writeback_blocks") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        none = _requests({}, START)
        blocks = _blocks(["spammer", "revoked"], 5, START)
        _write(dsn, none, base=4, keeps=set(blocks["decision_id"]), blocks=blocks)
        spammer, revoked = blocks["decision_id"]
        with psycopg.connect(dsn) as connection:
            connection.execute(
                "UPDATE annotator_actions SET status = 'revoked', revoked_at = now(), "
                "revoked_by = 'lead' WHERE decision_id = %s",
                (revoked,),
            )
        # The retry's scorecards no longer cross the bound: neither is blocked.
        written, _ = _write(dsn, none, base=4, keeps=set())
        actions = _rows(dsn, "annotator_actions")
        assert written["blocks_withdrawn"] == 1
        assert actions[spammer]["status"] == "withdrawn"
        assert actions[spammer]["withdrawn_at"] is not None
        assert actions[revoked]["status"] == "revoked"  # the tool's
        with psycopg.connect(dsn) as connection, pytest.raises(psycopg.errors.CheckViolation):
            connection.execute(
                "UPDATE annotator_actions SET status = 'revoked', revoked_at = now(), "
                "revoked_by = 'lead' WHERE decision_id = %s",
                (spammer,),
            )
        # A third attempt blocks the spammer again: the same decision, in force again.
        again = _blocks(["spammer"], 5, START + timedelta(minutes=2))
        written, _ = _write(dsn, none, base=4, keeps=set(again["decision_id"]), blocks=again)
        actions = _rows(dsn, "annotator_actions")
        assert written["annotator_actions"] == 0
        assert actions[spammer]["status"] == "active" and actions[spammer]["withdrawn_at"] is None


def test_a_daily_write_is_not_a_live_attempt() -> None:
    """Without states (the daily queue) nothing is stamped and nothing superseded."""
    with fresh_database("retry_writeback_daily") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        first = _requests({"a": 5}, START)
        _write(dsn, first, base=4, keeps=set(_ids(first).values()))
        daily = _requests({"a": 9}, START + timedelta(hours=1)).drop("state")
        counts = write_requests(dsn, task_requests=daily, annotator_actions=NO_ACTIONS)
        rows = _rows(dsn)
        assert counts["withdrawn"] == 1
        row = rows[_ids(daily)["a"]]
        assert (row["state"], row["state_version"]) == (None, None)
        gone = rows[_ids(first)["a"]]
        assert (gone["status"], gone["withdrawn_state"]) == ("withdrawn", None)


def test_a_run_that_lost_the_live_lock_writes_nothing() -> None:
    """The live lock's session dies (its backend terminated) before the run writes: the write
    is refused, so a run that another may have overtaken does not write as its version."""
    with fresh_database("retry_writeback_lock") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        first = _requests({"a": 5}, START)
        state = [StateWrite(STATE, PROJECT, 4, 5)]
        with live_lock(dsn) as lock:
            written = write_requests(
                dsn, task_requests=first, annotator_actions=NO_ACTIONS, states=state, lock=lock
            )
            assert written["task_requests"] == 1
            # Without a timeout the call only signals the backend, and on a loaded machine the
            # write below could still find it alive; with one, it returns once the backend is gone.
            with psycopg.connect(dsn, autocommit=True) as other:
                ended = other.execute(
                    "SELECT pg_terminate_backend(%s, 10000)", (lock.connection.info.backend_pid,)
                ).fetchone()
            assert ended == (True,)
            later = _requests({"b": 5}, START)
            with pytest.raises(LiveLockLost, match="no longer held by backend"):
                write_requests(
                    dsn, task_requests=later, annotator_actions=NO_ACTIONS, states=state, lock=lock
                )
        assert set(_rows(dsn)) == set(first["decision_id"])


_TASKS = {"project": pl.String(), "task_id": pl.String()}


def _daily(decided: dict[str, int], at: datetime) -> pl.DataFrame:
    """The daily kind queue's requests (no state; their own decision ids)."""
    frame = _requests(decided, at).drop("state")
    return frame.with_columns(
        decision_id=pl.Series(
            [decision_id("kind_request", PROJECT, task, day) for task, day in decided.items()]
        )
    )


def _write_daily(
    dsn: str,
    requests: pl.DataFrame,
    *,
    decided_at: datetime,
    settled: list[str] | None = None,
) -> dict[str, int]:
    return write_requests(
        dsn,
        task_requests=requests,
        annotator_actions=NO_ACTIONS,
        settled=pl.DataFrame(
            {"project": [PROJECT] * len(settled or []), "task_id": settled or []}, schema=_TASKS
        ),
        decided_at=decided_at,
    )


def test_a_daily_request_the_failed_attempt_replaced_is_open_again_after_the_retry() -> None:
    """The attempt's request on T withdrew the daily one; the retry asks nothing about T: the
    daily request is open again, as if the attempt never ran."""
    with fresh_database("retry_writeback_daily_restored") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        daily = _daily({"T": 1}, START)
        _write_daily(dsn, daily, decided_at=START)
        first = _requests({"T": 5}, START + timedelta(hours=1))
        _write(dsn, first, base=4, keeps=set(_ids(first).values()))
        assert _rows(dsn)[_ids(daily)["T"]]["withdrawn_state"] == STATE

        written, _ = _write(dsn, _requests({}, START + timedelta(hours=2)), base=4, keeps=set())
        rows = _rows(dsn)
        assert _open(dsn) == {_ids(daily)["T"]}
        assert written["reopened"] == 1 and written["withdrawn"] == 1
        restored = rows[_ids(daily)["T"]]
        assert (restored["closed_at"], restored["withdrawn_state"]) == (None, None)
        assert rows[_ids(first)["T"]]["status"] == "withdrawn"


def test_a_retry_that_closes_what_the_attempt_closed_withdraws_it_again() -> None:
    """A daily request the attempt withdrew by closing its task, and the retry closes it too:
    it ends withdrawn (this write's, stamped with its version), not open."""
    with fresh_database("retry_writeback_daily_closed") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        daily = _daily({"T": 1}, START)
        _write_daily(dsn, daily, decided_at=START)
        closed = [_ids(daily)["T"]]
        none = _requests({}, START + timedelta(hours=1))
        _write(dsn, none, base=4, keeps=set(), withdrawn=closed)
        _write(dsn, none, base=4, keeps=set(), withdrawn=closed)
        row = _rows(dsn)[_ids(daily)["T"]]
        assert (row["status"], row["withdrawn_state"], row["withdrawn_version"]) == (
            "withdrawn",
            STATE,
            5,
        )


def test_a_re_opened_request_does_not_leave_two_open_on_its_task() -> None:
    """Committed r0 on T; the attempt closes it; the daily queue, deciding before r0, asks
    about T (the only open request, so it stays); the retry keeps r0: r0 is open again and
    the older daily request withdrawn, newest wins."""
    with fresh_database("retry_writeback_two_open") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        r0 = _requests({"T": 4}, START + timedelta(minutes=30))
        _write(dsn, r0, base=3, keeps=set(_ids(r0).values()))
        listed = _ids(r0)["T"]
        _write(
            dsn, _requests({}, START + timedelta(hours=1)), base=4, keeps=set(), withdrawn=[listed]
        )
        daily = _daily({"T": 1}, START)
        _write_daily(dsn, daily, decided_at=START)
        assert _open(dsn) == {_ids(daily)["T"]}

        _write(dsn, _requests({}, START + timedelta(hours=2)), base=4, keeps={listed})
        assert _open(dsn) == {listed}
        assert _rows(dsn)[_ids(daily)["T"]]["status"] == "withdrawn"


def _r0_closed_by_an_attempt(dsn: str) -> str:
    """The schema applied, version 4 committed with one request r0 on task T (listed), then an
    attempt from version 4 that closed r0 and never committed; returns r0's decision id."""
    apply_schema(dsn)
    r0 = _requests({"T": 4}, START)
    _write(dsn, r0, base=3, keeps=set(_ids(r0).values()))
    listed = _ids(r0)["T"]
    _write(dsn, _requests({}, START + timedelta(hours=1)), base=4, keeps=set(), withdrawn=[listed])
    return listed


def test_a_request_the_daily_queue_settled_meanwhile_stays_withdrawn() -> None:
    """The attempt closed r0; the daily queue then settles T (it would have withdrawn r0): the
    retry that keeps r0 does not bring it back."""
    with fresh_database("retry_writeback_settled") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        listed = _r0_closed_by_an_attempt(dsn)
        _write_daily(dsn, _daily({}, START), decided_at=START + timedelta(hours=2), settled=["T"])
        row = _rows(dsn)[listed]
        assert (row["status"], row["withdrawn_state"], row["withdrawn_from"]) == (
            "withdrawn",
            None,
            None,
        )

        written, _ = _write(dsn, _requests({}, START + timedelta(hours=3)), base=4, keeps={listed})
        assert written["reopened"] == 0
        assert _open(dsn) == set()


def test_a_newer_request_in_any_status_keeps_an_older_one_withdrawn() -> None:
    """A newer request on the task, done by the tool since the attempt withdrew r0: r0 stays
    withdrawn (the task has had its answer)."""
    with fresh_database("retry_writeback_newer_done") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        listed = _r0_closed_by_an_attempt(dsn)
        with psycopg.connect(dsn) as connection:
            connection.execute(
                "INSERT INTO task_requests (task_id, project, request, reason, decision_id, "
                "created_at, status, closed_at) VALUES ('T', %s, 'expert_review', 'tool', "
                "'tool-T', %s, 'fulfilled', now())",
                (PROJECT, START + timedelta(minutes=10)),
            )
        written, _ = _write(dsn, _requests({}, START + timedelta(hours=2)), base=4, keeps={listed})
        assert written["reopened"] == 0
        assert _rows(dsn)[listed]["status"] == "withdrawn"
        assert _open(dsn) == set()


def test_a_newer_daily_request_takes_over_the_attempt_s_withdrawal() -> None:
    """The attempt closed r0; the daily queue then asks about T with a newer decision (it
    would have replaced r0): r0 becomes the daily write's withdrawal, and the retry that keeps
    r0 leaves it withdrawn and the daily request open."""
    with fresh_database("retry_writeback_newer_daily") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        listed = _r0_closed_by_an_attempt(dsn)
        daily = _daily({"T": 1}, START + timedelta(hours=2))
        _write_daily(dsn, daily, decided_at=START + timedelta(hours=2))
        row = _rows(dsn)[listed]
        assert (
            row["status"],
            row["withdrawn_state"],
            row["withdrawn_version"],
            row["withdrawn_from"],
        ) == ("withdrawn", None, None, None)
        written, _ = _write(dsn, _requests({}, START + timedelta(hours=3)), base=4, keeps={listed})
        assert written["reopened"] == 0
        assert _open(dsn) == {_ids(daily)["T"]}


def test_a_request_from_before_the_state_columns_is_restored_like_a_daily_one() -> None:
    """A live request written before migration 7 (no state) that the attempt withdrew, and
    the retry neither closes nor replaces: open again."""
    with fresh_database("retry_writeback_unstamped") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        old = _requests({"T": 2}, START).drop("state")
        write_requests(dsn, task_requests=old, annotator_actions=NO_ACTIONS)
        first = _requests({"T": 5}, START + timedelta(hours=1))
        _write(dsn, first, base=4, keeps=set(_ids(first).values()))
        assert _open(dsn) == set(_ids(first).values())
        _write(dsn, _requests({}, START + timedelta(hours=2)), base=4, keeps={_ids(old)["T"]})
        assert _open(dsn) == {_ids(old)["T"]}


def test_a_lock_held_by_the_same_pid_in_another_session_is_not_this_run_s() -> None:
    """A backend that took over the pid of the run's lock session (the session died, its pid
    reused) is not the run's session: the write is refused."""
    with fresh_database("retry_writeback_pid") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        state = [StateWrite(STATE, PROJECT, 4, 5)]
        with live_lock(dsn) as lock:
            assert lock.backend_start is not None
            written = write_requests(
                dsn,
                task_requests=_requests({"a": 5}, START),
                annotator_actions=NO_ACTIONS,
                states=state,
                lock=lock,
            )
            assert written["task_requests"] == 1
            # The same pid, holding the lock, but a session started at another time.
            recycled = dataclasses.replace(
                lock, backend_start=lock.backend_start - timedelta(seconds=1)
            )
            with pytest.raises(LiveLockLost, match="no longer held by backend"):
                write_requests(
                    dsn,
                    task_requests=_requests({"b": 5}, START),
                    annotator_actions=NO_ACTIONS,
                    states=state,
                    lock=recycled,
                )
        assert set(_rows(dsn)) == set(_requests({"a": 5}, START)["decision_id"])


def _schema_of(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(
            "SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid IN ('annotator_actions'::regclass, 'task_requests'::regclass) "
            "UNION ALL SELECT 'index', indexrelid::regclass::text, pg_get_indexdef(indexrelid) "
            "FROM pg_index "
            "WHERE indrelid IN ('annotator_actions'::regclass, 'task_requests'::regclass) "
            "UNION ALL SELECT 'function', proname, prosrc FROM pg_proc "
            "WHERE proname = 'annotator_actions_keep_revoked' "
            "UNION ALL SELECT 'trigger', tgname, tgrelid::regclass::text FROM pg_trigger "
            "WHERE NOT tgisinternal ORDER BY 1, 2"
        ).fetchall()


def test_every_migration_run_again_over_withdrawn_and_revoked_kind_blocks_changes_nothing() -> None:
    """Running the migration files again in order (as with psql) over a database holding a
    withdrawn block and a revoked kind block: no error, the same schema."""
    with fresh_database("retry_writeback_migrations") as database:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
        apply_schema(dsn)
        before = _schema_of(dsn)
        with psycopg.connect(dsn) as connection:
            connection.execute(
                "INSERT INTO annotator_actions (annotator_id, project, action, reason, evidence, "
                "decision_id, status, withdrawn_at) VALUES ('a', %(p)s, 'block', 'r', "
                """'{"kind": "boxes"}', 'gone', 'withdrawn', now()), ('b', %(p)s, 'block', """
                """'r', '{"kind": "boxes"}', 'lifted', 'active', NULL)""",
                {"p": PROJECT},
            )
            connection.execute(
                "UPDATE annotator_actions SET status = 'revoked', revoked_at = now(), "
                "revoked_by = 'lead' WHERE decision_id = 'lifted'"
            )
        for _ in range(2):
            for _version, path in migration_files():
                with psycopg.connect(dsn) as connection:
                    connection.execute(path.read_text())
        assert _schema_of(dsn) == before
        actions = _rows(dsn, "annotator_actions")
        assert (actions["gone"]["status"], actions["lifted"]["status"]) == (
            "withdrawn",
            "revoked",
        )
