"""The live sensor: every 5 s, a small run when the annotation DB has new judgments, a new
export file is in the landing zone, the staged gold sets changed, or a day's daily aggregation
has just materialized.

The window's start is the stream position committed in the lake with the live state (what has
really been folded in), so a run that died is covered by the next window; its end is the DB's
safe upper bound now. Files are compared with the record of folded files committed with the
same state. The run key hashes the window and the pending files: a tick evaluated twice
launches nothing twice, and the run itself folds a file only once (by content hash). The
cursor keeps the last window and the last `aggregated_labels` and `kind_aggregated_labels`
materializations seen; each new one names its day in the next run, which re-bases that day's
tasks (categorical, or of the other kinds) on it. It also keeps each run asked to re-base days
(by run key, with its days) until one of its runs succeeds: a day whose run failed for good (no
retry of the daemon's to come) is named again in the next run, and one whose run is on its way
is not named twice.

The same tick launches `live_compaction_job` when a live run left a merge too large for it
(`loop.live.due_merges`), once per set of due merges (run key) and not while one is on its way,
and `live_kind_fit_job` when a kind state's full fit is due (`loop.live_kinds.due_full_fits`,
from the kinds index and each state's small `state.json`), once per set of due states and
their versions, not while one is on its way or running.

A failed run of any of the three is not the sensor's to launch again (its run key is spent):
the daemon retries it (`run_retries` in dagster.yaml, `LIVE_RETRY_TAGS` on the jobs) as a new
run of the same job and config, which counts as on its way like any other: one of the live
runs' `MAX_WAITING_RUNS`, or the busy maintenance job's.

When the annotation DB cannot be reached (refused, a connect or probe timeout), the tick skips
with one line naming the database and the error, instead of failing with a traceback every 5 s
(or, for a database that stopped answering, timing out as an unreachable code server). The
cursor records when the outage started: its first tick raises one `annotation_db_unreachable`
alert, and the first tick that reaches the database again logs the recovery and how long it
lasted.
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetKey,
    Config,
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunConfig,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from annotation_pipelines.ingest.connection import DatabaseUnreachable, describe, first_line
from annotation_pipelines.loop.live import (
    LIVE_COMPACTION,
    LedgerCompaction,
    due_merges,
    load_files,
    load_stream,
)
from annotation_pipelines.loop.live_kinds import KindLiveOptions, due_full_fits
from annotation_pipelines.settings import ANNOTATION_DB_DSN
from assets.common.alerts import record_alert
from assets.common.cursors import load_cursor
from assets.common.runs import (
    AUTO_RETRY_RUN_ID_TAG,
    ON_ITS_WAY,
    RUN_KEY_TAG,
    UNDERWAY,
    UNFINISHED,
    WILL_RETRY_TAG,
)
from assets.live.assets import (
    DAILY_LABELS,
    KIND_DAILY_LABELS,
    LiveConfig,
    live_quality_state,
    pending_files,
    pending_gold_sets,
)
from assets.live.compaction import CompactionConfig, live_compaction_job, live_projects
from assets.live.jobs import live_quality_job
from assets.live.kind_fits import KindFitConfig, live_kind_fit_job
from resources.annotation_db import AnnotationDatabase
from resources.lake import Lake
from resources.landing import LandingZone

# A run spends 15-50 s queued and importing the code location on a busy 2-core machine, and
# a row waits for the first run that takes the lock after it commits: a short interval keeps
# a run always on its way, which is what bounds the latency.
LIVE_INTERVAL_SECONDS = 5
# At most this many live runs on their way at once (queued or starting): one may work while
# the next two start, each reading everything committed before it takes the lock. More would
# only spend the cores on importing the code location.
MAX_WAITING_RUNS = 2
# A run still waiting after this long was orphaned (its daemon or worker died, e.g. killed
# with the daemon): it no longer holds back the next one.
STARTING_STALE_SECONDS = 90
# The alert kind of an annotation DB the live sensor cannot reach.
DB_UNREACHABLE = "annotation_db_unreachable"


def _waiting_runs(context: SensorEvaluationContext) -> int:
    since = datetime.now(UTC) - timedelta(seconds=STARTING_STALE_SECONDS)
    runs = context.instance.get_runs(
        RunsFilter(job_name=live_quality_job.name, statuses=ON_ITS_WAY, created_after=since),
        limit=MAX_WAITING_RUNS,
    )
    return len(runs)


def _maintenance_request(
    context: SensorEvaluationContext,
    job: JobDefinition,
    *,
    due: object,
    key_prefix: str,
    op: str,
    config: Config,
) -> RunRequest | None:
    """A `job` run for the `due` work, unless one is on its way or running; its run key
    (`key_prefix`:hash) hashes `due`, so a tick evaluated twice launches it once."""
    busy = context.instance.get_runs(RunsFilter(job_name=job.name, statuses=UNDERWAY), limit=1)
    if busy:
        return None
    key = hashlib.sha256(json.dumps(due, sort_keys=True).encode()).hexdigest()[:32]
    return RunRequest(
        run_key=f"{key_prefix}:{key}", job_name=job.name, run_config=RunConfig({op: config})
    )


def compaction_request(
    context: SensorEvaluationContext, lake: Lake, *, compaction: LedgerCompaction = LIVE_COMPACTION
) -> RunRequest | None:
    """A `live_compaction_job` run for the merges the live runs left (`_maintenance_request`)."""
    read = lake.get_if_exists
    due = {project: due_merges(project, read, compaction) for project in live_projects(lake)}
    due = {project: merges for project, merges in due.items() if merges}
    if not due:
        return None
    config = CompactionConfig(
        projects=sorted(due),
        fan_in=compaction.fan_in,
        base_rows=compaction.base_rows,
        max_inline_rows=compaction.max_inline_rows,
    )
    return _maintenance_request(
        context,
        live_compaction_job,
        due=due,
        key_prefix="live-compaction",
        op="compact_live_state",
        config=config,
    )


def kind_fit_request(
    context: SensorEvaluationContext, lake: Lake, *, options: KindLiveOptions | None = None
) -> RunRequest | None:
    """A `live_kind_fit_job` run for the kind states whose full fit is due
    (`_maintenance_request`: keyed by the due states and their versions; a failed run is the
    daemon's to retry)."""
    options = options or LiveConfig().kind_options()
    due = due_full_fits(lake.get_if_exists, options)
    if not due:
        return None
    config = _fit_config(sorted(due), options)
    return _maintenance_request(
        context,
        live_kind_fit_job,
        due=due,
        key_prefix="live-kind-fit",
        op="fit_kind_states",
        config=config,
    )


def _fit_config(states: list[str], options: KindLiveOptions) -> KindFitConfig:
    """The due `states` with the block, cadence and vote settings of `options`."""
    return KindFitConfig(
        states=states,
        min_judgments=options.min_judgments,
        min_gold=options.min_gold,
        min_votes=options.policy.min_votes,
        max_votes=options.policy.max_votes,
        kind_min_gold_score=options.min_gold_score,
        kind_min_consensus_alpha=options.min_consensus_alpha,
        kind_full_fit_every=options.full_fit_every,
    )


def _new_daily_days(
    context: SensorEvaluationContext, cursor: str | None, asset: str = DAILY_LABELS
) -> tuple[list[str], str | None]:
    """Days of the `asset` materializations after `cursor`, and the new cursor."""
    result = context.instance.fetch_materializations(
        AssetKey(asset), limit=100, cursor=cursor, ascending=True
    )
    if not result.records:
        return [], cursor
    days = sorted({r.partition_key for r in result.records if r.partition_key})
    return days, result.cursor


def _rebase_outcome(context: SensorEvaluationContext, run_key: str) -> str:
    """ "done" when a run of `run_key` succeeded, "failed" when all its runs failed and the
    daemon launches no retry, else "underway" (one not launched yet included: the daemon
    creates it after the tick that asked for it)."""
    # The daemon's retries keep the run key tag of the run they retry.
    runs = context.instance.get_runs(RunsFilter(tags={RUN_KEY_TAG: run_key}))
    if any(run.status == DagsterRunStatus.SUCCESS for run in runs):
        return "done"
    retrying = any(
        run.tags.get(WILL_RETRY_TAG) == "true" and AUTO_RETRY_RUN_ID_TAG not in run.tags
        for run in runs
    )
    if not runs or retrying or any(run.status in UNFINISHED for run in runs):
        return "underway"
    return "failed"


def _rebases_due(
    context: SensorEvaluationContext, state: dict
) -> tuple[dict[str, dict[str, list[str]]], dict[str, set[str]], list[str]]:
    """The re-base runs of `state` still underway, the days of those that failed for good (to
    ask again, but not the days a run underway still carries), and the failed runs' keys."""
    underway: dict[str, dict[str, list[str]]] = {}
    again: dict[str, set[str]] = {"daily": set(), "kind_daily": set()}
    failed = []
    for run_key, carried in state.get("rebasing", {}).items():
        outcome = _rebase_outcome(context, run_key)
        if outcome == "underway":
            underway[run_key] = carried
        elif outcome == "failed":
            failed.append(run_key)
            for asset in again:
                again[asset].update(carried.get(asset, []))
    for carried in underway.values():
        for asset in again:
            again[asset].difference_update(carried.get(asset, []))
    return underway, again, sorted(failed)


def _recovered(
    context: SensorEvaluationContext, annotation_db: AnnotationDatabase, state: dict
) -> bool:
    """Whether this tick ends an outage recorded in `state` (then logged and dropped)."""
    if "db_unreachable_since" not in state:
        return False
    down = datetime.fromisoformat(state.pop("db_unreachable_since"))
    context.log.info(
        f"annotation DB reachable again ({describe(annotation_db.required_dsn)}) after "
        f"{(datetime.now(UTC) - down).total_seconds():.0f} s"
    )
    return True


def _unreachable(
    context: SensorEvaluationContext,
    lake: Lake,
    annotation_db: AnnotationDatabase,
    state: dict,
    error: Exception,
    maintenance: list[RunRequest],
) -> SensorResult:
    """Skip the tick with one line; the first failing tick of an outage records it in the
    cursor and raises the alert. The maintenance runs need no database to be launched."""
    where = describe(annotation_db.required_dsn)
    # DatabaseUnreachable already names the database.
    problem = first_line(error).removeprefix(f"annotation DB unreachable ({where}): ")
    now = datetime.now(UTC)
    since = state.get("db_unreachable_since")
    if since is None:
        since = now.isoformat()
        record_alert(
            lake,
            [
                {
                    "kind": DB_UNREACHABLE,
                    "message": f"annotation DB unreachable ({where}) since {since}: {problem}; "
                    "the live layer waits for it",
                }
            ],
            log=context.log,
        )
    lasted = (now - datetime.fromisoformat(since)).total_seconds()
    cursor = json.dumps({**state, "db_unreachable_since": since}, sort_keys=True)
    return SensorResult(
        run_requests=maintenance or None,
        skip_reason=None
        if maintenance
        else SkipReason(
            f"annotation DB unreachable ({where}) for {lasted:.0f} s: {problem}; retrying"
        ),
        cursor=cursor,
    )


@sensor(
    jobs=[live_quality_job, live_compaction_job, live_kind_fit_job],
    minimum_interval_seconds=LIVE_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "New judgments in the annotation DB, new export files, or a day's aggregation "
        "→ a small run updating the live state; a merge too large for it → a compaction run; "
        "a kind state's full fit due → a kind fit run."
    ),
)
def live_quality_sensor(
    context: SensorEvaluationContext,
    annotation_db: AnnotationDatabase,
    lake: Lake,
    landing: LandingZone,
) -> SensorResult | SkipReason:
    # A run reads up to the DB's bound when it gets the lock, so the rows that arrive while it
    # starts are its too; more runs on their way would add nothing but import work.
    if not annotation_db.configured:
        return SkipReason(
            f"no annotation DB configured ({ANNOTATION_DB_DSN}): the live layer follows its "
            "change stream"
        )
    maintenance = [
        r
        for r in [compaction_request(context, lake), kind_fit_request(context, lake)]
        if r is not None
    ]
    if _waiting_runs(context) >= MAX_WAITING_RUNS:
        if maintenance:
            return SensorResult(run_requests=maintenance)
        return SkipReason(f"{MAX_WAITING_RUNS} live runs are on their way")
    # psycopg loads on the first tick, not with the code location every run process imports.
    import psycopg

    state = load_cursor(context.cursor)
    read = lake.get_if_exists
    since, _ = load_stream(read)
    try:
        until = annotation_db.safe_upper_bound()
        changed = until > since and annotation_db.changed_rows(since=since, until=until) > 0
    except (DatabaseUnreachable, psycopg.OperationalError) as error:
        # OperationalError: a probe cancelled by its statement timeout, or a dropped session.
        return _unreachable(context, lake, annotation_db, state, error, maintenance)
    # Kept even when this tick launches nothing, so the next one does not log it again.
    recovered = _recovered(context, annotation_db, state)
    folded = load_files(read)
    files = [*pending_files(landing, folded), *pending_gold_sets(lake, folded)]
    days, daily_cursor = _new_daily_days(context, state.get("daily"))
    kind_days, kind_cursor = _new_daily_days(context, state.get("kind_daily"), KIND_DAILY_LABELS)
    # The day's materialization cursor moves on at once, so the re-base runs are followed
    # until one succeeds: a day whose run failed for good is named again.
    rebasing, again, failed = _rebases_due(context, state)
    days = sorted({*days, *again["daily"]})
    kind_days = sorted({*kind_days, *again["kind_daily"]})
    settled = rebasing != state.get("rebasing", {})
    if not changed and not files and not days and not kind_days:
        if maintenance or recovered or settled:
            return SensorResult(
                run_requests=maintenance or None,
                skip_reason=None
                if maintenance
                else f"no changes in ({since.isoformat()}, {until.isoformat()}]",
                cursor=json.dumps({**state, "rebasing": rebasing}, sort_keys=True)
                if recovered or settled
                else None,
            )
        return SkipReason(f"no changes in ({since.isoformat()}, {until.isoformat()}]")
    # The kind days join the key only when there are some: a window without them keeps its key.
    # The failed runs join it too: the daemon skips a key that already ran, and asking again
    # for a failed re-base on an unchanged window would otherwise repeat its key.
    window = json.dumps(
        [
            since.isoformat(),
            until.isoformat(),
            files,
            days,
            *([kind_days] if kind_days or failed else []),
            *([failed] if failed else []),
        ]
    )
    run_key = "live:" + hashlib.sha256(window.encode()).hexdigest()[:32]
    if days or kind_days:
        rebasing[run_key] = {"daily": days, "kind_daily": kind_days}
    config = RunConfig(
        {
            live_quality_state.op.name: LiveConfig(
                until=until.isoformat(), rebase_days=days, kind_rebase_days=kind_days
            )
        }
    )
    cursor = {
        **state,
        "watermark": until.isoformat(),
        "since": since.isoformat(),
        "daily": daily_cursor,
        "kind_daily": kind_cursor,
        "rebasing": rebasing,
    }
    return SensorResult(
        run_requests=[
            RunRequest(run_key=run_key, job_name=live_quality_job.name, run_config=config),
            *maintenance,
        ],
        cursor=json.dumps(cursor, sort_keys=True),
    )
