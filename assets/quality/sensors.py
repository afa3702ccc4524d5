"""Sensors of the quality layer: a failed gate or reconciliation becomes an alert."""

import json

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DefaultSensorStatus,
    FloatMetadataValue,
    IntMetadataValue,
    JsonMetadataValue,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SkipReason,
    TextMetadataValue,
    sensor,
)

from assets.common.alerts import record_alert
from assets.common.cursors import load_cursor
from assets.quality.assets import GATES
from resources.lake import Lake

# The checks whose failures are alerts: the quality gates and the ingest reconciliations.
ALERTING_CHECKS = (
    *(AssetCheckKey(AssetKey("quality_report"), spec.name) for spec in GATES),
    AssetCheckKey(AssetKey("landing_exports"), "rows_reconcile"),
    AssetCheckKey(AssetKey("annotation_db_changes"), "rows_reconcile"),
)


# How many failing (check, partition, severity) keys the cursor remembers; the oldest go first.
MAX_OPEN_FAILURES = 2_000


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="A failed asset check (a quality gate) → an alert record, a log line, a webhook.",
)
def quality_alert_sensor(context: SensorEvaluationContext, lake: Lake) -> SkipReason:
    # Checks run inside runs, so every finished run is read once, in order, through the public
    # run-status index (indexed in every storage, SQLite's run-sharded one too); the cursor keeps
    # one position per terminal status.
    state = load_cursor(context.cursor)
    # A day's quality layer is rebuilt by every run that restages it (one per export file), and
    # each rebuild evaluates its gates again: a gate already failing for that day with the same
    # severity is alerted once, and again only after an evaluation has passed it.
    failing: dict[str, str] = state.get("failing", {})
    alerts: list[dict[str, object]] = []
    for status in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
        result = context.instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(event_type=status),
            limit=200,
            cursor=state.get(status.value),
            ascending=True,
        )
        for record in result.records:
            alerts.extend(_failed_check_alerts(context, record.run_id, failing))
        if result.records:
            state[status.value] = result.cursor
    record_alert(lake, alerts, log=context.log)
    state["failing"] = dict(list(failing.items())[-MAX_OPEN_FAILURES:])
    context.update_cursor(json.dumps(state, sort_keys=True))
    return SkipReason(f"{len(alerts)} alert(s) recorded" if alerts else "no failed checks")


def _failed_check_alerts(
    context: SensorEvaluationContext, run_id: str, failing: dict[str, str]
) -> list[dict[str, object]]:
    """The run's failed alerting checks not already alerted; `failing` (key → run) updated."""
    entries = context.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    alerts: list[dict[str, object]] = []
    for entry in entries:
        evaluation = entry.asset_check_evaluation
        if evaluation is None:
            continue
        check_key = AssetCheckKey(evaluation.asset_key, evaluation.check_name)
        if check_key not in ALERTING_CHECKS:
            continue
        name = check_key.to_user_string()
        partition = evaluation.partition or _run_partition(context, run_id)
        if evaluation.passed:
            for severity in AssetCheckSeverity:
                failing.pop(f"{name}|{partition}|{severity.value}", None)
            continue
        key = f"{name}|{partition}|{evaluation.severity.value}"
        if key in failing:
            context.log.info(f"{name} for {partition} still failing (alerted from {failing[key]})")
            continue
        failing[key] = run_id
        alerts.append(
            {
                "kind": "quality_gate",
                "asset": check_key.asset_key.to_user_string(),
                "check": check_key.name,
                "partition": partition,
                "severity": evaluation.severity.value,
                "run_id": run_id,
                "message": f"{name} failed for {partition}: {_reason(evaluation)}",
            }
        )
    return alerts


def _reason(evaluation: AssetCheckEvaluation) -> str:
    """Why the check failed: its description (a gate's names each project with its figure and
    threshold), then its scalar figures; its JSON figures (projects, values, thresholds) when
    it has no description."""
    metadata = evaluation.metadata
    # `<project>/value` and `<project>/floor` are there for the check's plots; the description
    # already words each failing project's figure and floor.
    figures = [
        f"{label} {value.value}"
        for label, value in metadata.items()
        if isinstance(value, IntMetadataValue | FloatMetadataValue | TextMetadataValue)
        and "/" not in label
    ]
    parts = [evaluation.description] if evaluation.description else []
    if not parts:
        parts = [
            f"{label} {value.value}"
            for label, value in metadata.items()
            if isinstance(value, JsonMetadataValue) and value.value
        ] or ["no project named"]
    return "; ".join(parts + figures)


def _run_partition(context: SensorEvaluationContext, run_id: str) -> str:
    run = context.instance.get_run_by_id(run_id)
    return run.tags.get("dagster/partition", "") if run else ""
