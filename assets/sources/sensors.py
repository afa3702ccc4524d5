"""Sensors of the sources layer: new export files and changed gold sets in the landing zone."""

import hashlib
import json

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.common.cursors import load_cursor
from assets.sources.assets import EXPORT_FILES, export_files
from assets.sources.jobs import gold_sets_job, ingest_export_job
from resources.landing import LandingZone

# A file whose ingest failed is retried on later ticks, at most this many times; after that
# the sensor logs an error on every tick until the file is fixed (a new fingerprint resets it).
MAX_ATTEMPTS = 5
# Run tags saying which attempt of a file a run is, so that a failure alert can tell a failure
# that will be retried from the last one.
ATTEMPT_TAG = "annotation_pipelines/attempt"
MAX_ATTEMPTS_TAG = "annotation_pipelines/max_attempts"


def _latest_run_status(context: SensorEvaluationContext, partition: str) -> DagsterRunStatus | None:
    runs = context.instance.get_runs(
        RunsFilter(job_name=ingest_export_job.name, tags={"dagster/partition": partition}), limit=1
    )
    return runs[0].status if runs else None


@sensor(
    job=ingest_export_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="New or changed export files in the landing zone → one ingest run per file.",
)
def landing_zone_sensor(context: SensorEvaluationContext, landing: LandingZone) -> SensorResult:
    state = load_cursor(context.cursor)
    done: dict[str, str] = state.get("done", {})
    attempts: dict[str, int] = state.get("attempts", {})
    known = set(context.instance.get_dynamic_partitions(EXPORT_FILES))
    new_partitions, requests = [], []
    settled, waiting = landing.scan_exports()
    for export in settled:
        key = f"{export.path}@{export.fingerprint}"
        if done.get(export.path) == export.fingerprint:
            continue
        status = _latest_run_status(context, export.path)
        tried = attempts.get(key, 0)
        if status == DagsterRunStatus.SUCCESS and tried:
            done[export.path] = export.fingerprint
            attempts.pop(key, None)
            continue
        if status in (DagsterRunStatus.QUEUED, DagsterRunStatus.STARTED, DagsterRunStatus.STARTING):
            continue
        if tried >= MAX_ATTEMPTS:
            context.log.error(f"{export.path}: ingest failed {tried} times; fix or replace it")
            continue
        if export.path not in known:
            new_partitions.append(export.path)
            known.add(export.path)
        attempts[key] = tried + 1
        requests.append(
            RunRequest(
                run_key=f"{key}#{tried + 1}",
                partition_key=export.path,
                tags={ATTEMPT_TAG: str(tried + 1), MAX_ATTEMPTS_TAG: str(MAX_ATTEMPTS)},
            )
        )
    if waiting:
        context.log.info(landing.unsettled_note(waiting, then="offered once they settle"))
    given_up = sorted(key.split("@")[0] for key, tried in attempts.items() if tried >= MAX_ATTEMPTS)
    return SensorResult(
        run_requests=requests,
        skip_reason=None if requests else _idle_reason(done, waiting, given_up, landing),
        dynamic_partitions_requests=[export_files.build_add_request(new_partitions)]
        if new_partitions
        else [],
        cursor=json.dumps({"done": done, "attempts": attempts}, sort_keys=True),
    )


def _idle_reason(
    done: dict[str, str], waiting: list[str], given_up: list[str], landing: LandingZone
) -> str:
    """Why a tick launched nothing, in the words the Automation page shows."""
    parts = []
    if waiting:
        parts.append(landing.unsettled_note(waiting, what=None, then="offered once it settles"))
    if given_up:
        parts.append(
            f"{len(given_up)} failed {MAX_ATTEMPTS} times, not retried until fixed or "
            f"replaced: {', '.join(given_up[:5])}"
        )
    if not parts:
        return f"no new or changed export file ({len(done)} ingested)"
    return "no new or changed export file; " + "; ".join(parts)


@sensor(
    job=gold_sets_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A gold set changed in the landing zone → restage it once every gold file has "
    "settled; quality and curation follow.",
)
def gold_set_sensor(
    context: SensorEvaluationContext, landing: LandingZone
) -> SensorResult | SkipReason:
    settled, waiting = landing.scan_settled("gold/")
    if waiting:
        # The gold sets are restaged whole: a run now would read the rest without this file.
        return SkipReason(
            landing.unsettled_note(waiting, what="gold file(s)", then="offered once they settle")
        )
    files = dict(settled)
    fingerprint = json.dumps(files, sort_keys=True)
    if not files or fingerprint == context.cursor:
        return SkipReason("gold sets unchanged")
    # A content hash: the built-in hash() of a str differs per process, so two daemons (or one
    # after a restart) would launch the same change twice under different run keys.
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:32]
    return SensorResult(run_requests=[RunRequest(run_key=f"gold:{digest}")], cursor=fingerprint)
