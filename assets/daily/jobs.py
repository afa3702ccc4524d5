"""The daily job: every per-day layer for yesterday, once the day closes."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

# Named, not "everything but …": a new group joins the daily run only by being listed here.
DAILY_GROUPS = ("raw", "aggregation", "quality", "workforce")

daily_job = define_asset_job(
    "daily_annotation_job",
    selection=AssetSelection.groups(*DAILY_GROUPS),
    description="Every per-day layer for one day: raw → aggregation → quality, and workforce.",
)

daily_schedule = build_schedule_from_partitioned_job(
    daily_job,
    hour_of_day=1,
    minute_of_hour=0,
    name="daily_annotation_schedule",
    description="Yesterday's partition of every per-day layer, an hour after the day closes.",
    default_status=DefaultScheduleStatus.RUNNING,
)
