"""The live sensor: every 15 s, a small run when the annotation DB has new judgments.

The cursor is the DB watermark of the last window launched. The window's start is the stream
position committed in the lake with the live state (what has really been folded in), so a run
that died is covered by the next window; its end is the DB's safe upper bound now. The run key
is a hash of the window: a tick evaluated twice launches nothing twice.
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunConfig,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from annotation_pipelines.loop.live import load_stream
from assets.live.assets import LiveConfig, live_quality_state
from assets.live.jobs import live_quality_job
from resources.annotation_db import AnnotationDatabase
from resources.lake import Lake

LIVE_INTERVAL_SECONDS = 15
# A run still starting after this long was orphaned (its daemon or worker died): ignore it.
STARTING_STALE_SECONDS = 180
_WAITING = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING]


def _starting_runs(context: SensorEvaluationContext) -> int:
    since = datetime.now(UTC) - timedelta(seconds=STARTING_STALE_SECONDS)
    runs = context.instance.get_runs(
        RunsFilter(job_name=live_quality_job.name, statuses=_WAITING, created_after=since),
        limit=5,
    )
    return len(runs)


@sensor(
    job=live_quality_job,
    minimum_interval_seconds=LIVE_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="New judgments in the annotation DB → a small run updating the live state.",
)
def live_quality_sensor(
    context: SensorEvaluationContext, annotation_db: AnnotationDatabase, lake: Lake
) -> SensorResult | SkipReason:
    # One run starting at a time: it reads up to the DB's bound when it gets the lock, so the
    # rows that arrive while it starts are its too. One may work while the next starts.
    if _starting_runs(context):
        return SkipReason("a live run is starting")
    since, _ = load_stream(lambda key: lake.get(key) if lake.exists(key) else None)
    until = annotation_db.safe_upper_bound()
    if until <= since or annotation_db.changed_rows(since=since, until=until) == 0:
        return SkipReason(f"no changes in ({since.isoformat()}, {until.isoformat()}]")
    window = f"{since.isoformat()}|{until.isoformat()}"
    run_key = "live:" + hashlib.sha256(window.encode()).hexdigest()[:32]
    config = RunConfig({live_quality_state.op.name: LiveConfig(until=until.isoformat())})
    return SensorResult(
        run_requests=[RunRequest(run_key=run_key, run_config=config)],
        cursor=json.dumps({"watermark": until.isoformat(), "since": since.isoformat()}),
    )
