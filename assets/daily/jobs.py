"""Schedules: yesterday's partitions once the day closes; the forecasts weekly."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from annotation_pipelines.settings import load_settings

# The day closes at midnight in this zone; runs start an hour later so late uploads are in.
SCHEDULE_TIMEZONE = load_settings().timezone

daily_job = define_asset_job(
    "daily_annotation_job",
    selection=AssetSelection.all()
    - AssetSelection.groups("forecasting", "sources", "curation")
    - AssetSelection.assets("compute_usage"),
    description="Every per-day layer for one day: raw → aggregation → quality.",
)
compute_usage_job = define_asset_job(
    "compute_usage_job",
    selection=AssetSelection.assets("compute_usage"),
    description="Load one day of accelerator telemetry.",
)
forecast_job = define_asset_job(
    "forecast_job",
    selection=AssetSelection.groups("forecasting"),
    description="Capacity forecasts over the lake's history (one run, many days in one pass).",
)

# One job per layer, so an operator can launch one layer from the launchpad with its typed
# config, e.g. re-aggregate a day with another method:
#   ops: {aggregated_labels: {config: {methods_per_project: {toxicity: glad}}}}
aggregation_job = define_asset_job(
    "aggregation_job",
    selection=AssetSelection.groups("aggregation"),
    description="Re-aggregate one day (config: method, methods_per_project, max_iter, tol).",
)
quality_job = define_asset_job(
    "quality_job",
    selection=AssetSelection.groups("quality"),
    description="Re-score one day's quality (config: gate floors, flag thresholds, drift bounds).",
)
workforce_job = define_asset_job(
    "workforce_job",
    selection=AssetSelection.groups("workforce"),
    description="Recompute one day's throughput and backlog.",
)

daily_schedule = build_schedule_from_partitioned_job(
    daily_job,
    hour_of_day=1,
    minute_of_hour=0,
    name="daily_annotation_schedule",
    description="Yesterday's partition of every per-day layer, an hour after the day closes.",
    default_status=DefaultScheduleStatus.RUNNING,
)
daily_compute_schedule = build_schedule_from_partitioned_job(
    compute_usage_job,
    hour_of_day=1,
    minute_of_hour=5,
    name="daily_compute_usage_schedule",
    default_status=DefaultScheduleStatus.RUNNING,
)
weekly_forecast_schedule = ScheduleDefinition(
    name="weekly_forecast_schedule",
    job=forecast_job,
    cron_schedule="0 6 * * 1",
    execution_timezone=SCHEDULE_TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Capacity forecasts every Monday morning.",
)
