"""The one Definitions of the code location: assets, checks, jobs, schedules, sensors, resources.

The environment is chosen here and only here (`ANNOTATION_PIPELINES_PROFILE`):
- `local` (default): lake and landing zone under `ANNOTATION_PIPELINES_DATA_DIR` (default
  `./data`), SQLite instance storage under DAGSTER_HOME. No server, no cloud account.
- `production`: the lake under an S3 prefix through dagster-aws's S3 resource; instance storage
  on PostgreSQL (see dagster.production.yaml). Asset code is identical in both.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    EnvVar,
    load_assets_from_modules,
)
from dagster_aws.s3 import S3Resource

import assets.aggregation
import assets.compute
import assets.curation
import assets.forecasting
import assets.ingest
import assets.quality
from assets import schedules, sensors
from resources.annotation_db import AnnotationDatabase
from resources.lake import LakeIOManager, LocalLake, S3Lake
from resources.landing import LocalLandingZone, S3LandingZone

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("ANNOTATION_PIPELINES_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def resources_for(profile: str) -> dict[str, object]:
    """The resources of one deployment profile."""
    if profile == "local":
        lake = LocalLake(base_path=str(data_dir() / "lake"))
        landing = LocalLandingZone(path=str(data_dir() / "landing"))
    elif profile == "production":
        s3 = S3Resource(
            region_name=EnvVar("AWS_REGION"),
            endpoint_url=os.environ.get("ANNOTATION_PIPELINES_S3_ENDPOINT") or None,
        )
        lake = S3Lake(
            s3=s3,
            bucket=EnvVar("ANNOTATION_PIPELINES_BUCKET"),
            prefix=os.environ.get("ANNOTATION_PIPELINES_LAKE_PREFIX", "lake"),
        )
        landing = S3LandingZone(
            s3=s3,
            bucket=EnvVar("ANNOTATION_PIPELINES_BUCKET"),
            prefix=os.environ.get("ANNOTATION_PIPELINES_LANDING_PREFIX", "landing"),
        )
    else:
        raise ValueError(f"ANNOTATION_PIPELINES_PROFILE={profile!r}: use 'local' or 'production'")
    # The DSN is read when a run first uses the database, so a profile without one still loads.
    annotation_db = AnnotationDatabase(dsn=EnvVar("ANNOTATION_DB_DSN"))
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
    ]
)

jobs = [
    schedules.daily_job,
    schedules.compute_usage_job,
    schedules.forecast_job,
    sensors.ingest_export_job,
    sensors.raw_job,
    sensors.curation_job,
    sensors.gold_sets_job,
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
    AutomationConditionSensorDefinition(
        "automation_sensor",
        target=AssetSelection.all(),
        default_status=DefaultSensorStatus.RUNNING,
        description="Rebuilds downstream layers when upstream partitions change.",
    ),
]


def build_definitions(profile: str | None = None) -> Definitions:
    profile = profile or os.environ.get("ANNOTATION_PIPELINES_PROFILE", "local")
    return Definitions(
        assets=all_assets,
        jobs=jobs,
        schedules=all_schedules,
        sensors=all_sensors,
        resources=resources_for(profile),
    )


defs = build_definitions()
