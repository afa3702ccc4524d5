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
from assets.common.runs import WILL_RETRY_TAG
from assets.sources.sensors import ATTEMPT_TAG, MAX_ATTEMPTS_TAG
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
    run = context.dagster_run
    message = f"{run.job_name}: {context.failure_event.message or 'run failed'}"
    assets = ""
    # The UI's Materialize button runs Dagster's hidden asset job ("__ASSET_JOB"), a name that
    # tells the reader nothing: such an alert names the assets the user launched instead.
    if run.job_name.startswith("__ASSET_JOB") and run.asset_selection:
        assets = ", ".join(sorted(key.to_user_string() for key in run.asset_selection))
        failure = (context.failure_event.message or "run failed").replace(
            f'Execution of run for "{run.job_name}" failed', "Materialization failed"
        )
        message = f"{assets}: {failure}"
    cause = failure_cause(context)
    if cause:
        message += f" Cause: {cause}"
    # A run with retries left (the live jobs') is launched again by the daemon: a warning,
    # which its last failed attempt turns into an error.
    severity = "ERROR"
    if run.tags.get(WILL_RETRY_TAG) == "true":
        severity, message = "WARNING", message + " (the daemon retries it)"
    # The landing sensor retries a file's ingest on later ticks: its first failure warns and
    # its last is an error; the attempts between would repeat the first, so they are only
    # logged, not alerted (one webhook per file and outcome, not one per attempt).
    attempt, attempts = run.tags.get(ATTEMPT_TAG), run.tags.get(MAX_ATTEMPTS_TAG)
    if attempt and attempts and attempt.isdigit() and attempts.isdigit():
        if int(attempt) < int(attempts):
            severity = "WARNING"
            message += f" (attempt {attempt} of {attempts}; the landing sensor retries it)"
        else:
            message += f" (attempt {attempt} of {attempts}; no retry left: fix or replace the file)"
        if 1 < int(attempt) < int(attempts):
            context.log.warning(f"not alerted again: {message}")
            return
    record_alert(
        lake,
        [
            {
                "kind": "run_failure",
                "asset": assets,
                "check": "",
                "partition": run.tags.get("dagster/partition", ""),
                "severity": severity,
                "run_id": run.run_id,
                "message": message,
            }
        ],
        log=context.log,
    )


def failure_cause(context: RunFailureSensorContext, limit: int = 500) -> str:
    """The first line of the error that failed the run, class included: the failed steps' (the
    exception raised in our code, not Dagster's wrapper around it), else the run's own error."""
    errors = [
        event.step_failure_data.error
        for event in context.get_step_failure_events()
        if event.step_failure_data.error is not None
    ]
    if not errors:
        # A run that failed outside any step (a launch, run monitoring) has its error here.
        run_error = getattr(context.failure_event.event_specific_data, "error", None)
        errors = [run_error] if run_error is not None else []
    lines: list[str] = []
    for error in errors:
        # Code that raises inside a step is wrapped in a Dagster error whose cause is ours.
        while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
            error = error.cause
        line = next((text for text in error.message.strip().splitlines() if text.strip()), "")
        name, _, text = line.partition(": ")
        if error.cls_name and name.endswith(f".{error.cls_name}"):
            line = f"{error.cls_name}: {text}"  # the class without its module path
        elif error.cls_name and not line.startswith(error.cls_name):
            line = f"{error.cls_name}: {line}"
        if line not in lines:
            lines.append(line)
    cause = "; ".join(lines)
    return cause if len(cause) <= limit else cause[: limit - 1] + "…"


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
