"""Jobs of the quality layer."""

from dagster import AssetSelection, define_asset_job

quality_job = define_asset_job(
    "quality_job",
    selection=AssetSelection.groups("quality"),
    description="Re-score one day's quality (config: gate floors, flag thresholds, drift bounds).",
)
