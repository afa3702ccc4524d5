"""Jobs of the forecasting layer: capacity forecasts weekly."""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from assets.common.schedules import SCHEDULE_TIMEZONE

forecast_job = define_asset_job(
    "forecast_job",
    selection=AssetSelection.groups("forecasting"),
    description="Capacity forecasts over the lake's history (one run, many days in one pass).",
)

weekly_forecast_schedule = ScheduleDefinition(
    name="weekly_forecast_schedule",
    job=forecast_job,
    cron_schedule="0 6 * * 1",
    execution_timezone=SCHEDULE_TIMEZONE,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Capacity forecasts every Monday morning.",
)
