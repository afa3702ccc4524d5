"""Sensors of the curation layer: each new project becomes a partition and gets a snapshot."""

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
    recent = lake.scan_days("judgments", lake.days("judgments")[-7:])
    schema = recent.collect_schema()
    if schema:
        # Non-categorical projects are curated together by kind_curated_dataset.
        recent = of_kind(recent)
    projects = recent.select(pl.col("project").unique()).collect() if schema else None
    seen = set(projects["project"].to_list()) if projects is not None else set()
    known = set(context.instance.get_dynamic_partitions(PROJECT_PARTITIONS))
    new = sorted(seen - known)
    if not new:
        return SkipReason("no new projects")
    return SensorResult(
        dynamic_partitions_requests=[project_partitions.build_add_request(new)],
        run_requests=[RunRequest(run_key=f"project:{p}", partition_key=p) for p in new],
    )
