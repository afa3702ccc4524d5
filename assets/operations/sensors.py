"""Sensors: new export files, changed gold sets, staged days, projects, quality and run alerts.

Every sensor keeps a JSON cursor, so a restart neither reprocesses nor misses anything, and
every run request carries a run key, so a tick evaluated twice launches nothing twice.
"""

import hashlib
import json
import urllib.request
from datetime import UTC, datetime

import polars as pl
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    RunStatusChangeRecordsFilter,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from annotation_pipelines.markdown import frame_to_markdown
from annotation_pipelines.settings import load_settings
from assets.ingest import export_files
from assets.partitions import project_partitions
from assets.quality import GATES
from resources.lake import Lake
from resources.landing import LandingZone

# A file whose ingest failed is retried on later ticks, at most this many times; after that
# the sensor logs an error on every tick until the file is fixed (a new fingerprint resets it).
MAX_ATTEMPTS = 5

# An ingest takes seconds to minutes: run monitoring fails one still running after 30 minutes
# (its worker died, on a launcher that cannot tell), and the landing sensor then retries it.
INGEST_MAX_RUNTIME_SECONDS = 1800

ingest_export_job = define_asset_job(
    "ingest_export_job",
    selection=AssetSelection.assets("landing_exports"),
    description="Validate and stage one export file from the landing zone.",
    tags={"dagster/max_runtime": str(INGEST_MAX_RUNTIME_SECONDS)},
)
raw_job = define_asset_job(
    "raw_job",
    selection=AssetSelection.assets("raw_tasks", "judgments", "gold_labels"),
    description="Rebuild one day's raw tables from every source; automation rebuilds the rest.",
)
curation_job = define_asset_job(
    "curation_job",
    selection=AssetSelection.assets("curated_dataset"),
    description="Build one project's curated dataset snapshot.",
)


def _load(cursor: str | None) -> dict:
    return json.loads(cursor) if cursor else {}


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
    state = _load(context.cursor)
    done: dict[str, str] = state.get("done", {})
    attempts: dict[str, int] = state.get("attempts", {})
    known = set(context.instance.get_dynamic_partitions(export_files.name))
    new_partitions, requests = [], []
    for export in landing.exports():
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
        requests.append(RunRequest(run_key=f"{key}#{tried + 1}", partition_key=export.path))
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[export_files.build_add_request(new_partitions)]
        if new_partitions
        else [],
        cursor=json.dumps({"done": done, "attempts": attempts}, sort_keys=True),
    )


STAGING_ASSETS = ("landing_exports", "annotation_db_changes", "gold_sets")


@sensor(
    job=raw_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="After a source staged rows, rebuild exactly the days those rows belong to.",
)
def staged_days_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    state = _load(context.cursor)
    requests = []
    for name in STAGING_ASSETS:
        result = context.instance.fetch_materializations(
            AssetKey(name), limit=200, cursor=state.get(name), ascending=True
        )
        for record in result.records:
            materialization = record.asset_materialization
            days = materialization.metadata.get("days") if materialization else None
            for day in days.value if days else []:
                requests.append(
                    RunRequest(run_key=f"{name}:{record.storage_id}:{day}", partition_key=day)
                )
        if result.records:
            state[name] = result.cursor
    if not requests:
        return SkipReason("no newly staged days")
    return SensorResult(run_requests=requests, cursor=json.dumps(state, sort_keys=True))


@sensor(
    job=curation_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description="A project seen in the judgments for the first time becomes a partition.",
)
def project_sensor(context: SensorEvaluationContext, lake: Lake) -> SensorResult | SkipReason:
    recent = lake.scan_days("judgments", lake.days("judgments")[-7:])
    projects = (
        recent.select(pl.col("project").unique()).collect() if recent.collect_schema() else None
    )
    seen = set(projects["project"].to_list()) if projects is not None else set()
    known = set(context.instance.get_dynamic_partitions(project_partitions.name))
    new = sorted(seen - known)
    if not new:
        return SkipReason("no new projects")
    return SensorResult(
        dynamic_partitions_requests=[project_partitions.build_add_request(new)],
        run_requests=[RunRequest(run_key=f"project:{p}", partition_key=p) for p in new],
    )


gold_sets_job = define_asset_job(
    "gold_sets_job",
    selection=AssetSelection.assets("gold_sets"),
    description="Stage the maintained gold sets from the landing zone.",
)


@sensor(
    job=gold_sets_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A gold set changed in the landing zone → restage it; quality and curation follow.",
)
def gold_set_sensor(
    context: SensorEvaluationContext, landing: LandingZone
) -> SensorResult | SkipReason:
    files = dict(landing.list_files("gold/"))
    fingerprint = json.dumps(files, sort_keys=True)
    if not files or fingerprint == context.cursor:
        return SkipReason("gold sets unchanged")
    # A content hash: the built-in hash() of a str differs per process, so two daemons (or one
    # after a restart) would launch the same change twice under different run keys.
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:32]
    return SensorResult(run_requests=[RunRequest(run_key=f"gold:{digest}")], cursor=fingerprint)


def record_alert(lake: Lake, alerts: list[dict[str, object]], *, log: object) -> None:
    """Append alerts to the lake's alerts table, log them, and POST them to the webhook."""
    if not alerts:
        return
    stamp = datetime.now(UTC)
    frame = pl.DataFrame(alerts).with_columns(raised_at=pl.lit(stamp))
    lake.put_frame(f"alerts/{stamp:%Y%m%dT%H%M%S%f}.parquet", frame)
    for alert in alerts:
        log.warning(f"ALERT {alert['kind']}: {alert['message']}")  # type: ignore[attr-defined]
    url = load_settings().alert_webhook
    if url:
        body = json.dumps({"alerts": alerts}, default=str).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except OSError as error:  # the alert is already in the table and the log
            log.error(f"alert webhook {url} failed: {error}")  # type: ignore[attr-defined]


# The checks whose failures are alerts: the quality gates and the ingest reconciliations.
ALERTING_CHECKS = (
    *(AssetCheckKey(AssetKey("quality_report"), spec.name) for spec in GATES),
    AssetCheckKey(AssetKey("landing_exports"), "rows_reconcile"),
    AssetCheckKey(AssetKey("annotation_db_changes"), "rows_reconcile"),
)


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A failed asset check (a quality gate) → an alert record, a log line, a webhook.",
)
def quality_alert_sensor(context: SensorEvaluationContext, lake: Lake) -> SkipReason:
    # Checks run inside runs, so every finished run is read once, in order, through the public
    # run-status index (indexed in every storage, SQLite's run-sharded one too); the cursor keeps
    # one position per terminal status.
    state = _load(context.cursor)
    alerts = []
    for status in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
        result = context.instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(event_type=status),
            limit=200,
            cursor=state.get(status.value),
            ascending=True,
        )
        for record in result.records:
            alerts.extend(_failed_check_alerts(context, record.run_id))
        if result.records:
            state[status.value] = result.cursor
    record_alert(lake, alerts, log=context.log)
    context.update_cursor(json.dumps(state, sort_keys=True))
    return SkipReason(f"{len(alerts)} alert(s) recorded" if alerts else "no failed checks")


def _failed_check_alerts(context: SensorEvaluationContext, run_id: str) -> list[dict[str, object]]:
    entries = context.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    alerts = []
    for entry in entries:
        evaluation = entry.dagster_event.event_specific_data
        check_key = AssetCheckKey(evaluation.asset_key, evaluation.check_name)
        if evaluation.passed or check_key not in ALERTING_CHECKS:
            continue
        name = check_key.to_user_string()
        failing = evaluation.metadata.get("failing")
        partition = evaluation.partition or _run_partition(context, run_id)
        alerts.append(
            {
                "kind": "quality_gate",
                "asset": check_key.asset_key.to_user_string(),
                "check": check_key.name,
                "partition": partition,
                "severity": evaluation.severity.value,
                "run_id": run_id,
                "message": f"{name} failed for {partition}: {getattr(failing, 'value', '') or ''}",
            }
        )
    return alerts


def _run_partition(context: SensorEvaluationContext, run_id: str) -> str:
    run = context.instance.get_run_by_id(run_id)
    return run.tags.get("dagster/partition", "") if run else ""


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    description="Any failed run → an alert record, a log line, a webhook.",
)
def run_failure_alert_sensor(context: RunFailureSensorContext, lake: Lake) -> None:
    message = context.failure_event.message or "run failed"
    record_alert(
        lake,
        [
            {
                "kind": "run_failure",
                "asset": "",
                "check": "",
                "partition": context.dagster_run.tags.get("dagster/partition", ""),
                "severity": "ERROR",
                "run_id": context.dagster_run.run_id,
                "message": f"{context.dagster_run.job_name}: {message}",
            }
        ],
        log=context.log,
    )


def run_summary(instance: DagsterInstance, run_id: str) -> pl.DataFrame:
    """One row per asset materialized by the run: partition, rows, headline check results."""
    entries = instance.all_logs(
        run_id,
        of_type={DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION},
    )
    rows, checks = [], {}
    for entry in entries:
        event = entry.dagster_event
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            data = event.event_specific_data
            key = data.asset_key.to_user_string()
            verdict = "passed" if data.passed else f"FAILED ({data.severity.value})"
            checks.setdefault(key, []).append(f"{data.check_name}: {verdict}")
            continue
        materialization = event.event_specific_data.materialization
        count = materialization.metadata.get("dagster/row_count")
        rows.append(
            {
                "asset": materialization.asset_key.to_user_string(),
                "partition": materialization.partition or "",
                "rows": int(count.value) if count is not None else None,
            }
        )
    frame = pl.DataFrame(
        rows, schema={"asset": pl.String, "partition": pl.String, "rows": pl.Int64}
    )
    return frame.with_columns(
        checks=pl.col("asset").map_elements(lambda a: "; ".join(checks.get(a, [])), pl.String)
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a summary (rows per asset, check results) to every successful run's log.",
)
def run_summary_sensor(context: RunStatusSensorContext, lake: Lake) -> None:
    summary = run_summary(context.instance, context.dagster_run.run_id)
    if summary.height == 0:
        return
    # The run's log gets the headline; the full table goes to the lake, next to the alerts.
    key = f"run_summaries/{context.dagster_run.run_id}.parquet"
    lake.put_frame(key, summary)
    context.instance.report_engine_event(
        f"Run summary: {summary.height} materialization(s), "
        f"{int(summary['rows'].fill_null(0).sum()):,} rows; details: {lake.uri(key)}\n"
        + frame_to_markdown(summary),
        context.dagster_run,
    )
