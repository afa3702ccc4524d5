"""The one Definitions of the code location: assets, checks, jobs, schedules, sensors, resources.

The resources are chosen here from the profile in `annotation_pipelines.settings`:
- `local` (default): lake and landing zone under the data folder (default `./data`), SQLite
  instance storage under DAGSTER_HOME. No server, no cloud account.
- `production`: the lake under an S3 prefix through dagster-aws's S3 resource; instance storage
  on PostgreSQL (see dagster.production.yaml). Asset code is identical in both.
"""

from __future__ import annotations

from pathlib import Path

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    EnvVar,
    in_process_executor,
    load_assets_from_modules,
    multiprocess_executor,
)
from dagster_aws.s3 import S3Resource

import assets.aggregation
import assets.compute
import assets.curation
import assets.forecasting
import assets.ingest
import assets.live.assets
import assets.quality
import assets.workforce
from annotation_pipelines import settings as settings_module
from annotation_pipelines.settings import Profile, Settings, load_settings
from assets import schedules, sensors
from assets.live import jobs as live_jobs
from assets.live import sensors as live_sensors
from resources.annotation_db import AnnotationDatabase
from resources.lake import LakeIOManager, LocalLake, S3Lake
from resources.landing import LocalLandingZone, S3LandingZone


def data_dir() -> Path:
    return load_settings().data_dir


def resources_for(settings: Settings) -> dict[str, object]:
    """The resources of one deployment profile."""
    lake: LocalLake | S3Lake
    landing: LocalLandingZone | S3LandingZone
    if settings.profile == "local":
        lake = LocalLake(base_path=str(settings.lake_dir))
        landing = LocalLandingZone(path=str(settings.landing_dir))
    else:
        s3 = S3Resource(
            region_name=EnvVar(settings_module.AWS_REGION),
            endpoint_url=settings.s3_endpoint,
        )
        lake = S3Lake(s3=s3, bucket=EnvVar(settings_module.BUCKET), prefix=settings.lake_prefix)
        landing = S3LandingZone(
            s3=s3, bucket=EnvVar(settings_module.BUCKET), prefix=settings.landing_prefix
        )
    # The DSN is read when a run first uses the database, so a profile without one still loads.
    annotation_db = AnnotationDatabase(dsn=EnvVar(settings_module.ANNOTATION_DB_DSN))
    return {
        "io_manager": LakeIOManager(lake=lake),
        "lake": lake,
        "landing": landing,
        "annotation_db": annotation_db,
    }


all_assets = load_assets_from_modules(
    [
        assets.ingest,
        assets.aggregation,
        assets.quality,
        assets.curation,
        assets.compute,
        assets.forecasting,
        assets.workforce,
        assets.live.assets,
    ]
)

jobs = [
    schedules.daily_job,
    schedules.compute_usage_job,
    schedules.forecast_job,
    schedules.aggregation_job,
    schedules.quality_job,
    schedules.workforce_job,
    sensors.ingest_export_job,
    sensors.raw_job,
    sensors.curation_job,
    sensors.gold_sets_job,
    live_jobs.live_quality_job,
]
all_schedules = [
    schedules.daily_schedule,
    schedules.daily_compute_schedule,
    schedules.weekly_forecast_schedule,
]
all_sensors = [
    sensors.landing_zone_sensor,
    sensors.staged_days_sensor,
    sensors.project_sensor,
    sensors.gold_set_sensor,
    sensors.quality_alert_sensor,
    sensors.run_failure_alert_sensor,
    sensors.run_summary_sensor,
    live_sensors.live_quality_sensor,
    AutomationConditionSensorDefinition(
        "automation_sensor",
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus.RUNNING,
        description="Rebuilds downstream layers when upstream partitions change.",
    ),
]


def build_definitions(*, profile: Profile | None = None) -> Definitions:
    """The code location's Definitions for the profile in the environment (or `profile`)."""
    settings = load_settings(profile=profile)
    return Definitions(
        # Locally each step in a subprocess would re-import the code location (~15 s on this
        # 2-core box) for steps that take seconds; production runs steps in parallel.
        executor=in_process_executor if settings.profile == "local" else multiprocess_executor,
        assets=all_assets,
        jobs=jobs,
        schedules=all_schedules,
        sensors=all_sensors,
        resources=resources_for(settings),
    )


defs = build_definitions()
