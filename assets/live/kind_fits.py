"""`live_kind_fit_job`: the non-categorical kinds' full fits, off the live runs' path.

A kind state (`loop.live_kinds`) refits only its touched tasks in a live run, with annotator
parameters carried from the last full fit of the kind's aggregation; the full fit itself (every
task, every parameter: seconds over a hundred thousand judgments) is due after enough growth
or when a re-base day asks for it, and the live runs only record that (`full_fit_due` reads it
from the state's small `state.json`). The live sensor launches this job for the due states.

For each one the job reads a snapshot of the state (version v) without the live lock and fits
it (`fit_snapshot`), then under the annotation DB's advisory lock that serializes the live runs
reads the state as it is now (version w ≥ v) and adopts the fit (`adopt_fit`): at w = v the
fitted state as a live run's full fit makes it; at w > v the fit's parameters, the tasks the
runs in between changed refitted with them. Its requests and blocks go to the annotation DB and
its alerts to the lake as a live run writes them (`write_decisions`: the DB first, then one
`Lake.commit` of the state objects and the Label Studio request list, which lists a decision
the DB already held at the `created_at` it kept), so a request is written once per decision
and a job killed before its commit leaves the state as it was, still due; the daemon retries a
failed run (`LIVE_RETRY_TAGS`) without waiting for a live run to move the state. The ledger is
the current state's, untouched: no judgment is added, dropped or repeated whatever the live
runs did meanwhile. A state whose parameters another fit replaced since the snapshot is left alone.

The snapshot is read optimistically: `state.json` before and after the frames and segments,
no commit in flight at the end (a commit moves `state.json` last); a read that overlapped a
commit is retried, and after a few the snapshot is read under the lock.
"""

from datetime import UTC, datetime

import polars as pl
from dagster import OpExecutionContext, job, op
from pydantic import Field

from annotation_pipelines.loop.live import REVERSALS
from annotation_pipelines.loop.live_kinds import (
    KindState,
    adopt_fit,
    fit_counters,
    fit_snapshot,
    full_fit_due,
    kind_prefix,
    load_kind_state,
    load_kinds_index,
    settled_frame,
)
from assets.common.alerts import alert_objects, announce_alerts
from assets.live.assets import (
    KIND_DAILY_LABELS,
    KindThresholds,
    KindUpdate,
    tagged_decisions,
    write_decisions,
)
from assets.live.jobs import LIVE_RETRY_TAGS
from resources.annotation_db import AnnotationDatabase
from resources.lake import Lake

# A full fit takes seconds to a minute over the largest states; one running longer is stuck.
KIND_FIT_MAX_RUNTIME_SECONDS = 1800
# Optimistic snapshot reads before reading under the lock.
SNAPSHOT_ATTEMPTS = 3


class KindFitConfig(KindThresholds):
    """Set by the live sensor; the block and policy settings are the live runs'."""

    states: list[str] = Field(
        default_factory=list,
        description="`project/kind` states with a full fit due (empty: every due state).",
    )


def read_snapshot(
    lake: Lake, annotation_db: AnnotationDatabase, project: str, kind: str
) -> KindState:
    """The stored state as one committed version, read without the live lock if it can be."""
    read = lake.get_if_exists
    meta = f"{kind_prefix(project, kind)}/state.json"
    for _ in range(SNAPSHOT_ATTEMPTS):
        before = read(meta)
        try:
            state = load_kind_state(project, kind, read)
        except FileNotFoundError:  # a segment merged away while it was read
            continue
        if read(meta) == before and not lake.pending_commits():
            return state
    with annotation_db.live_lock():
        lake.recover()
        return load_kind_state(project, kind, read)


def _daily_rows(lake: Lake, state: KindState) -> dict[str, pl.DataFrame]:
    """This state's rows of `kind_aggregated_labels` for each day it re-applies after a fit."""
    found = {}
    for day in sorted(set(state.rebase_after_fit)):
        if lake.has_table(KIND_DAILY_LABELS, day=day):
            rows = lake.read_table(KIND_DAILY_LABELS, day=day)
            found[day] = rows.filter(
                (pl.col("project") == state.project) & (pl.col("kind") == state.kind)
            )
    return found


@op(
    description=(
        "Run the full fits the live runs left due for the non-categorical kind states, each "
        "on a snapshot without the live lock, adopted under it."
    )
)
def fit_kind_states(
    context: OpExecutionContext,
    config: KindFitConfig,
    lake: Lake,
    annotation_db: AnnotationDatabase,
) -> None:
    options = config.kind_options()
    read = lake.get_if_exists
    chosen = config.states or [
        f"{project}/{kind}"
        for project, kinds in sorted(load_kinds_index(read).items())
        for kind in sorted(kinds)
    ]
    for key in chosen:
        project, _, kind = key.partition("/")
        snapshot = read_snapshot(lake, annotation_db, project, kind)
        if not full_fit_due(fit_counters(snapshot), options):
            context.log.info(f"{key}: no full fit due at version {snapshot.version}")
            continue
        started = datetime.now(UTC)
        fit = fit_snapshot(snapshot, options, now=started)
        fitted_at = datetime.now(UTC)
        with annotation_db.live_lock() as lock:
            lake.recover()
            now = datetime.now(UTC)
            current = load_kind_state(project, kind, read)
            # An earlier attempt of this adoption that wrote the DB and failed: the blocks it
            # wrote that the tool revoked since are lifted when decided again, not adopted.
            revoked = annotation_db.revoked_attempts({kind_prefix(project, kind): current.version})
            adopted = adopt_fit(
                fit,
                current,
                options,
                daily=_daily_rows(lake, current),
                now=now,
                reversals=revoked.select(list(REVERSALS)),
            )
            if adopted is None:
                context.log.info(f"{key}: another fit was adopted since version {snapshot.version}")
                continue
            state, events = adopted
            if events.unblocked:
                context.log.warning(
                    f"{key}: block(s) of {', '.join(events.unblocked)} an earlier attempt wrote "
                    "and the tool revoked since: decided again and lifted"
                )
            update = KindUpdate(
                states={(project, kind): state},
                loaded={(project, kind): current.version},
                events={(project, kind): events},
                index=load_kinds_index(read),
            )
            writes, deletes, closed = update.objects(
                read, options, now, written=events.task_requests.get_column("decision_id")
            )
            requests, actions = tagged_decisions([(kind_prefix(project, kind), events)])
            written = write_decisions(
                annotation_db,
                writes,
                task_requests=requests,
                annotator_actions=actions,
                withdrawn=closed,
                settled=settled_frame(update.events),
                states=update.state_writes(writes),
                lock=lock,
                log=context.log,
                label=key,
            )
            # Recorded with the state and sent once committed: a failed attempt raises none.
            writes.update(alert_objects(events.alerts))
            lock.verify()
            lake.commit(writes, deletes=deletes)
        announce_alerts(events.alerts, log=context.log)
        held = (datetime.now(UTC) - now).total_seconds()
        context.log.info(
            f"{key}: full fit of version {snapshot.version} "
            f"({fit.fitted.fitted_judgments:,} judgments, {state.tasks.height:,} tasks) in "
            f"{(fitted_at - started).total_seconds():.1f} s, adopted at version "
            f"{state.version} ({current.version - snapshot.version} run(s) in between) holding "
            f"the live lock {held:.2f} s; {written['task_requests']} request(s), "
            f"{written['withdrawn']} withdrawn, {written['annotator_actions']} block(s)"
        )


@job(
    description="Fit the non-categorical kind states whole, off the live runs' path.",
    tags={"dagster/max_runtime": str(KIND_FIT_MAX_RUNTIME_SECONDS), **LIVE_RETRY_TAGS},
)
def live_kind_fit_job() -> None:
    fit_kind_states()
