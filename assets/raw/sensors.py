"""Sensors of the raw layer: rebuild the days a source just staged rows for."""

import json

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
from assets.raw.jobs import raw_job

STAGING_ASSETS = ("landing_exports", "annotation_db_changes", "gold_sets")


@sensor(
    job=raw_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="After a source staged rows, rebuild exactly the days those rows belong to.",
)
def staged_days_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    state = load_cursor(context.cursor)
    requests = []
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
                requests.append(
                    RunRequest(run_key=f"{name}:{record.storage_id}:{day}", partition_key=str(day))
                )
        if result.records:
            state[name] = result.cursor
    if not requests:
        return SkipReason("no newly staged days")
    return SensorResult(run_requests=requests, cursor=json.dumps(state, sort_keys=True))
