"""Jobs of the curation layer."""

from dagster import AssetSelection, define_asset_job

curation_job = define_asset_job(
    "curation_job",
    selection=AssetSelection.assets("curated_dataset"),
    description="Build one project's curated dataset snapshot.",
)
