"""The live layer's job: one small run per batch of new judgments."""

from dagster import AssetSelection, define_asset_job

# A live run reads a few seconds of judgments; one still running after 10 minutes is stuck.
LIVE_MAX_RUNTIME_SECONDS = 600

live_quality_job = define_asset_job(
    "live_quality_job",
    selection=AssetSelection.assets("live_quality_state"),
    description="Fold the judgments that arrived since the last tick into the live state.",
    tags={"dagster/max_runtime": str(LIVE_MAX_RUNTIME_SECONDS)},
)
