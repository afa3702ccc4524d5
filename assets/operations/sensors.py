"""Sensors over every layer: failed runs alert, successful runs get a summary, and declarative
automation rebuilds downstream layers when upstream partitions change."""

import polars as pl
from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    IntMetadataValue,
    RunFailureSensorContext,
    RunStatusSensorContext,
    run_failure_sensor,
    run_status_sensor,
)

from annotation_pipelines.lake import run_summary_key
from annotation_pipelines.markdown import frame_to_markdown
from assets.common.alerts import record_alert
from resources.lake import Lake

automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Rebuilds downstream layers when upstream partitions change.",
)


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    description="Any failed run → an alert record, a log line, a webhook.",
)
def run_failure_alert_sensor(context: RunFailureSensorContext, lake: Lake) -> None:
    message = context.failure_event.message or "run failed"
    # A run with retries left (the live jobs') is launched again by the daemon: a warning,
    # which its last failed attempt turns into an error.
    will_retry = context.dagster_run.tags.get("dagster/will_retry") == "true"
    if will_retry:
        message += " (the daemon retries it)"
    record_alert(
        lake,
        [
            {
                "kind": "run_failure",
                "asset": "",
                "check": "",
                "partition": context.dagster_run.tags.get("dagster/partition", ""),
                "severity": "WARNING" if will_retry else "ERROR",
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
    rows: list[dict[str, object]] = []
    checks: dict[str, list[str]] = {}
    for entry in entries:
        evaluation = entry.asset_check_evaluation
        if evaluation is not None:
            key = evaluation.asset_key.to_user_string()
            verdict = "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
            checks.setdefault(key, []).append(f"{evaluation.check_name}: {verdict}")
            continue
        materialization = entry.asset_materialization
        if materialization is None:
            continue
        count = materialization.metadata.get("dagster/row_count")
        rows.append(
            {
                "asset": materialization.asset_key.to_user_string(),
                "partition": materialization.partition or "",
                "rows": count.value if isinstance(count, IntMetadataValue) else None,
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
    key = run_summary_key(context.dagster_run.run_id)
    lake.put_frame(key, summary)
    context.instance.report_engine_event(
        f"Run summary: {summary.height} materialization(s), "
        f"{int(summary['rows'].fill_null(0).sum()):,} rows; details: {lake.uri(key)}\n"
        + frame_to_markdown(summary),
        context.dagster_run,
    )
