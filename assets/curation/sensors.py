"""Sensors of the curation layer: each new project becomes a partition and gets a snapshot."""

import json

import polars as pl
from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from annotation_pipelines.kinds import of_kind
from annotation_pipelines.lake import partition_key
from assets.common.cursors import load_cursor
from assets.common.partitions import PROJECT_PARTITIONS, project_partitions
from assets.curation.jobs import curation_job
from resources.lake import Lake


@sensor(
    job=curation_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description="A project seen in the judgments for the first time becomes a partition.",
)
def project_sensor(context: SensorEvaluationContext, lake: Lake) -> SensorResult | SkipReason:
    # Every day of the judgments, not the latest few: a backfilled export can bring a project
    # on a day of last year. Only days written since the last tick are read (the cursor holds
    # each day's write time), so a tick reads the project column of what changed.
    scanned: dict[str, float] = load_cursor(context.cursor).get("days", {})
    days = {
        day: lake.modified_at(partition_key("judgments", day)) for day in lake.days("judgments")
    }
    changed = [day for day, written in days.items() if scanned.get(day) != written]
    recent = lake.scan_days("judgments", changed)
    schema = recent.collect_schema()
    if schema:
        # Non-categorical projects are curated together by kind_curated_dataset.
        recent = of_kind(recent)
    projects = recent.select(pl.col("project").unique()).collect() if schema else None
    seen = set(projects["project"].to_list()) if projects is not None else set()
    known = set(context.instance.get_dynamic_partitions(PROJECT_PARTITIONS))
    new = sorted(seen - known)
    cursor = json.dumps({"days": days}, sort_keys=True)
    if not new:
        return SensorResult(skip_reason=SkipReason("no new projects"), cursor=cursor)
    return SensorResult(
        dynamic_partitions_requests=[project_partitions.build_add_request(new)],
        run_requests=[RunRequest(run_key=f"project:{p}", partition_key=p) for p in new],
        cursor=cursor,
    )
