"""Accelerator telemetry: per-day usage in canonical form."""

import polars as pl
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from annotation_pipelines import schema
from assets.partitions import daily_partitions
from resources.landing import LandingZone


@asset(
    partitions_def=daily_partitions,
    group_name="compute",
    kinds={"polars", "parquet"},
    description="Accelerator telemetry for the day: running, pending and total GPUs per series.",
)
def compute_usage(context: AssetExecutionContext, landing: LandingZone) -> Output[pl.DataFrame]:
    day = context.partition_key
    frame = schema.conform(
        landing.read_synthetic("compute_usage", day, schema.COMPUTE_USAGE),
        schema.COMPUTE_USAGE,
        name=f"compute_usage {day}",
    )
    demand = frame["running"] + frame["pending"]
    utilization = float(frame["running"].sum() / frame["total"].sum()) if frame.height else 0.0
    return Output(
        frame,
        metadata={
            "series": MetadataValue.int(frame["series_id"].n_unique() if frame.height else 0),
            "utilization": MetadataValue.float(round(utilization, 4)),
            "peak_demand_gpus": MetadataValue.float(float(demand.max()) if frame.height else 0.0),
            "queued_share": MetadataValue.float(
                round(float((frame["pending"] > 0).mean()), 4) if frame.height else 0.0
            ),
        },
    )
