"""Sensors of the raw layer: rebuild the days a source just staged rows for."""

import json
from datetime import UTC, datetime

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    JsonMetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.common.cursors import load_cursor
from assets.common.partitions import START_DATE, daily_partitions
from assets.raw.jobs import raw_job

STAGING_ASSETS = ("landing_exports", "annotation_db_changes", "gold_sets")


def _now() -> datetime:
    return datetime.now(UTC)


def _is_day(value: str) -> bool:
    try:
        return datetime.strptime(value, "%Y-%m-%d").strftime("%Y-%m-%d") == value
    except ValueError:
        return False


@sensor(
    job=raw_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="After a source staged rows, rebuild exactly the days those rows belong to; a "
    "day that has not ended yet is rebuilt once it is a partition.",
)
def staged_days_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    state = load_cursor(context.cursor)
    # Days staged before they were partitions (today, a clock ahead): {day: run key}. They stay
    # here until the day ends, so their rows reach the day once it exists, without a second
    # staging run.
    pending: dict[str, str] = state.pop("pending", {})
    keys = daily_partitions.get_partition_keys(current_time=_now())
    last = keys[-1] if keys else None
    requests: dict[str, RunRequest] = {}
    # Days before the start date that a source staged rows for, kept to say so on idle ticks.
    early: dict[str, str] = state.pop("before_start", {})
    before_start: dict[str, str] = {}
    for name in STAGING_ASSETS:
        result = context.instance.fetch_materializations(
            AssetKey(name), limit=200, cursor=state.get(name), ascending=True
        )
        for record in result.records:
            materialization = record.asset_materialization
            days = materialization.metadata.get("days") if materialization else None
            # The staging assets write the days as a JSON list of partition keys.
            staged = days.value if isinstance(days, JsonMetadataValue) else None
            for day in staged or []:
                day, key = str(day), f"{name}:{record.storage_id}:{day}"
                if not _is_day(day) or day < START_DATE:
                    # Never a partition: requesting it would fail the tick and every day in it.
                    source = materialization.partition if materialization else None
                    before_start.setdefault(day, f"{name} {source or ''}".strip())
                elif last is None or day > last:
                    pending.setdefault(day, key)
                else:
                    requests.setdefault(day, RunRequest(run_key=key, partition_key=day))
        if result.records:
            state[name] = result.cursor
    for day in sorted(pending):
        if last is not None and day <= last:
            requests.setdefault(day, RunRequest(run_key=pending.pop(day), partition_key=day))
    for day, source in sorted(before_start.items()):
        context.log.warning(
            f"{source} staged rows for {day}, before the start date {START_DATE} "
            "(ANNOTATION_PIPELINES_START_DATE): no partition holds them, not requested"
        )
    early.update(before_start)
    if pending:
        state["pending"] = pending
    if early:
        state["before_start"] = dict(sorted(early.items())[-20:])
    cursor = json.dumps(state, sort_keys=True)
    if not requests:
        reason = "no newly staged days"
        if pending:
            reason += (
                f"; {len(pending)} staged day(s) not partitions yet "
                f"({', '.join(sorted(pending)[:5])}), requested once it has ended"
            )
        if early:
            reason += (
                f"; {len(early)} staged day(s) before the start date {START_DATE} never rebuilt "
                f"(ANNOTATION_PIPELINES_START_DATE): {', '.join(sorted(early)[:5])}"
            )
        return SensorResult(skip_reason=reason, cursor=cursor)
    return SensorResult(run_requests=list(requests.values()), cursor=cursor)
