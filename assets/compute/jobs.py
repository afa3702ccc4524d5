"""Jobs of the compute layer: one day of accelerator telemetry, daily."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

compute_usage_job = define_asset_job(
    "compute_usage_job",
    selection=AssetSelection.groups("compute"),
    description="Load one day of accelerator telemetry.",
)

daily_compute_schedule = build_schedule_from_partitioned_job(
    compute_usage_job,
    hour_of_day=1,
    minute_of_hour=5,
    name="daily_compute_usage_schedule",
    description="Yesterday's accelerator telemetry, once the day has closed.",
    default_status=DefaultScheduleStatus.RUNNING,
)
