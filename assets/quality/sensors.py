"""Sensors of the quality layer: a failed gate or reconciliation becomes an alert."""

import json

from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DefaultSensorStatus,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SkipReason,
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
    alerts: list[dict[str, object]] = []
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
    alerts: list[dict[str, object]] = []
    for entry in entries:
        evaluation = entry.asset_check_evaluation
        if evaluation is None:
            continue
        check_key = AssetCheckKey(evaluation.asset_key, evaluation.check_name)
        if evaluation.passed or check_key not in ALERTING_CHECKS:
            continue
        name = check_key.to_user_string()
        failing = evaluation.metadata.get("failing")
        detail = (failing.value if failing is not None else "") or ""
        partition = evaluation.partition or _run_partition(context, run_id)
        alerts.append(
            {
                "kind": "quality_gate",
                "asset": check_key.asset_key.to_user_string(),
                "check": check_key.name,
                "partition": partition,
                "severity": evaluation.severity.value,
                "run_id": run_id,
                "message": f"{name} failed for {partition}: {detail}",
            }
        )
    return alerts


def _run_partition(context: SensorEvaluationContext, run_id: str) -> str:
    run = context.instance.get_run_by_id(run_id)
    return run.tags.get("dagster/partition", "") if run else ""
