"""Write the live loop's decisions where the annotation tool reads them: its own database.

`task_requests` (another judgment, expert review) and `annotator_actions` (block) are tables of
the annotation DB (`ingest/sql/002_loop_requests.sql`). Every row carries the `decision_id`
of the decision that caused it (see `loop.live.decision_id`) under a UNIQUE constraint, and is
inserted with `ON CONFLICT (decision_id) DO NOTHING`: a retried run, or two runs racing on the
same state version, write each decision once.

A request's `status` (`ingest/sql/003_request_status.sql`) is the tool's to move to
`acknowledged` or `fulfilled`; the pipelines only withdraw a request they no longer want, and
only while it is `open` or `acknowledged`, so a fulfilled request stays fulfilled.

A block's `status` (`ingest/sql/004_block_revoked.sql`) is the tool's to move to `revoked`;
the live runs read those changes (`read_reversals`) in the change stream's window.

A live write is authoritative for the state versions it writes (`StateWrite`,
`ingest/sql/007_live_attempts.sql`): a run that wrote the DB and failed before its lake commit
left rows no committed state lists, and its retry (any later write of the same state from the
same committed version) may decide otherwise, having folded the judgments that arrived
meanwhile. The rows record the state and version that wrote them, and the requests the state
and version that withdrew them; the retry withdraws the `open` requests and `active` blocks
written above its starting version that it neither decides again nor keeps, and re-opens the
requests withdrawn there that another writer wrote or that it decides or lists again, before
its own withdrawals, in the transaction of its inserts: what it withdraws is then what it
does not want. A request is not re-opened over a newer one of its task (but a newer one the
attempt withdrew), the re-opened tasks keep their newest request, and a daily write takes
over the attempt's withdrawals it would have made itself, so that no retry re-opens those.
It never touches an acknowledged, fulfilled or revoked row: those are the tool's.

Two writers ask about the same tasks: the live layer and the daily kind queue. A task keeps
at most one open (or acknowledged) request whoever wrote it, and the newer decision stands:
each write, in the transaction of its inserts, withdraws every open request of the tasks it
decides on but the one with the latest `created_at` (the time of the decision). A project
holds one kind, so (project, task) is the task of one kind. The writes take one
transaction-level advisory lock, so two writers deciding on one task cannot both leave their
request open. The lock orders the pipelines' writers only: a tool transaction that updates
several request rows in another order can still deadlock with a withdrawal, and PostgreSQL then
aborts one side (a pipeline run that loses fails and is retried), while writers queue behind the
advisory lock until the first finishes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from annotation_pipelines.ingest.connection import connect, describe, first_line
from annotation_pipelines.ingest.postgres import validate_identifier
from annotation_pipelines.loop.live import REVERSALS

if TYPE_CHECKING:
    import psycopg

# The key of the session-level advisory lock that serializes live updates of one database.
LIVE_LOCK_KEY = 0x6C697665  # "live"
# The key of the transaction-level advisory lock every request write takes: one key, since a
# lock per task would run out of lock slots at 100,000 requests, and a write holds it for its
# own transaction only (0.1-0.7 s at 100,000 open requests, `bench_live_requests.py`).
WRITEBACK_LOCK_KEY = 0x7772697465  # "write"

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
_TASK_KEY = {"project": pl.String(), "task_id": pl.String()}
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


def _nothing() -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class StateWrite:
    """One live state's part of a write: `state` its lake prefix (`live/<project>`,
    `live/<project>/kinds/<kind>`), `project` its project, `base` the committed version the
    run loaded and `version` the one it commits. `keeps` gives the decision ids the state
    holds after the run (its listed requests, its blocks in force); it is called only when the
    DB holds rows of an attempt from `base` or later that never committed."""

    state: str
    project: str
    base: int
    version: int
    keeps: Callable[[], Collection[str]] = field(default=_nothing, compare=False)


def _stamped(frame: pl.DataFrame, states: Mapping[str, StateWrite], name: str) -> pl.DataFrame:
    """`frame` with `state_version` beside its `state` column (the version the write commits
    for that state); unchanged without one (a daily write)."""
    if "state" not in frame.columns:
        return frame
    frame = frame.with_columns(pl.col("state").cast(pl.String))
    unknown = sorted(set(frame.get_column("state").drop_nulls()) - set(states))
    if unknown:
        raise ValueError(
            f"{name}: column state names {', '.join(unknown)}, not a state of this write"
        )
    versions = {key: write.version for key, write in states.items()}
    return frame.with_columns(
        state_version=pl.col("state").replace_strict(versions, default=None, return_dtype=pl.Int64)
    )


def _writers(states: Collection[StateWrite]) -> dict[str, list[Any]]:
    ordered = sorted(states, key=lambda w: w.state)
    return {
        "w_states": [w.state for w in ordered],
        "w_projects": [w.project for w in ordered],
        "w_bases": [w.base for w in ordered],
        "w_versions": [w.version for w in ordered],
    }


def _withdrawn_by(live: bool) -> str:
    """What a withdrawal sets besides its status: for a live write, which state and version
    withdrew the request (the row's own state when this write commits it, else this write's
    state of the row's project: a daily request one of its tasks replaced) and the status it
    withdrew it from, which a retry that re-opens the request gives back (the SET reads the
    row as it was)."""
    if not live:
        return "closed_at = now(), withdrawn_from = NULL"
    return (
        "closed_at = now(), withdrawn_from = t.status, (withdrawn_state, withdrawn_version) = ("
        "SELECT w.state, w.version"
        " FROM unnest(%(w_states)s::text[], %(w_projects)s::text[], %(w_versions)s::bigint[])"
        " AS w(state, project, version)"
        " WHERE w.project = t.project ORDER BY w.state IS DISTINCT FROM t.state, w.state LIMIT 1)"
    )


def _pairs(frame: pl.DataFrame) -> dict[str, list[str]]:
    tasks = frame.select("project", "task_id").unique().sort("project", "task_id")
    return {"projects": tasks["project"].to_list(), "tasks": tasks["task_id"].to_list()}


def _superseded(table: str, *, live: bool) -> str:
    """Withdraw every open request of the given tasks but the newest (by `created_at`, then
    the later insert). The status test is on the updated row itself, so that a row the tool
    fulfilled meanwhile is re-checked at its new status and left alone. Each task is looked
    up on the open-requests index (LATERAL): with a join, and the table's statistics stale,
    the planner sorts every open request (66 ms with 100,000 open, against 12 ms this way)."""
    return (
        f"UPDATE {table} AS t SET status = 'withdrawn', {_withdrawn_by(live)} "
        "FROM ("
        "  SELECT older.request_id"
        "  FROM unnest(%(projects)s::text[], %(tasks)s::text[]) AS s(project, task_id)"
        "  CROSS JOIN LATERAL ("
        f"    SELECT r.request_id FROM {table} AS r"
        "    WHERE r.project = s.project AND r.task_id = s.task_id"
        "    AND r.status IN ('open', 'acknowledged')"
        "    ORDER BY r.created_at DESC, r.request_id DESC OFFSET 1"
        "  ) AS older"
        ") AS older "
        "WHERE t.request_id = older.request_id AND t.status IN ('open', 'acknowledged')"
    )


def _settled_tasks(table: str) -> str:
    """The (project, task_id) a write settles: its settled tasks and the tasks of the
    `decision_id`s it withdraws, less those it asks about."""
    return (
        "    SELECT project, task_id"
        "    FROM unnest(%(projects)s::text[], %(tasks)s::text[]) AS s(project, task_id)"
        f"    UNION SELECT project, task_id FROM {table} WHERE decision_id = ANY(%(withdrawn)s)"
        "    EXCEPT SELECT project, task_id"
        "    FROM unnest(%(asked_projects)s::text[], %(asked_tasks)s::text[])"
        "      AS a(project, task_id)"
    )


def _settled(table: str, *, live: bool) -> str:
    """Withdraw the open requests of the given tasks, and of the tasks of the withdrawn
    `decision_id`s, that no request of this write replaces and that were decided before
    `decided_at` (every one when it is null); each task looked up as in `_superseded`."""
    return (
        f"UPDATE {table} AS t SET status = 'withdrawn', {_withdrawn_by(live)} "
        "FROM ("
        "  SELECT gone.request_id FROM ("
        f"{_settled_tasks(table)}"
        "  ) AS s"
        "  CROSS JOIN LATERAL ("
        f"    SELECT r.request_id FROM {table} AS r"
        "    WHERE r.project = s.project AND r.task_id = s.task_id"
        "    AND r.status IN ('open', 'acknowledged')"
        "    AND (%(decided_at)s::timestamptz IS NULL"
        "      OR r.created_at < %(decided_at)s::timestamptz)"
        "    OFFSET 0"  # kept a per-task lookup: not pulled up into a join
        "  ) AS gone"
        ") AS gone "
        "WHERE t.request_id = gone.request_id AND t.status IN ('open', 'acknowledged') "
        "AND (%(decided_at)s::timestamptz IS NULL OR t.created_at < %(decided_at)s::timestamptz)"
    )


def _recorded(
    cursor: psycopg.Cursor[Any], table: str, requests: pl.DataFrame, inserted: set[str]
) -> tuple[dict[str, datetime], set[str]]:
    """For the requests an earlier write inserted (a conflict): the `created_at` the DB holds
    where it is not the one of `requests`, and those a live write withdrew (decided again
    now, so wanted again). Read only when a write met such rows."""
    stamped = dict(requests.select("decision_id", "created_at").iter_rows())
    cursor.execute(
        f"SELECT decision_id, created_at, status = 'withdrawn' AND withdrawn_state IS NOT NULL "
        f"FROM {table} WHERE decision_id = ANY(%s)",
        ([decision for decision in stamped if decision not in inserted],),
    )
    rows = cursor.fetchall()
    return (
        {decision: created for decision, created, _ in rows if stamped[decision] != created},
        {decision for decision, _, withdrawn in rows if withdrawn},
    )


def _attempt_rows(
    cursor: psycopg.Cursor[Any], schema: str, states: Collection[StateWrite]
) -> list[tuple[str, str, str, str | None]]:
    """(decision_id, state, what, row state) of the rows written or withdrawn by a live write
    of `states` above their `base`: attempts that never committed. `what` is `open` (a request
    such a write inserted), `withdrawn` (a request it withdrew) or `active` (a block it
    inserted); `row state` is the state that wrote the row (null for a daily request). None at
    all but after a failed attempt.

    One query per state with scalar parameters, each part on its partial index: with the
    states and bases as arrays the planner joins them by hash to every withdrawn request
    (0.4-0.9 s at 2M rows with 8 states, against 0.3 ms this way)."""
    quoted = validate_identifier(schema)
    query = (
        f'SELECT decision_id, status, state FROM "{quoted}".task_requests '
        "WHERE status = 'open' AND state IS NOT NULL AND state = %(state)s "
        "AND state_version > %(base)s "
        f'UNION ALL SELECT decision_id, status, state FROM "{quoted}".task_requests '
        "WHERE status = 'withdrawn' AND withdrawn_state IS NOT NULL "
        "AND withdrawn_state = %(state)s AND withdrawn_version > %(base)s "
        f'UNION ALL SELECT decision_id, status, state FROM "{quoted}".annotator_actions '
        "WHERE status = 'active' AND state IS NOT NULL AND state = %(state)s "
        "AND state_version > %(base)s"
    )
    found: list[tuple[str, str, str, str | None]] = []
    for write in sorted(states, key=lambda w: w.state):
        cursor.execute(query, {"state": write.state, "base": write.base})
        found.extend((row[0], write.state, row[1], row[2]) for row in cursor.fetchall())
    return found


def _supersede_attempts(
    cursor: psycopg.Cursor[Any],
    schema: str,
    states: Collection[StateWrite],
    *,
    requests: set[str],
    blocks: set[str],
    reopen: set[str],
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Make this write authoritative for its state versions, before it applies withdrawals of
    its own: the `open` requests and `active` blocks an attempt that never committed wrote,
    that this write neither decides (`requests`, `blocks`) nor keeps (`StateWrite.keeps`), are
    withdrawn; the requests such an attempt withdrew are back in the status it withdrew them
    from (`open`, or `acknowledged`: the tool keeps what it took) when another writer wrote
    them (a daily request, a row older than the state columns) or this write decides or keeps
    them, as is `reopen` (decided again, withdrawn by a live write): this write's own
    withdrawals then take back only what it does not want. A request is not re-opened while
    its task has a newer request in any status but withdrawn by an attempt this write
    supersedes. An acknowledged, fulfilled or revoked row is the tool's and left alone.

    With the counts come the tasks of the re-opened requests (`projects`, `tasks`), for the
    newest-wins pass of the write."""
    counts = {"stale": 0, "reopened": 0, "blocks_withdrawn": 0}
    reopened: dict[str, list[str]] = {"projects": [], "tasks": []}
    found = _attempt_rows(cursor, schema, states) if states else []
    if not found and not reopen:
        return counts, reopened
    writes = {w.state: w for w in states}
    kept: dict[str, Collection[str]] = {}

    def keeps(state: str) -> Collection[str]:
        if state not in kept:
            kept[state] = set(writes[state].keeps())
        return kept[state]

    stale = [
        (decision, writes[state].version)
        for decision, state, what, _ in found
        if what == "open" and decision not in requests and decision not in keeps(state)
    ]
    gone = [
        decision
        for decision, state, what, _ in found
        if what == "active" and decision not in blocks and decision not in keeps(state)
    ]
    reopen = reopen | {
        decision
        for decision, state, what, wrote in found
        if what == "withdrawn"
        and (wrote not in writes or decision in requests or decision in keeps(state))
    }
    quoted = validate_identifier(schema)
    table = f'"{quoted}".task_requests'
    if stale:
        cursor.execute(
            f"UPDATE {table} AS t SET status = 'withdrawn', closed_at = now(), "
            "withdrawn_state = t.state, withdrawn_version = s.version, withdrawn_from = t.status "
            "FROM unnest(%(ids)s::text[], %(versions)s::bigint[]) AS s(decision_id, version) "
            "WHERE t.decision_id = s.decision_id AND t.status = 'open'",
            {"ids": [d for d, _ in stale], "versions": [v for _, v in stale]},
        )
        counts["stale"] = max(cursor.rowcount, 0)
    if gone:
        cursor.execute(
            f"UPDATE \"{quoted}\".annotator_actions SET status = 'withdrawn', withdrawn_at = now() "
            "WHERE decision_id = ANY(%s) AND status = 'active'",
            (sorted(gone),),
        )
        counts["blocks_withdrawn"] = max(cursor.rowcount, 0)
    if reopen:
        # Runs after the stale withdrawals, so that the attempt's own newer requests no
        # longer stand in the way.
        cursor.execute(
            f"UPDATE {table} AS t SET status = COALESCE(t.withdrawn_from, 'open'), "
            "closed_at = NULL, withdrawn_state = NULL, withdrawn_version = NULL, "
            "withdrawn_from = NULL "
            "WHERE t.decision_id = ANY(%(ids)s) AND t.status = 'withdrawn' AND NOT EXISTS ("
            f"  SELECT 1 FROM {table} AS o WHERE o.project = t.project "
            "  AND o.task_id = t.task_id"
            "  AND (o.created_at, o.request_id) > (t.created_at, t.request_id)"
            "  AND NOT (o.status = 'withdrawn' AND EXISTS ("
            "    SELECT 1 FROM unnest(%(w_states)s::text[], %(w_bases)s::bigint[])"
            "      AS w(state, base)"
            "    WHERE o.withdrawn_state = w.state AND o.withdrawn_version > w.base))) "
            "RETURNING t.project, t.task_id",
            {"ids": sorted(reopen), **_writers(states)},
        )
        rows = cursor.fetchall()
        counts["reopened"] = len(rows)
        reopened = {
            "projects": [project for project, _ in rows],
            "tasks": [task for _, task in rows],
        }
    return counts, reopened


def _taken_over(table: str) -> str:
    """For a daily write: the requests a live attempt withdrew that this write would have
    withdrawn had they been open (its closed ids; of its settled tasks and of its closed ids'
    tasks, those it does not ask about, decided before `decided_at`; of the tasks it asks
    about, all but the newest open, acknowledged or attempt-withdrawn request): their
    `request_id`s, to become this write's withdrawals, so that a retry of the attempt does not
    re-open them. Read apart from the update, which mostly has nothing to do: joined to the
    update, the planner reads every request a live write ever withdrew."""
    live_withdrawn = "r.status = 'withdrawn' AND r.withdrawn_state IS NOT NULL"
    return (
        f"SELECT r.request_id FROM {table} AS r WHERE r.decision_id = ANY(%(withdrawn)s)"
        f"  AND {live_withdrawn}"
        "  UNION SELECT gone.request_id FROM ("
        f"{_settled_tasks(table)}"
        "  ) AS s"
        "  CROSS JOIN LATERAL ("
        f"    SELECT r.request_id FROM {table} AS r"
        f"    WHERE r.project = s.project AND r.task_id = s.task_id AND {live_withdrawn}"
        "    AND (%(decided_at)s::timestamptz IS NULL"
        "      OR r.created_at < %(decided_at)s::timestamptz)"
        "    OFFSET 0"
        "  ) AS gone"
        "  UNION SELECT older.request_id"
        "  FROM unnest(%(asked_projects)s::text[], %(asked_tasks)s::text[]) AS s(project, task_id)"
        "  CROSS JOIN LATERAL ("
        f"    SELECT r.request_id FROM {table} AS r"
        f"    WHERE r.project = s.project AND r.task_id = s.task_id AND {live_withdrawn}"
        f"    AND EXISTS (SELECT 1 FROM {table} AS n"
        "      WHERE n.project = r.project AND n.task_id = r.task_id"
        "      AND (n.status IN ('open', 'acknowledged')"
        "        OR (n.status = 'withdrawn' AND n.withdrawn_state IS NOT NULL))"
        "      AND (n.created_at, n.request_id) > (r.created_at, r.request_id))"
        "    OFFSET 0"
        "  ) AS older"
    )


def write_requests(
    dsn: str,
    *,
    task_requests: pl.DataFrame,
    annotator_actions: pl.DataFrame,
    schema: str = "public",
    withdrawn: Collection[str] = (),
    settled: pl.DataFrame | None = None,
    decided_at: datetime | None = None,
    states: Collection[StateWrite] = (),
    lock: LiveLock | None = None,
) -> dict[str, int]:
    """`write_requests_recorded`'s counts."""
    return write_requests_recorded(
        dsn,
        task_requests=task_requests,
        annotator_actions=annotator_actions,
        schema=schema,
        withdrawn=withdrawn,
        settled=settled,
        decided_at=decided_at,
        states=states,
        lock=lock,
    )[0]


def write_requests_recorded(
    dsn: str,
    *,
    task_requests: pl.DataFrame,
    annotator_actions: pl.DataFrame,
    schema: str = "public",
    withdrawn: Collection[str] = (),
    settled: pl.DataFrame | None = None,
    decided_at: datetime | None = None,
    states: Collection[StateWrite] = (),
    lock: LiveLock | None = None,
) -> tuple[dict[str, int], dict[str, datetime]]:
    """Insert the decisions not yet written and withdraw the requests no longer wanted, in one
    transaction; rows inserted per table, `withdrawn`: the requests withdrawn now (those
    still open or acknowledged, and the open ones of an attempt this write supersedes),
    `reopened`: the requests open again, and `blocks_withdrawn`.

    No longer wanted are the requests whose `decision_id` is in `withdrawn`; every open
    request of a task (`project`, `task_id`) of `task_requests` but the newest; and the open
    requests of the tasks in `settled`, or of the tasks of the `withdrawn` ids, that this
    write asks nothing about, when decided before `decided_at` (the time of this write's
    decisions; None, the live layer's: now, and every earlier request is older).

    `states` (a live write's) are the live states whose versions this write commits: a row of
    `task_requests` or `annotator_actions` names its state in a `state` column, and the rows
    an earlier attempt of those states wrote or withdrew and never committed are settled by
    this write (`_supersede_attempts`). With `lock` (the live lock the run holds), the write
    is refused (`LiveLockLost`, nothing written) unless that session still holds it when the
    write takes the write-back lock: a run that lost the live lock must not write as the state
    version another run may be writing, nor after it.

    With the counts comes the `created_at` the DB already held for the requests of
    `task_requests` that an earlier write inserted at another time (a retried run): the insert
    keeps that row, so the one to list is the DB's.
    """
    written = {
        "task_requests": 0,
        "annotator_actions": 0,
        "withdrawn": 0,
        "reopened": 0,
        "blocks_withdrawn": 0,
    }
    recorded: dict[str, datetime] = {}
    settled = settled if settled is not None else pl.DataFrame(schema=_TASK_KEY)
    if (
        task_requests.height == 0
        and annotator_actions.height == 0
        and not withdrawn
        and settled.height == 0
        and not states
    ):
        return written, recorded
    by_state = {w.state: w for w in states}
    table = f'"{validate_identifier(schema)}"."task_requests"'
    batches = [
        (
            "task_requests",
            _TASK_COLUMNS,
            _stamped(task_requests, by_state, "task_requests"),
            {"posterior"},
        ),
        (
            "annotator_actions",
            _ACTION_COLUMNS,
            _stamped(annotator_actions, by_state, "annotator_actions"),
            {"evidence"},
        ),
    ]
    writers = _writers(states)
    reopen: set[str] = set()
    with connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITEBACK_LOCK_KEY,))
        if lock is not None:
            lock.held_by_session(cursor)
        for name, columns, frame, jsonb in batches:
            if frame.height == 0:
                continue
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"{name}: missing column(s) {', '.join(missing)}")
            if "state" in frame.columns:
                columns = (*columns, "state", "state_version")
            statement = _insert(name, columns, schema, jsonb)
            # One round trip per batch (psycopg pipelines executemany); with returning=True the
            # rows a conflict skipped return nothing, so the count is the rows really inserted.
            cursor.executemany(
                statement + " RETURNING decision_id",
                list(frame.select(columns).iter_rows(named=True)),
                returning=True,
            )
            inserted: set[str] = set()
            while True:
                inserted.update(row[0] for row in cursor.fetchall())
                if not cursor.nextset():
                    break
            written[name] += len(inserted)
            if name == "task_requests" and len(inserted) < frame.height:
                recorded, again = _recorded(cursor, table, frame, inserted)
                # A daily write deciding again (a re-run of its day) revives nothing.
                reopen = again if states else set()
            if name == "annotator_actions" and len(inserted) < frame.height and states:
                _refuse_revoked_in_force(cursor, schema, frame, inserted, by_state)
                # A block decided again is in force again, if an earlier retry withdrew it.
                cursor.execute(
                    f'UPDATE "{validate_identifier(schema)}".annotator_actions '
                    "SET status = 'active', withdrawn_at = NULL "
                    "WHERE decision_id = ANY(%s) AND status = 'withdrawn'",
                    (sorted(set(frame["decision_id"]) - inserted),),
                )
        superseded, reopened = _supersede_attempts(
            cursor,
            schema,
            states,
            requests=set(task_requests.get_column("decision_id"))
            if task_requests.height
            else set(),
            blocks=(
                set(annotator_actions.get_column("decision_id"))
                if annotator_actions.height
                else set()
            ),
            reopen=reopen,
        )
        written["withdrawn"] += superseded["stale"]
        written["reopened"] += superseded["reopened"]
        written["blocks_withdrawn"] += superseded["blocks_withdrawn"]
        ids = sorted(withdrawn)
        asked = _pairs(task_requests)
        # The parameters of the settled-task lookups (`_settled_tasks`).
        settling = {
            **_pairs(settled),
            "withdrawn": ids,
            "asked_projects": asked["projects"],
            "asked_tasks": asked["tasks"],
            "decided_at": decided_at,
        }
        if not states and (ids or settled.height or task_requests.height):
            cursor.execute(_taken_over(table), settling)
            taken = sorted(row[0] for row in cursor.fetchall())
            if taken:
                cursor.execute(
                    f"UPDATE {table} SET withdrawn_state = NULL, withdrawn_version = NULL, "
                    "withdrawn_from = NULL "
                    "WHERE request_id = ANY(%s) AND status = 'withdrawn' "
                    "AND withdrawn_state IS NOT NULL",
                    (taken,),
                )
        if ids:
            cursor.execute(
                f"UPDATE {table} AS t SET status = 'withdrawn', {_withdrawn_by(bool(states))} "
                "WHERE t.decision_id = ANY(%(ids)s) AND t.status IN ('open', 'acknowledged')",
                {"ids": ids, **writers},
            )
            written["withdrawn"] += max(cursor.rowcount, 0)
        if ids or settled.height:
            cursor.execute(_settled(table, live=bool(states)), {**settling, **writers})
            written["withdrawn"] += max(cursor.rowcount, 0)
        # The re-opened requests' tasks too: each may meet a request written meanwhile.
        newest = _pairs(
            pl.concat(
                [
                    task_requests.select("project", "task_id"),
                    pl.DataFrame(
                        {"project": reopened["projects"], "task_id": reopened["tasks"]},
                        schema=_TASK_KEY,
                    ),
                ]
            )
        )
        if newest["tasks"]:
            cursor.execute(_superseded(table, live=bool(states)), {**newest, **writers})
            written["withdrawn"] += max(cursor.rowcount, 0)
        connection.commit()
    return written, recorded


def changed_rows(dsn: str, *, since: datetime, until: datetime, schema: str = "public") -> int:
    """How many judgments and gold labels changed in (since, until] (capped: a cheap probe);
    when none did, how many the tool deleted then, or else how many blocks it revoked then,
    so a deletion or a reversal alone starts a run. A judgment submitted in the window counts
    too: the extract reads it again by `submitted_at` (one it deferred as dated in the future,
    whose `updated_at` lies behind the window by the time its time comes), and on a quiet
    database nothing else would start the run that takes it."""
    quoted = f'"{validate_identifier(schema)}"'
    window = {"since": since, "until": until}
    query = (
        f"SELECT (SELECT count(*) FROM (SELECT 1 FROM {quoted}.judgments "
        "WHERE (updated_at > %(since)s AND updated_at <= %(until)s) "
        "OR (submitted_at > %(since)s AND submitted_at <= %(until)s "
        "AND updated_at <= %(until)s) LIMIT 10000) j) + "
        f"(SELECT count(*) FROM (SELECT 1 FROM {quoted}.gold_labels "
        "WHERE updated_at > %(since)s AND updated_at <= %(until)s LIMIT 10000) g)"
    )
    with connect(dsn, autocommit=True) as connection:
        row = connection.execute(query, window).fetchone()
        changed = int(row[0]) if row else 0
        if changed:
            return changed
        # A deletion leaves a tombstone (migration 6), which starts a run like a change; the
        # probe runs before any live run has migrated the DB, so the tables may be missing, or
        # (a DBA applied it) not readable by this role yet.
        deletions = connection.execute(
            "SELECT coalesce(has_table_privilege(to_regclass(%s), 'SELECT') "
            "AND has_table_privilege(to_regclass(%s), 'SELECT'), false)",
            (f"{quoted}.judgment_deletions", f"{quoted}.gold_label_deletions"),
        ).fetchone()
        if deletions and deletions[0]:
            row = connection.execute(
                f"SELECT (SELECT count(*) FROM (SELECT 1 FROM {quoted}.judgment_deletions "
                "WHERE deleted_at > %(since)s AND deleted_at <= %(until)s LIMIT 10000) j) + "
                f"(SELECT count(*) FROM (SELECT 1 FROM {quoted}.gold_label_deletions "
                "WHERE deleted_at > %(since)s AND deleted_at <= %(until)s LIMIT 10000) g)",
                window,
            ).fetchone()
            if row and row[0]:
                return int(row[0])
        # `status` (migration 4) is read from the row so that its absence is no error.
        table = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{quoted}.annotator_actions",)
        ).fetchone()
        if not table or not table[0]:
            return 0
        revoked = connection.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {quoted}.annotator_actions a "
            "WHERE updated_at > %(since)s AND updated_at <= %(until)s "
            "AND to_jsonb(a) ->> 'status' = 'revoked' LIMIT 10000) r",
            window,
        ).fetchone()
    return int(revoked[0]) if revoked else 0


def read_reversals(
    dsn: str,
    *,
    since: datetime,
    until: datetime,
    overlap: timedelta,
    schema: str = "public",
) -> pl.DataFrame:
    """The blocks the tool revoked, changed in `(since - overlap, until]`
    (`loop.live.REVERSALS` and `kind`, oldest change first): `kind` is the kind a kind
    state's block names in its evidence, null for a categorical block.

    The window is the change stream's: `until` is the extract's bound below every open
    transaction, so a revocation committed later but stamped earlier is not skipped, and
    the overlap reads the end of the last window again. A reversal read twice is applied once
    (`loop.live.update` and `loop.live_kinds.update_kind` lift only a block still in force).
    """
    quoted = f'"{validate_identifier(schema)}"."annotator_actions"'
    query = (
        "SELECT project, annotator_id, decision_id, revoked_at, revoked_by, evidence ->> 'kind' "
        f"FROM {quoted} WHERE action = 'block' AND status = 'revoked' "
        "AND updated_at > %(start)s AND updated_at <= %(until)s ORDER BY updated_at, action_id"
    )
    with connect(dsn, autocommit=True) as connection:
        rows = connection.execute(query, {"start": since - overlap, "until": until}).fetchall()
    return pl.DataFrame(rows, schema={**REVERSALS, "kind": pl.String()}, orient="row")


def revoked_attempts(dsn: str, states: Mapping[str, int], schema: str = "public") -> pl.DataFrame:
    """The blocks an attempt of the live `states` (lake prefix → the committed version a run
    loaded) wrote above that version, never committed, and the tool revoked since
    (`loop.live.REVERSALS`, `kind` and `state`, oldest revocation first).

    A retry of such an attempt decides the same block again (same version, same decision id),
    and its insert meets the revoked row; the revocation may lie behind the stream position
    already (a run that decided nothing consumed it), so the window's reversals do not give it.
    Passed as reversals to the retry's update, they lift the block it decides again
    (`loop.ledger.lift_retried`)."""
    schema_ = {**REVERSALS, "kind": pl.String(), "state": pl.String()}
    if not states:
        return pl.DataFrame(schema=schema_)
    names = sorted(states)
    quoted = f'"{validate_identifier(schema)}"."annotator_actions"'
    query = (
        "SELECT a.project, a.annotator_id, a.decision_id, a.revoked_at, a.revoked_by, "
        f"a.evidence ->> 'kind', a.state FROM {quoted} AS a "
        "JOIN unnest(%(states)s::text[], %(bases)s::bigint[]) AS s(state, base) "
        "ON a.state = s.state AND a.state_version > s.base "
        "WHERE a.action = 'block' AND a.status = 'revoked' ORDER BY a.revoked_at, a.action_id"
    )
    with connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            query, {"states": names, "bases": [states[n] for n in names]}
        ).fetchall()
    return pl.DataFrame(rows, schema=schema_, orient="row")


class RevokedBlockInForce(RuntimeError):
    """A live write would commit a state holding in force a block the tool has revoked."""


def _refuse_revoked_in_force(
    cursor: psycopg.Cursor[Any],
    schema: str,
    frame: pl.DataFrame,
    inserted: Collection[str],
    by_state: Mapping[str, StateWrite],
) -> None:
    """Refuse the write (nothing of it is committed) when a block it decides again meets a
    row the tool revoked and the state it commits keeps that block in force: the tool lifted
    it, and no later run would read that revocation again. The run fails; its retry reads the
    revocation (`revoked_attempts`) and lifts the block. Its own update lifts one it knew of
    before deciding it, so this is the revocation that came in between."""
    if "state" not in frame.columns:
        return
    again = frame.filter(~pl.col("decision_id").is_in(list(inserted)))
    cursor.execute(
        f'SELECT decision_id FROM "{validate_identifier(schema)}".annotator_actions '
        "WHERE decision_id = ANY(%s) AND status = 'revoked'",
        (sorted(again["decision_id"]),),
    )
    revoked = {row[0] for row in cursor.fetchall()}
    if not revoked:
        return
    kept = sorted(
        decision
        for decision, state in again.select("decision_id", "state").iter_rows()
        if decision in revoked and state in by_state and decision in by_state[state].keeps()
    )
    if kept:
        raise RevokedBlockInForce(
            f"{len(kept)} block(s) this run decides again were revoked by the tool meanwhile "
            f"({', '.join(k[:12] for k in kept)}): not writing; the retry lifts them"
        )


class LiveLockTimeout(TimeoutError):
    """Another session held the live lock for longer than this one may wait."""


class LiveLockLost(RuntimeError):
    """The live lock is no longer held by this run: it must not commit."""


@dataclass
class LiveLock:
    """The live loop's advisory lock, held through one session for a block (`live_lock`)."""

    connection: psycopg.Connection[Any]
    key: int
    dsn: str
    # The lock session's start (pg_stat_activity.backend_start): with its pid, it names the
    # session, where a pid alone may be reused by a later backend.
    backend_start: datetime | None = None

    def verify(self) -> None:
        """Raise `LiveLockLost` unless this session is alive and still holds the lock.

        The lock is the session's: if its connection drops (network, a terminated backend, a
        restarted server), PostgreSQL frees it and another run may take it and commit. A run
        calls this just before it commits, so one that lost the lock leaves the state to the
        run that took it (which folds this run's rows, once).
        """
        import psycopg

        try:
            row = self.connection.execute(_HELD, {"key": self.key}).fetchone()
        except psycopg.Error as error:
            raise LiveLockLost(
                f"live lock on {describe(self.dsn)} lost (its session failed: "
                f"{first_line(error)}); not committing: the next run folds these rows"
            ) from error
        if not row or not row[0]:
            raise LiveLockLost(
                f"live lock on {describe(self.dsn)} no longer held by this session; not "
                "committing: the next run folds these rows"
            )

    def held_by_session(self, cursor: psycopg.Cursor[Any]) -> None:
        """Raise `LiveLockLost` unless this lock's session still holds it, asked through
        another session's `cursor` (a write's transaction: the check and the write are then
        one step for every other writer, which waits on the write-back lock)."""
        pid = self.connection.info.backend_pid
        cursor.execute(_HELD_BY, {"key": self.key, "pid": pid, "started": self.backend_start})
        row = cursor.fetchone()
        if not row or not row[0]:
            raise LiveLockLost(
                f"live lock on {describe(self.dsn)} no longer held by backend {pid} (started "
                f"{self.backend_start}); not writing the annotation DB: the next run decides "
                "these rows"
            )


# An advisory lock on one bigint key shows in pg_locks as (classid, objid) = its high and low
# 32 bits, with objsubid 1.
_LOCK_ROWS = (
    "FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
    "AND ((classid::bigint << 32) | objid::bigint) = %(key)s "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_HELD = f"SELECT EXISTS (SELECT 1 {_LOCK_ROWS} AND pid = pg_backend_pid())"
# A pid alone may name a later backend that took over a dead session's pid (and the lock).
_HELD_BY = (
    f"SELECT EXISTS (SELECT 1 {_LOCK_ROWS} AND pid = %(pid)s AND EXISTS ("
    "SELECT 1 FROM pg_stat_activity AS a "
    "WHERE a.pid = %(pid)s AND a.backend_start = %(started)s::timestamptz))"
)
_HOLDER = f"SELECT pid {_LOCK_ROWS}"


@contextmanager
def live_lock(dsn: str, *, key: int = LIVE_LOCK_KEY) -> Iterator[LiveLock]:
    """Hold the live loop's advisory lock on the annotation DB for the block.

    Runs may overlap (one starting while the previous works); the lock lets only one read,
    update and commit the live state at a time. A holder that dies loses its connection and
    with it the lock; the block calls `LiveLock.verify` before committing so that a holder
    whose connection dropped does not commit over the run that took the lock next.

    The wait is bounded by the session's `lock_timeout` (in `dsn`, see
    `ingest.connection.Timeouts`): past it, `LiveLockTimeout` names the session holding it.
    """
    import psycopg

    with connect(dsn, autocommit=True) as connection:
        try:
            connection.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable as error:
            holder = connection.execute(_HOLDER, {"key": key}).fetchone()
            raise LiveLockTimeout(
                f"live lock on {describe(dsn)} still held by backend "
                f"{holder[0] if holder else '(gone)'} after this run's wait "
                f"({first_line(error)}); the run is retried"
            ) from error
        row = connection.execute(
            "SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()
        try:
            yield LiveLock(
                connection=connection, key=key, dsn=dsn, backend_start=row[0] if row else None
            )
        finally:
            if not connection.closed and not connection.broken:
                # A lost session has no lock to release.
                with contextlib.suppress(psycopg.Error):
                    connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


__all__ = [
    "LIVE_LOCK_KEY",
    "WRITEBACK_LOCK_KEY",
    "LiveLock",
    "LiveLockLost",
    "LiveLockTimeout",
    "RevokedBlockInForce",
    "StateWrite",
    "changed_rows",
    "live_lock",
    "read_reversals",
    "revoked_attempts",
    "write_requests",
    "write_requests_recorded",
]
