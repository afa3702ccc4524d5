"""The one Definitions of the code location: assets, checks, jobs, schedules, sensors, resources.

Everything but the resources is collected from the layer packages next to this module
(`assets/<layer>/`): adding an asset, check, job, schedule or sensor means defining it at module
level in its layer's folder; nothing here lists it.

The resources are chosen here from the profile in `annotation_pipelines.settings`:
- `local` (default): lake and landing zone under the data folder (default `./data`), SQLite
  instance storage under DAGSTER_HOME. No server, no cloud account.
- `production`: the lake under an S3 prefix through dagster-aws's S3 resource; instance storage
  on PostgreSQL (see dagster.production.yaml). Asset code is identical in both.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    BetaWarning,
    Definitions,
    EnvVar,
    JobDefinition,
    ScheduleDefinition,
    SensorDefinition,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
    multiprocess_executor,
)

import assets
from annotation_pipelines import settings as settings_module
from annotation_pipelines.settings import Profile, Settings, load_settings
from resources.annotation_db import AnnotationDatabase
from resources.lake import Lake, LakeIOManager, LocalLake
from resources.landing import LandingZone, LocalLandingZone

T = TypeVar("T")

# Dagster itself passes `owners` to SensorDefinition whenever it attaches a job to a sensor and
# then warns that the parameter is in beta: in every process that loads this code location (a
# code server printed it 57 times in 15 minutes), with nothing of ours to change.
warnings.filterwarnings("ignore", message="Parameter `owners`", category=BetaWarning)

# Modules under `assets` that are not a layer: this one, the CLI's demo, and shared helpers.
NOT_LAYERS = frozenset({"definitions", "demo", "common"})

# `define_asset_job` and `build_schedule_from_partitioned_job` return classes Dagster does not
# export (they resolve against the asset graph later); their types are taken from the public
# factories rather than imported from `dagster._core`.
_ASSET_JOB = type(define_asset_job("_type_probe"))
_PARTITIONED_SCHEDULE = type(build_schedule_from_partitioned_job(define_asset_job("_type_probe")))

# What a layer module may define at module level, each kind in its own Definitions argument
# (passed one by one in `build_definitions`).
# AssetChecksDefinition is a subclass of AssetsDefinition, so it is tested first.
KINDS: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("asset_checks", (AssetChecksDefinition,)),
    ("assets", (AssetsDefinition,)),
    ("jobs", (JobDefinition, _ASSET_JOB)),
    ("schedules", (ScheduleDefinition, _PARTITIONED_SCHEDULE)),
    ("sensors", (SensorDefinition,)),
)


def layer_modules() -> Iterator[ModuleType]:
    """Every module of every layer package under `assets`, imported."""
    for info in pkgutil.walk_packages(assets.__path__, prefix="assets."):
        if info.name.split(".")[1] not in NOT_LAYERS:
            yield importlib.import_module(info.name)


def collect_layers() -> dict[str, list[object]]:
    """The module-level Dagster objects of every layer, by kind, each object once.

    A job imported by its sensor's module is found twice: identity, not name, deduplicates, so
    two different objects under one name still reach Definitions and fail there loudly.
    """
    found: dict[str, list[object]] = {kind: [] for kind, _ in KINDS}
    seen: set[int] = set()
    for module in layer_modules():
        for value in vars(module).values():
            kind = next((k for k, types in KINDS if isinstance(value, types)), None)
            if kind is not None and id(value) not in seen:
                seen.add(id(value))
                found[kind].append(value)
    return found


def _sorted_as(objects: list[object], *kinds: type[T]) -> list[T]:
    """`objects`, which `collect_layers` sorted under one kind, typed as that kind.

    The unresolved job and schedule classes are not exported by Dagster, so the lists cannot be
    annotated with them; the same `isinstance` test that sorted them narrows them here.
    """
    return [value for value in objects if isinstance(value, kinds)]


def data_dir() -> Path:
    return load_settings().data_dir


def resources_for(settings: Settings) -> dict[str, object]:
    """The resources of one deployment profile."""
    lake: Lake
    landing: LandingZone
    if settings.profile == "local":
        lake = LocalLake(base_path=str(settings.lake_dir))
        landing = LocalLandingZone(
            path=str(settings.landing_dir), settle_seconds=settings.landing_settle_seconds
        )
    else:
        from dagster_aws.s3 import S3Resource

        from resources.s3 import S3Lake, S3LandingZone

        s3 = S3Resource(
            region_name=EnvVar(settings_module.AWS_REGION),
            endpoint_url=settings.s3_endpoint,
        )
        lake = S3Lake(s3=s3, bucket=EnvVar(settings_module.BUCKET), prefix=settings.lake_prefix)
        landing = S3LandingZone(
            s3=s3, bucket=EnvVar(settings_module.BUCKET), prefix=settings.landing_prefix
        )
    # The DSN's value stays an EnvVar (never shown in the UI); a deployment without one loads,
    # and what needs the database says which variable to set.
    annotation_db = AnnotationDatabase(
        dsn=EnvVar(settings_module.ANNOTATION_DB_DSN) if settings.annotation_db_dsn else None,
        connect_timeout_seconds=settings.annotation_db_connect_timeout,
        probe_timeout_seconds=settings.annotation_db_probe_timeout,
        statement_timeout_seconds=settings.annotation_db_statement_timeout,
        lock_timeout_seconds=settings.annotation_db_lock_timeout,
        live_max_rows=settings.live_max_rows,
    )
    return {
        "io_manager": LakeIOManager(lake=lake),
        "lake": lake,
        "landing": landing,
        "annotation_db": annotation_db,
    }


def build_definitions(*, profile: Profile | None = None) -> Definitions:
    """The code location's Definitions for the profile in the environment (or `profile`)."""
    settings = load_settings(profile=profile)
    layers = collect_layers()
    return Definitions(
        # Locally each step in a subprocess would re-import the code location (~15 s on this
        # 2-core box) for steps that take seconds; production runs steps in parallel.
        executor=in_process_executor if settings.profile == "local" else multiprocess_executor,
        asset_checks=_sorted_as(layers["asset_checks"], AssetChecksDefinition),
        assets=_sorted_as(layers["assets"], AssetsDefinition),
        jobs=_sorted_as(layers["jobs"], JobDefinition, _ASSET_JOB),
        schedules=_sorted_as(layers["schedules"], ScheduleDefinition, _PARTITIONED_SCHEDULE),
        sensors=_sorted_as(layers["sensors"], SensorDefinition),
        resources=resources_for(settings),
    )


defs = build_definitions()
