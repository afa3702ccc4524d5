"""Jobs of the raw layer."""

from dagster import AssetSelection, define_asset_job

from assets.raw.assets import RAW_GROUP

raw_job = define_asset_job(
    "raw_job",
    selection=AssetSelection.groups(RAW_GROUP),
    description="Rebuild one day's raw tables from every source; automation rebuilds the rest.",
)
