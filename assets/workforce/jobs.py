"""Jobs of the workforce layer."""

from dagster import AssetSelection, define_asset_job

workforce_job = define_asset_job(
    "workforce_job",
    selection=AssetSelection.groups("workforce"),
    description="Recompute one day's throughput and backlog.",
)
