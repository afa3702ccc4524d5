"""Jobs of the quality layer."""

from dagster import AssetSelection, define_asset_job

quality_job = define_asset_job(
    "quality_job",
    selection=AssetSelection.groups("quality"),
    description="Re-score one day's quality (config: flag thresholds, drift bounds, and gate "
    "floors for this run only; each project's own floors are quality_gates in its project.json).",
)
